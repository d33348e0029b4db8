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
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from synth_cli.errors import TraceStoreError

_MIN_INT, _MAX_INT = -(2 ** 63), 2 ** 63 - 1
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 60.0


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


def decode_result(raw: dict[str, Any]) -> Result:
    columns = tuple((c.get("name") or "") for c in raw.get("cols", ()))
    index: dict[str, int] = {}
    for i, name in enumerate(columns):  # the first column of a name wins, as in sqlite3.Row
        index.setdefault(name, i)
    dec = decode_value
    rows = [Row(tuple([dec(v) for v in r]), index) for r in raw.get("rows", ())]
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


# --------------------------------------------------------------------------- the client


class LibsqlClient:
    """Statements and batches against one libSQL server over HTTP. Thread-safe (httpx.Client is).

    `token` is the bearer token (None: none sent); `url_token` in the URL wins over it.
    """

    def __init__(self, url: str, token: str | None = None, *, timeout: float = READ_TIMEOUT_S):
        import httpx

        self.server = parse_url(url)
        self.label = self.server.label
        self.token = self.server.url_token or token
        headers = {"content-type": "application/json", "user-agent": "synth-ai"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if self.server.loopback:
            headers["accept-encoding"] = "identity"
        self._httpx = httpx
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S))
        self._version = "v3"
        self.last_nbytes = 0

    # -- transport ----------------------------------------------------------------------------
    def pipeline(self, requests: list[dict[str, Any]], *, baton: str | None = None,
                 base_url: str | None = None) -> dict[str, Any]:
        """POST one pipeline; returns the decoded body ({baton, base_url, results}); its size in
        bytes is in `self.last_nbytes`."""
        from synth_cli import _json

        body = _json.dumps_bytes({"baton": baton, "requests": requests})
        while True:
            url = f"{base_url or self.server.http_url}/{self._version}/pipeline"
            try:
                resp = self._http.post(url, content=body)
            except self._httpx.HTTPError as exc:
                raise self._network_error(exc) from exc
            if resp.status_code == 404 and self._version == "v3" and baton is None:
                self._version = "v2"  # a server older than Hrana 3: same JSON, v2 endpoint
                continue
            if resp.status_code != 200:
                raise self._http_error(resp)
            content = resp.content
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

    def _results(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run `requests` on a new stream closed in the same round trip; the response of each, or raise
        (the answer's size in bytes goes into the first response as `_nbytes`)."""
        body = self.pipeline([*requests, {"type": "close"}])
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(requests) + 1:
            raise LibsqlError(f"{self.label}: the server answered {len(results or ())} results for "
                              f"{len(requests) + 1} requests", code="HRANA_PROTO_ERROR")
        out = []
        for res in results[:-1]:
            if res.get("type") != "ok":
                raise _sql_error(self.label, res.get("error"))
            out.append(res["response"])
        if out:
            out[0]["_nbytes"] = body.get("_nbytes", 0)
        return out

    # -- statements -----------------------------------------------------------------------------
    def execute(self, sql: str, args: Sequence[Any] = ()) -> Result:
        [response] = self._results([{"type": "execute", "stmt": stmt(sql, args)}])
        result = decode_result(response["result"])
        result.nbytes = response.get("_nbytes", 0)
        return result

    def batch(self, steps: list[dict[str, Any]]) -> list[tuple[Result | None, LibsqlError | None]]:
        """Run a Hrana batch (`steps`: [{"stmt", "condition"?}]); per step (result, error), both None
        when its condition skipped it."""
        [response] = self._results([{"type": "batch", "batch": {"steps": steps}}])
        raw = response["result"]
        results, errors = raw.get("step_results") or [], raw.get("step_errors") or []
        if len(results) != len(steps) or len(errors) != len(steps):
            raise LibsqlError(f"{self.label}: the server answered a batch of {len(steps)} steps with "
                              f"{len(results)} results", code="HRANA_PROTO_ERROR")
        return [(decode_result(r) if r is not None else None, _sql_error(self.label, e) if e is not None else None)
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
            self._http.close()

    # -- errors -----------------------------------------------------------------------------------
    def _network_error(self, exc: Exception) -> LibsqlError:
        from synth_cli.config import redact
        from synth_cli.store.locate import _network_reason

        reason = _network_reason(exc)
        if reason is None:
            if isinstance(exc, self._httpx.TimeoutException):
                reason = "timed out"
            else:
                reason = redact(str(exc) or type(exc).__name__)
        return LibsqlError(f"{self.label}: cannot reach the libSQL server ({reason})", code="NETWORK",
                           transient=True, hint="check the URL and that the server is running")

    def _http_error(self, resp: Any) -> LibsqlError:
        from synth_cli import _json
        from synth_cli.config import redact

        status = resp.status_code
        detail = ""
        try:
            text = resp.text.strip()
        except Exception:  # noqa: BLE001 - undecodable body
            text = ""
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



class Stream:
    """Requests on one server-side stream: each answer's baton goes with the next request (the
    requests are serial), and `base_url`, when the server names one, is where they go. The
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
        self.base_url = body.get("base_url") or self.base_url
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
        return decode_result(res["response"]["result"])

    def execute_many(self, statements: list[dict[str, Any]]) -> list[Result]:
        """Several statements in one round trip; the first failure raises (the rest still ran)."""
        results = self.send([{"type": "execute", "stmt": s} for s in statements])
        out = []
        for res in results:
            if res.get("type") != "ok":
                raise _sql_error(self.client.label, res.get("error"))
            out.append(decode_result(res["response"]["result"]))
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
           "parse_url", "stmt"]
