"""A small libSQL client: Hrana over HTTP (sqld, Turso) through httpx, decoded with orjson.

Why not a client library: see docs/architecture.md, "libSQL transport". The protocol is
Hrana 3 over HTTP (`POST /v3/pipeline`, JSON encoding; `/v2/pipeline` when a server has no
v3), as specified in the libSQL repository (docs/HRANA_3_SPEC.md, docs/HTTP_V2_SPEC.md):

* a request is a pipeline of stream requests; every one we send starts a new stream
  (`baton: null`) and ends with `close`, so one statement (or one batch) is one round trip
  and no stream is left open on the server;
* values: `{"type": "null"}`, `{"type": "integer", "value": "42"}` (a string: 64-bit),
  `{"type": "float", "value": 1.5}`, `{"type": "text", "value": "…"}`,
  `{"type": "blob", "base64": "…"}` (servers may omit the `=` padding);
* a statement that fails is a result `{"type": "error", "error": {"message", "code"}}` in a
  200 answer; an HTTP 4xx/5xx means the stream is gone (the body is an error object, or
  plain text from the server or a proxy in front of it);
* auth: `Authorization: Bearer TOKEN`, the token from `?authToken=` in the URL, else
  `LIBSQL_AUTH_TOKEN`, else `TURSO_AUTH_TOKEN`.

URL schemes, as libSQL clients map them for their HTTP transport: `http://` and `https://`
as given; `ws://` -> `http://`, `wss://` -> `https://`; `libsql://` -> `https://` (or `http://`
with `?tls=0`, which needs an explicit port). On loopback the client asks for uncompressed
answers (gzip costs both sides CPU and saves nothing there); elsewhere httpx's defaults
(gzip, deflate) apply.

Nothing here prints; failures are :class:`LibsqlError` (a TraceStoreError with a one-line
message naming the server without credentials).
"""

from __future__ import annotations

import base64
import math
import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from synth_cli.errors import TraceStoreError

_MIN_INT, _MAX_INT = -(2 ** 63), 2 ** 63 - 1
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0
#: the largest answer taken (pages are ~4 MB; sqld refuses answers over 10 MB unless told otherwise).
MAX_ANSWER_BYTES = 256 << 20
#: the longest a loopback answer may take once sent for, however steadily it trickles in.
ANSWER_DEADLINE_S = 600.0


class LibsqlError(TraceStoreError):
    """A libSQL server failure. `code` is the server's error code (e.g. `SQLITE_CONSTRAINT`), an
    `HTTP_<status>` for an HTTP error, or `NETWORK` when the server was not reached; `transient`
    says whether trying again may succeed (network trouble, 5xx, 429, a busy database)."""

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None,
                 transient: bool = False, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.code = code
        self.status = status
        self.transient = transient


# --------------------------------------------------------------------------- URLs


@dataclass(frozen=True)
class ServerURL:
    """Where the pipeline requests go (`http_url`), how to name the server (`label`: the URL as
    given, without user info or query) and the token found in the URL, if any."""

    http_url: str
    label: str
    url_token: str | None
    loopback: bool


def _is_loopback(host: str) -> bool:
    host = host.lower().strip("[]")
    return host in ("localhost", "::1") or host.startswith("127.") or host.endswith(".localhost")


def parse_url(url: str) -> ServerURL:
    """Map a libSQL URL to the HTTP endpoint its HTTP transport uses (see the module docstring)."""
    from urllib.parse import parse_qsl, urlsplit, urlunsplit

    from synth_cli.config import register_secret

    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    try:
        port = parts.port
    except ValueError:
        raise LibsqlError(f"{url}: invalid port in the libSQL URL") from None
    if port:
        netloc += f":{port}"
    label = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    if parts.password:
        register_secret(parts.password)
    if not host:
        raise LibsqlError(f"{label}: no host in the libSQL URL", hint="e.g. http://127.0.0.1:8080 or libsql://DB.turso.io")
    token: str | None = None
    tls: bool | None = None
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "authToken":
            register_secret(value)
            token = value or None
        elif key == "tls" and value in ("0", "1"):
            tls = value == "1"
        else:
            raise LibsqlError(f"{label}: unsupported parameter {key!r} in the libSQL URL",
                              hint="libSQL URLs take ?authToken=… and ?tls=0|1")
    if scheme in ("http", "ws"):
        if tls:
            raise LibsqlError(f"{label}: a {scheme}:// URL cannot use TLS (?tls=1)", hint=f"use {scheme}s://")
        http_scheme = "http"
    elif scheme in ("https", "wss"):
        if tls is False:
            raise LibsqlError(f"{label}: a {scheme}:// URL cannot turn TLS off (?tls=0)",
                              hint=f"use {scheme[:-1]}://")
        http_scheme = "https"
    elif scheme == "libsql":
        if tls is False and not port:
            raise LibsqlError(f"{label}: a libsql:// URL with ?tls=0 needs an explicit port")
        http_scheme = "http" if tls is False else "https"
    else:
        raise LibsqlError(f"{label}: unsupported URL scheme {parts.scheme!r}",
                          hint="use http://, https://, ws://, wss:// or libsql://")
    path = parts.path.rstrip("/")
    return ServerURL(urlunsplit((http_scheme, netloc, path, "", "")), label, token, _is_loopback(host))


