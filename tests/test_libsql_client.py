"""synth_cli.store.libsql, the Hrana-over-HTTP client, against a real sqld on 127.0.0.1 (tests/helpers/sqld.py):
URL schemes, values both ways, errors from servers that are not libSQL, page sizing under the
server's response limit, prefetching scans; and that opening the reader module stays cheap."""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading

import pytest

from helpers import FIXTURE_DIR, ROOT, invoke

from helpers import sqld as _sqld

from synth_cli.errors import TraceStoreError
from synth_cli.store.libsql import LibsqlClient, LibsqlError, decode_value, encode_value, parse_url


def _need_sqld():
    if _sqld.sqld_binary() is None:
        pytest.skip(_sqld.install_error())



# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url, http_url, loopback", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080", True),
    ("http://127.0.0.1:8080/", "http://127.0.0.1:8080", True),
    ("https://db.example.com", "https://db.example.com", False),
    ("ws://localhost:8080", "http://localhost:8080", True),
    ("wss://db-org.turso.io", "https://db-org.turso.io", False),
    ("libsql://db-org.turso.io", "https://db-org.turso.io", False),
    ("libsql://127.0.0.1:8080?tls=0", "http://127.0.0.1:8080", True),
    ("LIBSQL://db-org.turso.io?tls=1", "https://db-org.turso.io", False),
    ("http://[::1]:8080", "http://[::1]:8080", True),
    ("https://proxy.example.com/db/x", "https://proxy.example.com/db/x", False),
])
def test_url_schemes_map_to_http(url, http_url, loopback):
    server = parse_url(url)
    assert (server.http_url, server.loopback, server.url_token) == (http_url, loopback, None)


@pytest.mark.parametrize("url, message", [
    ("libsql://db.turso.io?tls=0", "a libsql:// URL with ?tls=0 needs an explicit port"),
    ("http://127.0.0.1:8080?tls=1", "a http:// URL cannot use TLS (?tls=1)"),
    ("wss://db.turso.io?tls=0", "a wss:// URL cannot turn TLS off (?tls=0)"),
    ("https://db.turso.io?foo=1", "unsupported parameter 'foo' in the libSQL URL"),
    ("ftp://db.turso.io", "unsupported URL scheme 'ftp'"),
    ("http://", "no host in the libSQL URL"),
])
def test_bad_urls_are_one_clear_error(url, message):
    with pytest.raises(LibsqlError) as info:
        parse_url(url)
    assert message in info.value.message
    assert "?" not in info.value.message.split(":")[0]


def test_url_token_is_a_secret_and_stripped_from_the_label():
    from synth_cli.config import redact

    server = parse_url("libsql://user:hunter2pass@db-org.turso.io?authToken=eyJhbGciOiJFZERTQSJ9.abc.def")
    assert server.url_token == "eyJhbGciOiJFZERTQSJ9.abc.def"
    assert server.label == "libsql://db-org.turso.io"
    assert "eyJhbGciOiJFZERTQSJ9.abc.def" not in redact("token eyJhbGciOiJFZERTQSJ9.abc.def here")
    assert "hunter2pass" not in redact("password hunter2pass here")


# --------------------------------------------------------------------------- values


def test_values_round_trip_through_sqld(sqld_url):
    client = LibsqlClient(sqld_url)
    values = [None, 0, 2 ** 62 + 1, -(2 ** 63), 1.5, -0.25, "héllo\n\"quoted\" \\ ✓", "", b"\x00\xffbin", b"",
              True]
    sql = "SELECT " + ", ".join("?" for _ in values) + ", " + ", ".join(f"typeof(?{i + 1})" for i in range(len(values)))
    try:
        [row] = client.execute(sql, values).rows
    finally:
        client.close()
    n = len(values)
    assert list(row)[:n] == [None, 0, 2 ** 62 + 1, -(2 ** 63), 1.5, -0.25, "héllo\n\"quoted\" \\ ✓", "",
                             b"\x00\xffbin", b"", 1]
    assert list(row)[n:] == ["null", "integer", "integer", "integer", "real", "real", "text", "text", "blob",
                             "blob", "integer"]