# --------------------------------------------------------------------------- values


def encode_value(value: Any) -> dict[str, Any]:
    """A Python value as a Hrana value (bool -> integer; bytes-like -> blob)."""
    if value is None:
        return {"type": "null"}
    if isinstance(value, str):
        return {"type": "text", "value": value}
    if isinstance(value, int):  # bool included: True -> "1"
        value = int(value)
        if not _MIN_INT <= value <= _MAX_INT:
            raise OverflowError(f"{value} does not fit a SQLite integer (64-bit signed)")
        return {"type": "integer", "value": str(value)}
    if isinstance(value, float):
        if math.isnan(value):  # what SQLite itself stores for a NaN
            return {"type": "null"}
        if math.isinf(value):
            raise ValueError("infinite floats cannot be sent to a libSQL server over JSON")
        return {"type": "float", "value": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "blob", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot send a {type(value).__name__} to a libSQL server")


def decode_value(value: dict[str, Any]) -> Any:
    kind = value["type"]
    if kind == "text":
        return value["value"]
    if kind == "integer":
        return int(value["value"])
    if kind == "null":
        return None
    if kind == "float":
        return float(value["value"])
    if kind == "blob":
        data = value["base64"]
        return base64.b64decode(data + "=" * (-len(data) % 4))
    raise LibsqlError(f"the libSQL server sent a value of unknown type {kind!r}", code="HRANA_PROTO_ERROR")


def stmt(sql: str, args: Sequence[Any] = (), *, want_rows: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"sql": sql, "args": [encode_value(a) for a in args]}
    if not want_rows:
        body["want_rows"] = False
    return body


# --------------------------------------------------------------------------- results


class Row:
    """One result row: indexes by position and by column name (like sqlite3.Row)."""

    __slots__ = ("_index", "_values")

    def __init__(self, values: tuple, index: dict[str, int]):
        self._values = values
        self._index = index

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._index[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Row):
            return self._values == other._values
        return self._values == other

    __hash__ = None  # type: ignore[assignment]

    def keys(self) -> list[str]:
        return sorted(self._index, key=self._index.__getitem__)

    def __repr__(self) -> str:
        return f"Row{self._values!r}"


@dataclass
class Result:
    columns: tuple[str, ...]
    rows: list[Row]
    affected_row_count: int = 0
    last_insert_rowid: int | None = None
    nbytes: int = 0  # size of the HTTP answer it came in (for callers that size their pages)
    encoding: str = "json"  # or "protobuf"


def decode_result(raw: dict[str, Any]) -> Result:
    columns = tuple((c.get("name") or "") for c in raw.get("cols", ()))
    index: dict[str, int] = {}
    for i, name in enumerate(columns):  # the first column of a name wins, as in sqlite3.Row
        index.setdefault(name, i)
    dec = decode_value
    rows = [Row(tuple([dec(v) for v in r]), index) for r in raw.get("rows", ())]
    if any(len(row) != len(columns) for row in rows):
        raise ValueError(f"a row whose values do not match its {len(columns)} columns")
    rowid = raw.get("last_insert_rowid")
    return Result(columns, rows, int(raw.get("affected_row_count") or 0), int(rowid) if rowid is not None else None)


_TRANSIENT_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_IOERR", "SQLITE_PROTOCOL")


def _sql_error(label: str, err: dict[str, Any] | None) -> LibsqlError:
    err = err or {}
    message = str(err.get("message") or "unknown error")
    code = err.get("code") or None
    lowered = message.lower()
    transient = bool(code and str(code).startswith(_TRANSIENT_CODES)) or "database is locked" in lowered
    return LibsqlError(f"{label}: {message}", code=code, transient=transient)


# --------------------------------------------------------------------------- Protobuf (large reads)
#
# Hrana 3's other encoding (`POST /v3-protobuf/pipeline`, the schema in the spec's appendix).
# Only what a read needs is implemented: a pipeline [execute, close] out, and its answer back.
# Text travels as raw UTF-8 instead of escaped JSON strings, which on call-record blobs halves
# the server's CPU time per page (docs/performance.md, "libSQL servers").

_PB_NULL = b"\x0a\x00"  # Value.null (field 1, an empty message)


def _pb_varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _pb_bytes(field: int, payload: bytes) -> bytes:
    return _pb_varint(field << 3 | 2) + _pb_varint(len(payload)) + payload


def _pb_text(value: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates (a non-UTF-8 argument): valid text that matches nothing stored
        return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace").encode("utf-8")


def pb_encode_value(value: Any) -> bytes:
    """A Python value as a Hrana `Value` message (the same mapping as :func:`encode_value`)."""
    if value is None:
        return _PB_NULL
    if isinstance(value, str):
        return _pb_bytes(4, _pb_text(value))
    if isinstance(value, int):
        value = int(value)
        if not _MIN_INT <= value <= _MAX_INT:
            raise OverflowError(f"{value} does not fit a SQLite integer (64-bit signed)")
        return b"\x10" + _pb_varint(((value << 1) ^ (value >> 63)) & 0xFFFFFFFFFFFFFFFF)
    if isinstance(value, float):
        if math.isnan(value):
            return _PB_NULL
        if math.isinf(value):
            raise ValueError("infinite floats cannot be sent to a libSQL server")
        return b"\x19" + struct.pack("<d", value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _pb_bytes(5, bytes(value))
    raise TypeError(f"cannot send a {type(value).__name__} to a libSQL server")


def pb_pipeline(sql: str, args: Sequence[Any]) -> bytes:
    """PipelineReqBody {requests: [execute {stmt {sql, args}}, close]} on a new stream (no baton)."""
    stmt_msg = _pb_bytes(1, _pb_text(sql)) + b"".join(_pb_bytes(3, pb_encode_value(a)) for a in args)
    return _pb_bytes(2, _pb_bytes(2, _pb_bytes(1, stmt_msg))) + _pb_bytes(2, _pb_bytes(1, b""))


class _PbError(ValueError):
    pass


def _pb_read_varint(buf: Any, i: int) -> tuple[int, int]:
    b = buf[i]
    if b < 0x80:
        return b, i + 1
    result, shift = b & 0x7F, 7
    i += 1
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise _PbError("varint too long")


def _pb_fields(buf: Any, i: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(field number, start, end) of each length-delimited field of the message in buf[i:end]; a
    varint field yields (number, value, -1), a fixed-size one (number, start, -8 or -4)."""
    while i < end:
        tag, i = _pb_read_varint(buf, i)
        wire = tag & 7
        if wire == 2:
            n, i = _pb_read_varint(buf, i)
            if i + n > end:
                raise _PbError("field runs past its message")
            yield tag >> 3, i, i + n
            i += n
        elif wire == 0:
            value, i = _pb_read_varint(buf, i)
            if i > end:
                raise _PbError("field runs past its message")
            yield tag >> 3, value, -1
        elif wire == 1:
            if i + 8 > end:
                raise _PbError("field runs past its message")
            yield tag >> 3, i, -8
            i += 8
        elif wire == 5:
            if i + 4 > end:
                raise _PbError("field runs past its message")
            yield tag >> 3, i, -4
            i += 4
        else:
            raise _PbError(f"wire type {wire}")
    if i != end:
        raise _PbError("message runs past its end")


def _pb_value(buf: Any, i: int, end: int) -> Any:
    """The `Value` message in buf[i:end]: one field in its usual encoding read inline when it fills
    the message exactly, anything else (or a field running past the message: an error) the general way."""
    if i == end:
        return None
    tag = buf[i]
    if tag == 0x22:  # text
        n, k = _pb_read_varint(buf, i + 1)
        if k + n == end:
            return str(buf[k:end], "utf-8", "replace")
    elif tag == 0x10:  # integer (sint64, zigzag)
        v, k = _pb_read_varint(buf, i + 1)
        if k == end:
            return (v >> 1) ^ -(v & 1)
    elif tag == 0x0A:  # null (an empty message)
        if i + 2 == end and buf[i + 1] == 0:
            return None
    elif tag == 0x19:  # float (double)
        if i + 9 == end:
            return struct.unpack_from("<d", buf, i + 1)[0]
    elif tag == 0x2A:  # blob
        n, k = _pb_read_varint(buf, i + 1)
        if k + n == end:
            return bytes(buf[k:end])
    for field, a, b in _pb_fields(buf, i, end):  # a field order or encoding we did not expect
        if field == 4 and b >= 0:
            return str(buf[a:b], "utf-8", "replace")
        if field == 2 and b == -1:
            return (a >> 1) ^ -(a & 1)
        if field == 3 and b == -8:
            return struct.unpack_from("<d", buf, a)[0]
        if field == 5 and b >= 0:
            return bytes(buf[a:b])
        if field == 1 and b >= 0:
            return None
    raise _PbError("a value of unknown type")


def _pb_row(buf: Any, i: int, end: int) -> tuple:
    """The values of a `Row` message in buf[i:end]: the usual one-byte tags read inline (text first),
    anything else through the general readers."""
    values: list[Any] = []
    append = values.append
    varint = _pb_read_varint
    while i < end:
        if buf[i] != 0x0A:  # not `values` (field 1, length-delimited) in one byte: the general way
            return tuple([*values, *(_pb_value(buf, a, b) for f, a, b in _pb_fields(buf, i, end) if f == 1 and b >= 0)])
        n, i = varint(buf, i + 1)
        j = i + n
        if j > end:
            raise _PbError("field runs past its message")
        tag = buf[i] if j > i else 0
        if tag == 0x22:  # text
            m, k = varint(buf, i + 1)
            if k + m != j:
                raise _PbError("a text value runs past its message")
            append(str(buf[k:j], "utf-8", "replace"))
        elif tag == 0x10:  # integer (sint64, zigzag)
            v, k = varint(buf, i + 1)
            append((v >> 1) ^ -(v & 1) if k == j else _pb_value(buf, i, j))
        else:
            append(_pb_value(buf, i, j))
        i = j
    if i != end:
        raise _PbError("message runs past its end")
    return tuple(values)


def _pb_text_field(buf: Any, i: int, end: int, number: int) -> str | None:
    for field, a, b in _pb_fields(buf, i, end):
        if field == number and b >= 0:
            return str(buf[a:b], "utf-8", "replace")
    return None


def pb_decode_execute(content: bytes, label: str) -> Result:
    """The `execute` result of a PipelineRespBody for [execute, close]; a failed statement raises."""
    buf = memoryview(content)
    try:
        results = [(a, b) for field, a, b in _pb_fields(buf, 0, len(buf)) if field == 3 and b >= 0]
        if len(results) != 2:
            raise LibsqlError(f"{label}: the server answered {len(results)} results for 2 requests",
                              code="HRANA_PROTO_ERROR")
        a, b = results[0]
        response = None
        for field, x, y in _pb_fields(buf, a, b):  # StreamResult {ok = 1 | error = 2}
            if field == 2 and y >= 0:
                raise _sql_error(label, {"message": _pb_text_field(buf, x, y, 1),
                                         "code": _pb_text_field(buf, x, y, 2)})
            if field == 1 and y >= 0:
                response = (x, y)
        if response is None:
            raise _PbError("no response")
        result = None
        for field, x, y in _pb_fields(buf, *response):  # StreamResponse {execute = 2}
            if field == 2 and y >= 0:
                for f2, x2, y2 in _pb_fields(buf, x, y):  # ExecuteStreamResp {result = 1}
                    if f2 == 1 and y2 >= 0:
                        result = (x2, y2)
        if result is None:
            raise _PbError("no execute result")
        columns: list[str] = []
        rows: list[Row] = []
        index: dict[str, int] = {}
        affected, rowid = 0, None
        row, append = _pb_row, rows.append
        width = 0
        for field, x, y in _pb_fields(buf, *result):  # StmtResult (cols before rows: fields in number order)
            if field == 2 and y >= 0:  # Row {values = 1}
                values = row(buf, x, y)
                if len(values) != width:
                    raise _PbError(f"a row of {len(values)} values for {width} columns")
                append(Row(values, index))
            elif field == 1 and y >= 0:  # Col {name = 1}
                name = _pb_text_field(buf, x, y, 1) or ""
                index.setdefault(name, len(columns))
                columns.append(name)
                width = len(columns)
            elif field == 3 and y == -1:
                affected = x
            elif field == 4 and y == -1:
                rowid = (x >> 1) ^ -(x & 1)
    except (_PbError, IndexError, struct.error) as exc:
        raise LibsqlError(f"{label}: the server's answer is not a Hrana Protobuf answer ({exc})",
                          code="HRANA_PROTO_ERROR", hint="is this URL a libSQL server (sqld, Turso)?") from None
    return Result(tuple(columns), rows, affected, rowid, len(content), "protobuf")


# --------------------------------------------------------------------------- the client

_TLS: list[Any] = []
_CONNECTION: list[Any] = []


def _connection_class() -> Any:
    """http.client.HTTPConnection whose socket holds each answer to a deadline (`deadline`, set per
    request): the socket timeout bounds each wait for bytes, not a server trickling them forever."""
    if not _CONNECTION:
        import http.client
        import socket

        class DeadlineSocket(socket.socket):
            deadline = 0.0
            wait = None

            def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
                left = self.deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no full answer within {ANSWER_DEADLINE_S:g} s")
                self.settimeout(left if self.wait is None else min(self.wait, left))
                return super().recv_into(buffer, nbytes, flags)

        class Connection(http.client.HTTPConnection):
            deadline = 0.0

            def connect(self) -> None:
                super().connect()
                plain = self.sock
                sock = DeadlineSocket(plain.family, plain.type, plain.proto, fileno=plain.detach())
                sock.wait, sock.deadline = self.timeout, self.deadline
                sock.settimeout(self.timeout)
                self.sock = sock

        _CONNECTION.append(Connection)
    return _CONNECTION[0]


def _tls_context(https: bool) -> Any:
    """The TLS settings of a client. httpx.Client() builds and loads a CA store each time (~0.1-0.2 s of
    CPU): an https client takes the one verifying context of this process (made once; a filter worker
    forked from the parent inherits it), a plain http client one that loads no CA at all (so it can
    verify nothing: a server sending it to https:// gets an error, never an unverified connection)."""
    import ssl

    if not https:
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if not _TLS:
        import httpx

        _TLS.append(httpx.create_ssl_context())
    return _TLS[0]




class _Loopback:
    """HTTP/1.1 to a plain-http server on this machine through the standard library's http.client.

    httpx costs ~2x the client CPU of a page here (its h11 parser takes the answer in 64 KB
    pieces; http.client reads a Content-Length body in one C-level loop), and its import alone
    is ~0.1 s of a command's start. Keep-alive connections are pooled (thread-safe: a scan's
    prefetch thread and its caller each take one); an idle one the server has closed is dropped
    before use; one it closes just as a request goes out loses that request, which is sent again
    only when it is a read (a write may have happened). Only for this
    machine: a server elsewhere may sit behind an HTTP proxy named in the environment
    (`HTTP_PROXY`, `NO_PROXY`), which httpx honours and this class does not.
    """

    def __init__(self, server: "ServerURL", headers: dict[str, str], timeout: float):
        import threading
        from urllib.parse import urlsplit

        parts = urlsplit(server.http_url)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = headers
        self.timeout = timeout
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def serves(self, url: str) -> bool:
        return url.startswith(self.origin + "/")

    def _take(self) -> tuple[Any, bool]:
        """(a connection, whether it served requests before: an idle one from the pool)."""
        import select

        if self._pid != os.getpid():  # forked: the idle sockets are the parent's, never ours to use
            import threading

            self._idle, self._lock, self._pid = [], threading.Lock(), os.getpid()
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                sock = conn.sock
                if sock is not None and not select.select([sock], [], [], 0)[0]:
                    return conn, True
                conn.close()  # closed by the server while idle (or sent something unasked)
        return _connection_class()(self.host, self.port, timeout=self.timeout), False

    def post(self, url: str, body: bytes, content_type: str, *, read_only: bool = False) -> tuple[int, bytes, str]:
        """(status, body, content type) of one POST; OSError / http.client.HTTPException when the
        server cannot be reached or drops the connection. A `read_only` request that an idle
        connection lost (the server closed it as the request went out: no answer, or a reset) is
        sent once more on a new connection; anything else never is."""
        import http.client

        while True:
            conn, reused = self._take()
            conn.deadline = time.monotonic() + ANSWER_DEADLINE_S
            if conn.sock is not None:
                conn.sock.deadline = conn.deadline
            try:
                conn.request("POST", url[len(self.origin):], body=body,
                             headers={**self.headers, "content-type": content_type})
                resp = conn.getresponse()
                if resp.length is not None and resp.length > MAX_ANSWER_BYTES:
                    raise http.client.HTTPException(f"an answer of {resp.length:,} bytes announced")
                content = resp.read() if resp.length is not None else resp.read(MAX_ANSWER_BYTES + 1)
                if len(content) > MAX_ANSWER_BYTES:
                    raise http.client.HTTPException(f"an answer of more than {MAX_ANSWER_BYTES:,} bytes")
                break
            except (BrokenPipeError, ConnectionResetError):  # RemoteDisconnected included
                conn.close()
                if not (reused and read_only):
                    raise
            except BaseException:
                conn.close()
                raise
        encoding = (resp.getheader("content-encoding") or "identity").lower()
        if encoding in ("gzip", "deflate"):  # asked for identity, but a proxy may compress anyway
            import zlib

            inflate = zlib.decompressobj(31 if encoding == "gzip" else 15)
            try:
                content = inflate.decompress(content, MAX_ANSWER_BYTES + 1)  # a small bomb stays small
                problem = ("more than {:,} bytes once decompressed".format(MAX_ANSWER_BYTES)
                           if len(content) > MAX_ANSWER_BYTES else None if inflate.eof else "truncated")
            except zlib.error as exc:
                problem = str(exc)
            if problem:
                conn.close()
                raise http.client.HTTPException(f"an answer that does not decompress ({problem})")
        if resp.will_close:
            conn.close()
        else:
            with self._lock:
                self._idle.append(conn)
        return resp.status, content, resp.getheader("content-type") or ""

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class LibsqlClient:
    """Statements and batches against one libSQL server over HTTP. Thread-safe.

    `token` is the bearer token (None: none sent); `url_token` in the URL wins over it. A
    plain-http server on this machine is spoken to through http.client (:class:`_Loopback`);
    any other (TLS, another host, a `base_url` elsewhere) through httpx, made on first use.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float | None = None):
        self.server = parse_url(url)
        self.label = self.server.label
        self.token = self.server.url_token or token
        headers = {"user-agent": "synth-ai"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if self.server.loopback:
            headers["accept-encoding"] = "identity"
        self._headers = headers
        self._timeout = READ_TIMEOUT_S if timeout is None else timeout  # seconds without a byte from the server
        self._httpx: Any = None
        self._httpx_client: Any = None
        self._loopback = (_Loopback(self.server, headers, self._timeout)
                          if self.server.loopback and self.server.http_url.startswith("http:") else None)
        self._version = "v3"
        self._protobuf = True
        self.last_nbytes = 0

    @property
    def _http(self) -> Any:
        """The httpx client (servers elsewhere, TLS), made on first use."""
        if self._httpx_client is None:
            import httpx

            self._httpx = httpx
            self._httpx_client = httpx.Client(
                headers=self._headers, timeout=httpx.Timeout(self._timeout, connect=CONNECT_TIMEOUT_S),
                verify=_tls_context(self.server.http_url.startswith("https:")))
        return self._httpx_client

    def _post(self, url: str, body: bytes, content_type: str, read_only: bool = False) -> tuple[int, bytes, str]:
        """(status, body, content type) of a POST; LibsqlError when the server is not reached."""
        if self._loopback is not None and self._loopback.serves(url):
            import http.client

            try:
                return self._loopback.post(url, body, content_type, read_only=read_only)
            except (OSError, http.client.HTTPException) as exc:
                raise self._network_error(exc) from exc
        import http.client

        client = self._http
        # the bounds of the loopback transport: a whole answer within ANSWER_DEADLINE_S (each wait
        # for bytes has its own timeout, so a server trickling bytes would otherwise never end) and
        # at most MAX_ANSWER_BYTES once decoded (an announced size, or a gzip bomb, past it stops here)
        deadline = time.monotonic() + ANSWER_DEADLINE_S
        try:
            with client.stream("POST", url, content=body, headers={"content-type": content_type}) as resp:
                announced = resp.headers.get("content-length", "")
                if announced.isdigit() and int(announced) > MAX_ANSWER_BYTES:
                    raise http.client.HTTPException(f"an answer of more than {MAX_ANSWER_BYTES:,} bytes")
                chunks, size = [], 0
                for chunk in resp.iter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise http.client.HTTPException(f"an answer of more than {MAX_ANSWER_BYTES:,} bytes")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"no full answer within {ANSWER_DEADLINE_S:g} s")
                    chunks.append(chunk)
                return resp.status_code, b"".join(chunks), resp.headers.get("content-type", "")
        except (self._httpx.HTTPError, http.client.HTTPException, TimeoutError) as exc:
            raise self._network_error(exc) from exc

    # -- transport ----------------------------------------------------------------------------
    def pipeline(self, requests: list[dict[str, Any]], *, baton: str | None = None,
                 base_url: str | None = None, read_only: bool = False) -> dict[str, Any]:
        """POST one pipeline; returns the decoded body ({baton, base_url, results}); its size in
        bytes is in `self.last_nbytes`. `read_only`: the requests change nothing (may be re-sent)."""
        from synth_cli import _json

        body = _json.dumps_bytes({"baton": baton, "requests": requests})
        while True:
            url = f"{base_url or self.server.http_url}/{self._version}/pipeline"
            status, content, _ = self._post(url, body, "application/json", read_only)
            if status == 404 and self._version == "v3" and baton is None:
                self._version = "v2"  # a server older than Hrana 3: same JSON, v2 endpoint
                continue
            if status != 200:
                raise self._http_error(status, content)
            self.last_nbytes = len(content)
            try:
                decoded = _json.loads(content)
            except ValueError as exc:
                raise LibsqlError(f"{self.label}: the server's answer is not Hrana JSON ({exc})",
                                  code="HRANA_PROTO_ERROR",
                                  hint="is this URL a libSQL server (sqld, Turso)?") from exc
            if not isinstance(decoded, dict):
                raise LibsqlError(f"{self.label}: the server's answer is not a Hrana pipeline answer",
                                  code="HRANA_PROTO_ERROR", hint="is this URL a libSQL server (sqld, Turso)?")
            decoded["_nbytes"] = len(content)  # per answer: safe with a prefetching thread
            return decoded

    def _results(self, requests: list[dict[str, Any]], read_only: bool = False) -> list[dict[str, Any]]:
        """Run `requests` on a new stream closed in the same round trip; the response of each, or raise
        (the answer's size in bytes goes into the first response as `_nbytes`)."""
        body = self.pipeline([*requests, {"type": "close"}], read_only=read_only)
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(requests) + 1:
            raise LibsqlError(f"{self.label}: the server answered {len(results or ())} results for "
                              f"{len(requests) + 1} requests", code="HRANA_PROTO_ERROR")
        out = []
        try:
            for res in results[:-1]:
                if res.get("type") != "ok":
                    raise _sql_error(self.label, res.get("error"))
                out.append(dict(res["response"]))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._proto_error(exc) from None
        if out:
            out[0]["_nbytes"] = body.get("_nbytes", 0)
        return out

    # -- statements -----------------------------------------------------------------------------
    def execute(self, sql: str, args: Sequence[Any] = (), *, read_only: bool = False) -> Result:
        """One statement; `read_only` when it changes nothing (a request lost with a stale
        connection may then be sent again)."""
        [response] = self._results([{"type": "execute", "stmt": stmt(sql, args)}], read_only)
        result = self._decode(response.get("result"))
        result.nbytes = response.get("_nbytes", 0)
        return result

    def read(self, sql: str, args: Sequence[Any] = ()) -> Result:
        """:meth:`execute` for a read whose answer may be large (a scan's pages): in Hrana's Protobuf
        encoding, where text is not escaped; in JSON when the server has no Protobuf endpoint. Never
        for a write: a request lost with a stale connection is sent again."""
        if not self._protobuf:
            return self.execute(sql, args, read_only=True)
        body = pb_pipeline(sql, args)
        status, content, _ = self._post(f"{self.server.http_url}/v3-protobuf/pipeline", body,
                                        "application/x-protobuf", True)
        if status in (404, 405, 415):  # no Protobuf here (an older server): JSON from now on
            self._protobuf = False
            return self.execute(sql, args, read_only=True)
        if status != 200:
            raise self._http_error(status, content)
        self.last_nbytes = len(content)
        return pb_decode_execute(content, self.label)

    def batch(self, steps: list[dict[str, Any]]) -> list[tuple[Result | None, LibsqlError | None]]:
        """Run a Hrana batch (`steps`: [{"stmt", "condition"?}]); per step (result, error), both None
        when its condition skipped it."""
        [response] = self._results([{"type": "batch", "batch": {"steps": steps}}])
        raw = response.get("result")
        try:
            results, errors = raw.get("step_results") or [], raw.get("step_errors") or []
        except AttributeError as exc:
            raise self._proto_error(exc) from None
        if len(results) != len(steps) or len(errors) != len(steps):
            raise LibsqlError(f"{self.label}: the server answered a batch of {len(steps)} steps with "
                              f"{len(results)} results", code="HRANA_PROTO_ERROR")
        return [(self._decode(r) if r is not None else None, _sql_error(self.label, e) if e is not None else None)
                for r, e in zip(results, errors)]

    def transaction(self, statements: list[dict[str, Any]], *, begin: str = "BEGIN IMMEDIATE"
                    ) -> list[tuple[Result | None, LibsqlError | None]]:
        """`statements` (from :func:`stmt`) in one transaction, one round trip: each runs only if the
        previous one succeeded; COMMIT when all did, else ROLLBACK. Returns the statements' own
        (result, error) pairs; raises when the COMMIT itself failed."""
        steps: list[dict[str, Any]] = [{"stmt": {"sql": begin, "want_rows": False}}]
        for s in statements:
            steps.append({"condition": {"type": "ok", "step": len(steps) - 1}, "stmt": s})
        commit = len(steps)
        steps.append({"condition": {"type": "ok", "step": commit - 1}, "stmt": {"sql": "COMMIT", "want_rows": False}})
        steps.append({"condition": {"type": "not", "cond": {"type": "ok", "step": commit}},
                      "stmt": {"sql": "ROLLBACK", "want_rows": False}})
        out = self.batch(steps)
        begin_error = out[0][1]
        if begin_error is not None:
            raise begin_error
        inner = out[1:commit]
        commit_result, commit_error = out[commit]
        if commit_error is not None:
            raise commit_error
        if commit_result is None and not any(e for _, e in inner):
            raise LibsqlError(f"{self.label}: the transaction was not committed", code="HRANA_PROTO_ERROR")
        return inner

    def stream(self) -> "Stream":
        """An interactive stream (a SQLite connection on the server held by a baton), e.g. for a
        transaction whose statements depend on earlier answers."""
        return Stream(self)

    def close(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # closing a dead connection is not an error
            if self._loopback is not None:
                self._loopback.close()
            if self._httpx_client is not None:
                self._httpx_client.close()

    # -- errors -----------------------------------------------------------------------------------
    def _decode(self, raw: Any) -> Result:
        """:func:`decode_result`; a result that is not Hrana's shape is a LibsqlError naming the server."""
        try:
            return decode_result(raw)
        except (AttributeError, KeyError, TypeError, ValueError, LibsqlError) as exc:  # LibsqlError: a value's type
            raise self._proto_error(exc) from None

    def _proto_error(self, exc: Exception) -> LibsqlError:
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, (KeyError, TypeError)) else str(exc)
        return LibsqlError(f"{self.label}: the server's answer is not a Hrana pipeline answer ({detail})",
                           code="HRANA_PROTO_ERROR", hint="is this URL a libSQL server (sqld, Turso)?")

    def _network_error(self, exc: Exception) -> LibsqlError:
        from synth_cli.config import redact
        from synth_cli.store.locate import _network_reason

        reason = _network_reason(exc)
        if reason is None:
            if self._httpx is not None and isinstance(exc, self._httpx.TimeoutException):
                reason = "timed out"
            else:
                import http.client

                reason = redact(str(exc).strip() or type(exc).__name__)
                if isinstance(exc, http.client.IncompleteRead):
                    reason = f"{len(exc.partial):,} bytes read" + (f", {exc.expected:,} more expected"
                                                                    if exc.expected is not None else "")
                    return LibsqlError(f"{self.label}: the libSQL server's answer was cut short ({reason})",
                                       code="NETWORK", transient=True)
                if isinstance(exc, http.client.HTTPException) and not isinstance(exc, ConnectionError):
                    return LibsqlError(f"{self.label}: the libSQL server's answer is not usable HTTP ({reason})",
                                       code="NETWORK", transient=True,
                                       hint="is this URL a libSQL server (sqld, Turso)?")
        return LibsqlError(f"{self.label}: cannot reach the libSQL server ({reason})", code="NETWORK",
                           transient=True, hint="check the URL and that the server is running")

    def _http_error(self, status: int, content: bytes) -> LibsqlError:
        from synth_cli import _json
        from synth_cli.config import redact

        detail = ""
        text = content.decode("utf-8", "replace").strip()
        if text:
            try:
                data = _json.loads(text)
                detail = str(data.get("message") or data.get("error") or "") if isinstance(data, dict) else ""
            except ValueError:
                detail = text if len(text) <= 200 and "<" not in text else ""
        reason = f"HTTP {status}" + (f": {redact(detail)}" if detail else "")
        if status in (401, 403):
            if self.server.url_token:
                hint = "check the authToken in the URL"
            elif self.token:
                hint = "check the token in LIBSQL_AUTH_TOKEN (or TURSO_AUTH_TOKEN)"
            else:
                hint = "set LIBSQL_AUTH_TOKEN (or TURSO_AUTH_TOKEN)"
            return LibsqlError(f"{self.label}: the libSQL server refused the credentials ({reason})",
                               code=f"HTTP_{status}", status=status, hint=hint)
        if status == 404:
            return LibsqlError(f"{self.label}: no libSQL pipeline endpoint here ({reason})", code="HTTP_404",
                               status=status, hint="is this URL a libSQL server (sqld, Turso)?")
        transient = status >= 500 or status == 429
        return LibsqlError(f"{self.label}: the libSQL server answered {reason}", code=f"HTTP_{status}",
                           status=status, transient=transient)



def _same_origin(url: Any, base: str) -> bool:
    """Whether `url` (a server-named `base_url`) has the scheme, host and port of `base`."""
    from urllib.parse import urlsplit

    if not isinstance(url, str):
        return False
    try:
        a, b = urlsplit(url), urlsplit(base)
        default = {"http": 80, "https": 443}
        return (a.scheme.lower() == b.scheme.lower() and (a.hostname or "") == (b.hostname or "")
                and (a.port or default.get(a.scheme.lower())) == (b.port or default.get(b.scheme.lower())))
    except ValueError:  # a port that is not a number
        return False


class Stream:
    """Requests on one server-side stream: each answer's baton goes with the next request (the
    requests are serial), and `base_url`, when the server names one on the same scheme, host and
    port, is where they go (another address is refused: the token would go with them). The
    stream ends with :meth:`close` or with any HTTP/network failure (the server drops it)."""

    def __init__(self, client: LibsqlClient):
        self.client = client
        self.baton: str | None = None
        self.base_url: str | None = None
        self.started = False

    def send(self, requests: list[dict[str, Any]], *, close: bool = False) -> list[dict[str, Any]]:
        """Run `requests` (and `close` the stream after them); their results, ok or error, in order."""
        if self.started and self.baton is None:
            raise LibsqlError(f"{self.client.label}: the stream is closed", code="STREAM_CLOSED")
        reqs = [*requests, {"type": "close"}] if close else requests
        self.started = True
        try:
            body = self.client.pipeline(reqs, baton=self.baton, base_url=self.base_url)
        except LibsqlError:
            self.baton = None  # an HTTP error ends the stream on the server too
            raise
        self.baton = None if close else body.get("baton")
        moved = body.get("base_url")
        if moved:
            if not _same_origin(moved, self.client.server.http_url):
                self.baton = None
                raise LibsqlError(f"{self.client.label}: the server moved the stream to another address; "
                                  "refused (the token goes only to the server --db names)",
                                  code="HRANA_PROTO_ERROR")
            self.base_url = moved.rstrip("/")
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(reqs):
            self.baton = None
            raise LibsqlError(f"{self.client.label}: the server answered {len(results or ())} results for "
                              f"{len(reqs)} requests", code="HRANA_PROTO_ERROR")
        return results[:len(requests)]

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        [res] = self.send([{"type": "execute", "stmt": stmt(sql, args)}])
        if res.get("type") != "ok":
            raise _sql_error(self.client.label, res.get("error"))
        return self.client._decode(res["response"]["result"])

    def execute_many(self, statements: list[dict[str, Any]]) -> list[Result]:
        """Several statements in one round trip; the first failure raises (the rest still ran)."""
        results = self.send([{"type": "execute", "stmt": s} for s in statements])
        out = []
        for res in results:
            if res.get("type") != "ok":
                raise _sql_error(self.client.label, res.get("error"))
            out.append(self.client._decode(res["response"]["result"]))
        return out

    def close(self) -> None:
        """Close the stream (quietly: a stream the server already dropped is closed too)."""
        if self.baton is not None:
            try:
                self.send([], close=True)
            except LibsqlError:
                pass
        self.baton = None

__all__ = ["LibsqlClient", "LibsqlError", "Result", "Row", "ServerURL", "Stream", "decode_value", "encode_value",
           "parse_url", "pb_decode_execute", "pb_encode_value", "pb_pipeline", "stmt"]