def test_value_encoding_edges():
    assert encode_value(True) == {"type": "integer", "value": "1"}
    assert encode_value(float("nan")) == {"type": "null"}  # what SQLite stores for NaN
    with pytest.raises(OverflowError):
        encode_value(2 ** 63)
    with pytest.raises(ValueError):
        encode_value(float("inf"))
    with pytest.raises(TypeError):
        encode_value(object())
    assert decode_value({"type": "blob", "base64": "qw"}) == b"\xab"  # sqld leaves out the padding
    assert decode_value({"type": "float", "value": 3}) == 3.0 and isinstance(decode_value({"type": "float",
                                                                                          "value": 3}), float)


def test_rows_index_by_name_and_position(sqld_url):
    client = LibsqlClient(sqld_url)
    try:
        result = client.execute("SELECT session_id, num_timesteps AS steps FROM session_traces ORDER BY session_id "
                                "LIMIT 2")
    finally:
        client.close()
    row = result.rows[0]
    assert result.columns == ("session_id", "steps") and row.keys() == ["session_id", "steps"]
    assert row["steps"] == row[1] == 8 and tuple(row) == (row[0], 8)


@pytest.mark.parametrize("method", ["execute", "read"], ids=["json-execute", "protobuf-read"])
def test_sql_error_is_the_servers_message(sqld_url, method):
    client = LibsqlClient(sqld_url)
    try:
        with pytest.raises(LibsqlError) as info:
            getattr(client, method)("SELECT no_such_column FROM session_traces")
    finally:
        client.close()
    assert info.value.message.startswith(f"{sqld_url}: SQL input error: no such column: no_such_column")
    assert info.value.code == "SQL_INPUT_ERROR" and not info.value.transient


def test_transaction_commits_or_rolls_back(tmp_path):
    _need_sqld()
    served = tmp_path / "crafter.db"
    shutil.copytree(FIXTURE_DIR, served)
    from synth_cli.store.libsql import stmt

    with _sqld.running_sqld(served) as url:
        client = LibsqlClient(url)
        try:
            client.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
            client.transaction([stmt("INSERT INTO t VALUES (?, ?)", ["a", 1]), stmt("INSERT INTO t VALUES (?, ?)",
                                                                                     ["b", 2])])
            out = client.transaction([stmt("INSERT INTO t VALUES (?, ?)", ["c", 3]),
                                      stmt("INSERT INTO t VALUES (?, ?)", ["a", 9])])
            rows = [tuple(r) for r in client.execute("SELECT k, v FROM t ORDER BY k").rows]
        finally:
            client.close()
    assert rows == [("a", 1), ("b", 2)]  # the failed transaction left nothing behind
    assert out[0][1] is None and out[1][1] is not None and out[1][1].code == "SQLITE_CONSTRAINT"
    assert "UNIQUE constraint failed: t.k" in out[1][1].message


# --------------------------------------------------------------------------- servers that are not libSQL


class _Canned(http.server.BaseHTTPRequestHandler):
    status = 404
    body = b"<html><body>Not Found</body></html>"
    ctype = "text/html"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(self.status)
        self.send_header("content-type", self.ctype)
        self.send_header("content-length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


def _serve(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize("status, ctype, body, expected, transient", [
    (404, "text/html", b"<html>Not Found</html>", "no libSQL pipeline endpoint here (HTTP 404)", False),
    (500, "text/plain", b"boom", "the libSQL server answered HTTP 500: boom", True),
    (503, "application/json", b'{"message": "overloaded", "code": "X"}',
     "the libSQL server answered HTTP 503: overloaded", True),
    (200, "text/html", b"<html>hi</html>", "the server's answer is not Hrana JSON", False),
])
def test_a_server_that_is_not_libsql(status, ctype, body, expected, transient):
    """`execute` (JSON) and the CLI (whose reads are Protobuf, JSON on a 404) name what went wrong."""
    handler = type("H", (_Canned,), {"status": status, "ctype": ctype, "body": body})
    server, url = _serve(handler)
    try:
        client = LibsqlClient(url)
        with pytest.raises(LibsqlError) as info:
            client.execute("SELECT 1")
        client.close()
        result = invoke("traces", "--db", url)
    finally:
        server.shutdown()
    assert info.value.message.startswith(f"{url}: {expected}")
    assert info.value.transient is transient
    assert result.exit_code == 1 and result.stdout == ""
    if status == 200:  # read in Protobuf first: not JSON, not Protobuf either
        expected = "the server's answer is not a Hrana Protobuf answer"
    assert result.stderr.splitlines()[0].startswith(f"error: {url}: {expected}")
    assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------- scans


def test_scan_shrinks_pages_under_the_servers_response_limit(tmp_path):
    """sqld refuses answers over --max-response-size: the scan halves its page and goes on."""
    _need_sqld()
    served = tmp_path / "crafter.db"
    shutil.copytree(FIXTURE_DIR, served)
    from synth_cli.store.reader import TraceStore

    with _sqld.running_sqld(served, extra_args=("--max-response-size", "40KB")) as url:
        sql = "SELECT id, session_id, call_records FROM events WHERE call_records IS NOT NULL"
        with TraceStore.open(url) as remote, TraceStore.open(FIXTURE_DIR) as local:
            rows = [tuple(r) for r in remote.scan(sql, key="id", page_size=200)]
            expected = [tuple(r) for r in local.scan(sql, key="id")]
        out, local_out, out2 = tmp_path / "out.jsonl", tmp_path / "local.jsonl", tmp_path / "out2.jsonl"
        filtered = invoke("filter", "--db", url, "-o", out)
        two = invoke("filter", "--db", url, "-o", out2, "--workers", "2")  # each worker shrinks its own pages
    assert len(rows) == 240 and rows == expected
    assert filtered.exit_code == 0, filtered.output
    assert two.exit_code == 0, two.output
    assert invoke("filter", "--db", FIXTURE_DIR, "-o", local_out).exit_code == 0
    assert out.read_bytes() == local_out.read_bytes() == out2.read_bytes()
    assert len(out.read_bytes().splitlines()) == 240


def test_scan_left_early_stops_cleanly(sqld_url):
    from synth_cli.store.reader import TraceStore

    with TraceStore.open(sqld_url) as remote:
        scan = remote.scan("SELECT id FROM events", key="id", page_size=10)
        first = [next(scan)[0] for _ in range(25)]
        scan.close()  # a page is being prefetched: closing waits for it and leaves no thread behind
        assert first == sorted(first) and len(set(first)) == 25
        assert remote.scalar("SELECT count(*) FROM events") == 720
    assert not [t for t in threading.enumerate() if t.name.startswith("libsql-prefetch")]


def test_reader_import_stays_cheap():
    """Opening the reader module imports neither httpx nor the libSQL client; a server on this machine
    over http:// is spoken to without httpx (http.client); any other server gets httpx."""
    code = ("import sys\n"
            "import synth_cli.store.reader as r\n"
            "before = [m for m in ('httpx', 'synth_cli.store.libsql') if m in sys.modules]\n"
            "s = r.RemoteTraceStore('http://127.0.0.1:9')\n"
            "label = s.label\n"
            "try:\n"
            "    s.rows('SELECT 1')\n"
            "except Exception as exc:\n"
            "    err = type(exc).__name__\n"
            "loopback = 'httpx' in sys.modules\n"
            "from synth_cli.store.libsql import LibsqlClient\n"
            "LibsqlClient('https://db.example.com')._http\n"  # made, not connected
            "print(before, loopback, 'httpx' in sys.modules, err)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["[]", "False", "True", "LibsqlError"]


def test_loopback_connections_are_kept_alive_and_stale_ones_dropped(sqld_url):
    """One connection serves request after request; one the server closed while idle is replaced
    (never a failed request); a server that went away is a clean network error."""
    client = LibsqlClient(sqld_url)
    try:
        for _ in range(3):
            assert client.read("SELECT 1").rows[0][0] == 1 and client.execute("SELECT 2").rows[0][0] == 2
        [conn] = client._loopback._idle  # every request went over the same kept-alive connection
        conn.sock.shutdown(2)  # as if the server had closed it while idle
        assert client.execute("SELECT 3").rows[0][0] == 3
        assert client._loopback._idle[0] is not conn
    finally:
        client.close()
    server, url = _serve(_Canned)
    server.shutdown()
    server.server_close()
    dead = LibsqlClient(url)
    with pytest.raises(LibsqlError) as info:
        dead.read("SELECT 1")
    assert info.value.code == "NETWORK" and "connection refused" in info.value.message


def test_error_is_a_trace_store_error():
    assert issubclass(LibsqlError, TraceStoreError)


# --------------------------------------------------------------------------- Protobuf reads


def test_protobuf_reads_give_the_values_of_json(sqld_url):
    """`read` (Hrana's Protobuf encoding, used by scans) and `execute` (JSON) agree on every kind of value."""
    client = LibsqlClient(sqld_url)
    values = [None, 0, -1, 2 ** 62 + 1, -(2 ** 63), 2 ** 63 - 1, 1.5, -0.25, 1e300, "héllo\n\"quoted\" \\ ✓", "",
              "x" * 5000, b"\x00\xffbin", b"", True, float("nan")]
    sql = "SELECT " + ", ".join(f"?{i + 1} AS c{i}" for i in range(len(values))) + ", " + \
          ", ".join(f"typeof(?{i + 1})" for i in range(len(values)))
    try:
        pb, js = client.read(sql, values), client.execute(sql, values)
        empty = client.read("SELECT 1 AS one WHERE 0")
        assert client._protobuf  # sqld has the endpoint: no fallback happened
    finally:
        client.close()
    assert list(pb.rows[0]) == list(js.rows[0])
    assert list(pb.rows[0])[:len(values)] == [None, 0, -1, 2 ** 62 + 1, -(2 ** 63), 2 ** 63 - 1, 1.5, -0.25, 1e300,
                                              "héllo\n\"quoted\" \\ ✓", "", "x" * 5000, b"\x00\xffbin", b"", 1,
                                              None]
    assert pb.columns == js.columns and pb.rows[0]["c3"] == 2 ** 62 + 1
    assert empty.rows == [] and empty.columns == ("one",)


class _JsonOnly(_Canned):
    """A server without the Protobuf endpoint (404 there); its JSON endpoint answers one row."""

    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path.startswith("/v3-protobuf/"):
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        body = (b'{"baton": null, "base_url": null, "results": [{"type": "ok", "response": {"type": "execute", '
                b'"result": {"cols": [{"name": "v"}], "rows": [[{"type": "text", "value": "json"}]], '
                b'"affected_row_count": 0}}}, {"type": "ok", "response": {"type": "close"}}]}')
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_protobuf_falls_back_to_json_on_a_server_without_it():
    server, url = _serve(_JsonOnly)
    try:
        client = LibsqlClient(url)
        first, second = client.read("SELECT 'json' AS v"), client.read("SELECT 'json' AS v")
        client.close()
    finally:
        server.shutdown()
    assert [tuple(r) for r in first.rows] == [("json",)] == [tuple(r) for r in second.rows]
    assert client._protobuf is False


@pytest.mark.parametrize("body", [b"\xff\xff\xff", b"\x1a\x05\x0a\x03\x12\x01", b"<html>hi</html>"])
def test_a_garbled_protobuf_answer_is_one_clear_error(body):
    handler = type("H", (_Canned,), {"status": 200, "ctype": "application/x-protobuf", "body": body})
    server, url = _serve(handler)
    try:
        client = LibsqlClient(url)
        with pytest.raises(LibsqlError) as info:
            client.read("SELECT 1")
        client.close()
    finally:
        server.shutdown()
    assert info.value.code == "HRANA_PROTO_ERROR"
    assert info.value.message.startswith(f"{url}: the server") and "\n" not in info.value.message


def test_plain_http_clients_load_no_certificates_and_verify_any_tls():
    """An http:// client gets a TLS context with no CA (nothing to load, nothing it could verify);
    https:// clients share one verifying context per process."""
    import ssl

    from synth_cli.store import libsql

    plain, a, b = libsql._tls_context(False), libsql._tls_context(True), libsql._tls_context(True)
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname and plain.cert_store_stats()["x509_ca"] == 0
    assert a is b and a.verify_mode == ssl.CERT_REQUIRED and a.check_hostname


def test_a_forked_process_never_uses_the_parents_connection(sqld_url):
    import os

    client = LibsqlClient(sqld_url)
    try:
        assert client.execute("SELECT 1").rows[0][0] == 1
        [inherited] = client._loopback._idle
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a request of its own, on a connection of its own
            ok = False
            try:
                ok = client.read("SELECT 2").rows[0][0] == 2 and inherited not in client._loopback._idle
            finally:
                os.write(write, b"1" if ok else b"0")
                os._exit(0)
        os.close(write)
        answer = os.read(read, 1)
        os.waitpid(pid, 0)
        os.close(read)
        assert answer == b"1"
        assert client.execute("SELECT 3").rows[0][0] == 3 and client._loopback._idle == [inherited]
    finally:
        client.close()


def test_protobuf_answers_with_fields_we_do_not_know_still_decode():
    """Unknown fields are skipped (the spec's forward compatibility), values in any order of encoding."""
    import struct

    from synth_cli.store.libsql import _pb_bytes, _pb_varint, pb_decode_execute

    text = _pb_bytes(4, "héllo".encode())
    integer = b"\x10" + _pb_varint(5)  # zigzag 5 -> -3
    double = b"\x19" + struct.pack("<d", 2.5)
    blob = _pb_bytes(5, b"\x00\x01")
    null = _pb_bytes(1, b"")
    unknown_varint = _pb_varint(7 << 3) + _pb_varint(300)
    plain_row = b"".join(_pb_bytes(1, v) for v in (text, integer, double, blob, null))
    odd_row = unknown_varint + b"".join(_pb_bytes(1, v) for v in (text, integer)) + _pb_bytes(9, b"xyz") + \
        _pb_bytes(1, unknown_varint + double) + _pb_bytes(1, blob) + _pb_bytes(1, null)  # an unknown field inside a value too
    result = (b"".join(_pb_bytes(1, _pb_bytes(1, name)) for name in (b"a", b"b", b"c", b"d", b"e")) + _pb_bytes(2, plain_row) + _pb_bytes(2, odd_row)
              + _pb_bytes(5, b"future") + b"\x18\x02")  # affected_row_count = 2
    execute = _pb_bytes(1, _pb_bytes(2, _pb_bytes(1, result)))
    close = _pb_bytes(1, _pb_bytes(1, b""))
    answer = _pb_bytes(1, b"baton?") + _pb_bytes(3, execute) + _pb_bytes(3, close) + _pb_bytes(12, b"later")
    decoded = pb_decode_execute(answer, "srv")
    assert decoded.columns == ("a", "b", "c", "d", "e") and decoded.affected_row_count == 2 and decoded.encoding == "protobuf"
    assert [tuple(r) for r in decoded.rows] == [("héllo", -3, 2.5, b"\x00\x01", None)] * 2
    with pytest.raises(LibsqlError) as info:
        pb_decode_execute(answer[:-3], "srv")  # cut short
    assert info.value.code == "HRANA_PROTO_ERROR"


@pytest.mark.parametrize("value", [
    b"\x2a\x05ab",  # a blob of 5 bytes in a value of 4
    b"\x22\x05ab",  # text, the same (after a first value, so the general reader has it)
    b"\x19\x00\x00\x00\x00",  # a double of 4 bytes
    b"\x10\xff",  # an integer whose varint goes on past the value
    b"\x0a\x05",  # a null message of 5 bytes in a value of 2
], ids=["blob", "text", "double", "integer", "null"])
def test_a_protobuf_value_running_past_its_end_is_an_error(value):
    """Within the answer, but past its own value: never read as part of the next value."""
    from synth_cli.store.libsql import _pb_bytes, _pb_varint, pb_decode_execute

    first = b"\x10" + _pb_varint(2)
    row = _pb_bytes(1, first) + _pb_bytes(1, value) + _pb_bytes(1, _pb_bytes(4, b"next value, 5+ bytes"))
    cols = b"".join(_pb_bytes(1, _pb_bytes(1, name)) for name in (b"a", b"b", b"c"))
    execute = _pb_bytes(1, _pb_bytes(2, _pb_bytes(1, cols + _pb_bytes(2, row))))
    answer = _pb_bytes(3, execute) + _pb_bytes(3, _pb_bytes(1, _pb_bytes(1, b"")))
    with pytest.raises(LibsqlError) as info:
        print(pb_decode_execute(answer, "srv").rows)
    assert info.value.code == "HRANA_PROTO_ERROR" and "not a Hrana Protobuf answer" in info.value.message
