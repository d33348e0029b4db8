"""`filter` (one process and `--workers 2`) and the reports over a libSQL server that misbehaves:
a server on 127.0.0.1 in front of a real sqld (tests/helpers/badserver.py) answers some requests
its own way. Every failure is one clear `error:` line (and a hint), exit 1, no traceback, no
`error: unexpected`, no output file; what is only unusual (chunked, gzip unasked, connections
closed between requests) gives the bytes of the local file."""

from __future__ import annotations

import gzip
import json
import threading

import pytest

from helpers import FIXTURE_DIR, invoke
from helpers.badserver import BadServer, response

from synth_cli.store import libsql
from synth_cli.store.libsql import _pb_bytes, _pb_varint

TOKEN = "sekrit-token-0123456789abcdef"



@pytest.fixture(scope="module")
def local_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "local.jsonl"
    assert invoke("filter", "--db", FIXTURE_DIR, "-o", out).exit_code == 0
    return out.read_bytes()


@pytest.fixture(autouse=True)
def short_timeout(monkeypatch):
    monkeypatch.setattr(libsql, "READ_TIMEOUT_S", 1.0)  # forked workers inherit it
    monkeypatch.setattr(libsql, "MAX_ANSWER_BYTES", 4 << 20)  # the fixture's pages are well under 1 MB
    monkeypatch.setattr(libsql, "ANSWER_DEADLINE_S", 3.0)


# --------------------------------------------------------------------------- behaviours


def _fixed(data: bytes, keep: bool = True):
    def behaviour(answer, real):
        answer(data)
        return keep
    return behaviour


def _hang(answer, real):
    threading.Event().wait(20)  # far past the client's timeout (1 s here); then the connection closes
    return False


def _stalls_mid_body(answer, real):
    status, ctype, body = real()
    answer(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode()
           + body[:len(body) // 2])
    return _hang(answer, real)


def _trickle(answer, real):
    """A byte every 0.2 s (well within the 1 s wait for bytes): only the deadline of an answer ends it."""
    status, ctype, body = real()
    answer(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n".encode())
    stop = threading.Event()
    for byte in body[:100]:
        if stop.wait(0.2):
            break
        answer(bytes([byte]))  # OSError once the client has gone: the server's thread ends
    return False


def _truncated(answer, real):
    status, ctype, body = real()
    answer(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body) + 100}\r\n\r\n".encode()
           + body[:len(body) // 2])
    return False


def _chunked(answer, real):
    status, ctype, body = real()
    third = max(1, len(body) // 3)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:third], body[third:2 * third], body[2 * third:])
                      if c)
    answer(f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ntransfer-encoding: chunked\r\n\r\n".encode()
           + chunks + b"0\r\n\r\n")
    return True


def _gzipped(answer, real):
    status, ctype, body = real()
    answer(response(status, gzip.compress(body), ctype, "content-encoding: gzip\r\n"))
    return True


def _close_delimited(answer, real):
    """HTTP/1.0 style: no length, the body ends when the connection does."""
    status, ctype, body = real()
    answer(f"HTTP/1.0 {status} X\r\ncontent-type: {ctype}\r\n\r\n".encode() + body)
    return False


def _then_close(extra: str):
    def behaviour(answer, real):
        status, ctype, body = real()
        answer(response(status, body, ctype, extra))
        return False  # closed after the answer: with `Connection: close`, or without a word (a stale pooled one)
    return behaviour


def _short_row(answer, real):
    """An answer declaring 3 columns whose row has 1 value."""
    cols = b"".join(_pb_bytes(1, _pb_bytes(1, name)) for name in (b"id", b"session_id", b"call_records"))
    result = cols + _pb_bytes(2, _pb_bytes(1, b"\x10" + _pb_varint(2)))
    execute = _pb_bytes(1, _pb_bytes(2, _pb_bytes(1, result)))
    answer(response(200, _pb_bytes(3, execute) + _pb_bytes(3, _pb_bytes(1, _pb_bytes(1, b"")))))
    return True


def _json_only(json_behaviour):
    """No Protobuf endpoint (404 there, so the client reads in JSON): the JSON endpoint answers `json_behaviour`."""
    return {"protobuf": _fixed(response(404, b"")), "json": json_behaviour}


_ROW = b'{"type": "ok", "response": {"type": "execute", "result": {"cols": [{"name": "a"}], "rows": [%s]}}}'


def _json_answer(row: bytes):
    return _fixed(response(200, b'{"baton": null, "results": [%s, {"type": "ok", "response": {"type": "close"}}]}'
                           % (_ROW % row), "application/json"))


def _json_error(status: int, message: str, extra: str = ""):
    return _fixed(response(status, json.dumps({"message": message}).encode(), "application/json", extra))


FAILURES = {
    # name: (behaviour, what the error line says)
    "hang": (_hang, "timed out"),
    "stalls-mid-body": (_stalls_mid_body, "timed out"),
    "trickle": (_trickle, "timed out"),
    "garbage": (_fixed(response(200, b"\xff\xfe\x00garbage")), "not a Hrana"),
    "truncated": (_truncated, "the libSQL server's answer was cut short ("),
    "bad-chunk": (_fixed(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", False),
                  "the libSQL server's answer was cut short"),
    "huge-length": (_fixed(b"HTTP/1.1 200 OK\r\ncontent-length: 100000000000\r\n\r\nabc", False),
                    "not usable HTTP (an answer of 100,000,000,000 bytes announced)"),
    "not-http": (_fixed(b"\x1b[2Jgarbage\r\n\r\n", False), "not usable HTTP (\\x1b[2Jgarbage)"),
    "too-many-headers": (_fixed(b"HTTP/1.1 200 OK\r\n" + b"x: a\r\n" * 200 + b"\r\n", False),
                         "not usable HTTP (got more than 100 headers)"),
    "json-for-protobuf": (_fixed(response(200, b'{"baton": null, "results": []}', "application/json")),
                          "not a Hrana"),
    "html-200": (_fixed(response(200, b"<html><body>Welcome</body></html>", "text/html")), "not a Hrana"),
    "bad-gzip": (_fixed(response(200, b"not gzip at all", extra="content-encoding: gzip\r\n")),
                 "does not decompress"),
    "gzip-truncated": (_fixed(response(200, gzip.compress(b"x" * 1000)[:-12], extra="content-encoding: gzip\r\n")),
                       "an answer that does not decompress (truncated)"),
    "gzip-bomb": (_fixed(response(200, gzip.compress(bytes(5 << 20)), extra="content-encoding: gzip\r\n")),
                  "an answer that does not decompress (more than 4,194,304 bytes once decompressed)"),
    "length-past-end": (_fixed(response(200, b"\x1a\xff\xff\xff\x0f\x00")), "not a Hrana"),
    "empty-200": (_fixed(response(200, b"")), "answered 0 results for 2 requests"),
    "negative-length": (_fixed(response(200, b"\x1a" + b"\xff" * 9 + b"\x01")), "not a Hrana"),
    "varint-too-long": (_fixed(response(200, b"\x1a" + b"\xff" * 12 + b"\x01")), "not a Hrana"),
    "short-row": (_short_row, "not a Hrana"),
    "json-value-not-an-object": (_json_only(_json_answer(b"[1]")), "not a Hrana pipeline answer"),
    "json-row-too-short": (_json_only(_json_answer(b"[]")), "not a Hrana pipeline answer"),
    "json-result-missing": (_json_only(_fixed(response(200, b'{"results": [{"type": "ok"}, {"type": "ok"}]}',
                                                       "application/json"))), "not a Hrana pipeline answer"),
    "401": (_json_error(401, f"token {TOKEN} is not valid"), "refused the credentials (HTTP 401"),
    "403": (_json_error(403, "Forbidden"), "refused the credentials (HTTP 403: Forbidden)"),
    "404": (_fixed(response(404, b"<html>Not Found</html>", "text/html")), "no libSQL pipeline endpoint here"),
    "500": (_json_error(500, "internal error: disk I/O"), "answered HTTP 500: internal error: disk I/O"),
    "429": (_json_error(429, "rate limited"), "answered HTTP 429: rate limited"),
    "redirect-elsewhere": (_fixed(response(307, b"", extra="location: http://localhost:9/v3-protobuf/pipeline\r\n")),
                           "answered HTTP 307"),
    "ansi": (_json_error(500, "\x1b[31mred\x1b[0m [bold]loud[/bold]"),
             "answered HTTP 500: \\x1b[31mred\\x1b[0m [bold]loud[/bold]"),
}

SUCCESSES = {
    "chunked": _chunked,
    "gzip-unasked": _gzipped,
    "connection-close": _then_close("connection: close\r\n"),
    "close-delimited": _close_delimited,
    "closed-silently": _then_close(""),
}


def _is_page(path: str, body: bytes) -> bool:
    """A keyset page of the call-record scan (the part of a filter that workers do)."""
    return path.startswith("/v3-protobuf/") and b"call_records" in body and b"LIMIT" in body


def _pick(behaviour, path: str):
    if isinstance(behaviour, dict):
        return behaviour["protobuf" if path.startswith("/v3-protobuf/") else "json"]
    return behaviour


def _from_the_scan_on(behaviour):
    """Every request misbehaves from the first page of the call-record scan on (in each worker)."""
    started = []

    def misbehave(path, body):
        if started or _is_page(path, body):
            started.append(1)
            return _pick(behaviour, path)
        return None
    return misbehave


def _check_failure(result, url: str, expected: str, output=None) -> None:
    lines = result.stderr.splitlines()
    assert result.exit_code == 1, result.output
    assert lines and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0], result.stderr
    assert "Traceback" not in result.stderr and "error: unexpected" not in result.stderr
    assert len(lines) <= 2 and all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    assert result.stdout == ""
    assert TOKEN not in result.output
    assert "\x1b" not in result.output
    if output is not None:
        assert not output.exists() and list(output.parent.iterdir()) == [], "no output, no temporary file left"


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("name", list(FAILURES))
def test_filter_fails_cleanly_mid_scan(tmp_path, sqld_url, monkeypatch, name, workers):
    behaviour, expected = FAILURES[name]
    monkeypatch.setenv("LIBSQL_AUTH_TOKEN", TOKEN)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "train.jsonl"
    server = BadServer(sqld_url, _from_the_scan_on(behaviour))
    with server as url:
        result = invoke("filter", "--db", url, "-o", out, "--workers", workers)
    assert server.misbehaved >= 1
    _check_failure(result, url, expected, out)


@pytest.mark.parametrize("report", ["traces", "usage"])
@pytest.mark.parametrize("name", list(FAILURES))
def test_reports_fail_cleanly(sqld_url, monkeypatch, name, report):
    behaviour, expected = FAILURES[name]
    monkeypatch.setenv("LIBSQL_AUTH_TOKEN", TOKEN)
    with BadServer(sqld_url, lambda path, body: _pick(behaviour, path)) as url:
        result = invoke(report, "--db", url)
    if name in ("json-for-protobuf", "html-200", "short-row", "garbage", "length-past-end", "varint-too-long"):
        expected = "the server's answer is not a Hrana"  # the JSON endpoint (404 -> 404 -> v2) gets the same
    _check_failure(result, url, expected)
    assert result.stdout == ""


@pytest.mark.parametrize("args", [("--dry-run",), ("-o", "out.jsonl", "--workers", "2")], ids=["one", "workers"])
def test_token_never_shown_with_debug(sqld_url, monkeypatch, tmp_path, args):
    """The server echoes the token in its 401: masked in the message and in --debug's traceback."""
    monkeypatch.setenv("LIBSQL_AUTH_TOKEN", TOKEN)
    monkeypatch.chdir(tmp_path)
    behaviour = FAILURES["401"][0]
    with BadServer(sqld_url, _from_the_scan_on(behaviour)) as url:
        result = invoke("--debug", "filter", "--db", url, *args)
    assert result.exit_code == 1 and "refused the credentials" in result.stderr, result.output
    assert TOKEN not in result.output and TOKEN[:12] not in result.output


@pytest.mark.parametrize("workers", ["1", "2"])
def test_redirect_to_another_local_server_is_not_followed(tmp_path, sqld_url, workers):
    other = BadServer(sqld_url)
    with other as other_url:
        redirect = _fixed(response(307, b"", extra=f"location: {other_url}/v3-protobuf/pipeline\r\n"))
        with BadServer(sqld_url, lambda path, body: redirect if _is_page(path, body) else None) as url:
            result = invoke("filter", "--db", url, "-o", tmp_path / "out.jsonl", "--workers", workers)
    _check_failure(result, url, "answered HTTP 307")
    assert other.requests == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_page_without_its_key_column_fails_cleanly(tmp_path, sqld_url, workers):
    def renamed(answer, real):
        status, ctype, body = real()
        answer(response(status, body.replace(b"\x0a\x02id", b"\x0a\x02ix"), ctype))  # Col {name: "id"} -> "ix"
        return True

    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    with BadServer(sqld_url, lambda path, body: renamed if _is_page(path, body) else None) as url:
        result = invoke("filter", "--db", url, "-o", out, "--workers", workers)
    _check_failure(result, url, "the server answered a page without its 'id' column", out)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_server_that_ignores_the_keyset_fails_cleanly(tmp_path, sqld_url, workers):
    """Every following page answered with a first page again: an error, not a scan that never ends."""
    first: list[tuple] = []

    def same_page(answer, real):
        if not first:
            first.append(real())
        answer(response(*first[0][:1], first[0][2], first[0][1]))
        return True

    def misbehave(path, body):
        return same_page if _is_page(path, body) else None

    out = tmp_path / "out" / "train.jsonl"
    out.parent.mkdir()
    with BadServer(sqld_url, misbehave) as url:
        result = invoke("filter", "--db", url, "-o", out, "--workers", workers)
    _check_failure(result, url, "a page of rows that does not follow the previous one", out)


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("name", list(SUCCESSES))
def test_filter_through_unusual_but_valid_answers(tmp_path, sqld_url, local_out, name, workers):
    behaviour = SUCCESSES[name]
    out = tmp_path / "out.jsonl"
    server = BadServer(sqld_url, lambda path, body: behaviour)
    with server as url:
        result = invoke("filter", "--db", url, "-o", out, "--workers", workers)
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == local_out
    assert server.misbehaved > 3


@pytest.mark.parametrize("report", ["traces", "usage"])
@pytest.mark.parametrize("name", list(SUCCESSES))
def test_reports_through_unusual_but_valid_answers(sqld_url, name, report):
    behaviour = SUCCESSES[name]
    expected = invoke("--json", report, "--db", sqld_url)
    with BadServer(sqld_url, lambda path, body: behaviour) as url:
        result = invoke("--json", report, "--db", url)
    assert result.exit_code == 0, result.output
    assert result.stdout.replace(url, "DB") == expected.stdout.replace(sqld_url, "DB")


def _moved_to(base_url: str):
    """The real answer to a JSON pipeline, with the stream's `base_url` set to `base_url`."""
    def misbehave(path, body):
        if not path.endswith("/pipeline") or "protobuf" in path:
            return None

        def behaviour(answer, real):
            status, ctype, content = real()
            data = json.loads(content)
            data["base_url"] = base_url
            answer(response(status, json.dumps(data).encode(), ctype))
            return True
        return behaviour
    return misbehave


@pytest.mark.parametrize("elsewhere", ["another-host", "another-port", "another-scheme"])
def test_a_stream_moved_to_another_address_is_refused_and_nothing_goes_there(sqld_url, elsewhere):
    other = BadServer(sqld_url)  # a second server on this machine: it must receive nothing
    with other as other_url:
        front = BadServer(sqld_url)
        with front as url:
            front.misbehave = _moved_to({"another-host": other_url.replace("127.0.0.1", "localhost"),
                                         "another-port": other_url,
                                         "another-scheme": url.replace("http:", "https:")}[elsewhere])
            client = libsql.LibsqlClient(url, "tok-" + "s" * 20)
            stream = client.stream()
            with pytest.raises(libsql.LibsqlError, match="moved the stream to another address") as exc:
                stream.execute("SELECT 1")
            assert "tok-" not in str(exc.value)
            with pytest.raises(libsql.LibsqlError, match="stream is closed"):
                stream.execute("SELECT 1")  # nothing more is sent, anywhere
            client.close()
    assert other.requests == []


def test_a_stream_kept_on_the_same_address_follows_its_base_url(sqld_url):
    front = BadServer(sqld_url)
    with front as url:
        front.misbehave = _moved_to(url + "/")
        client = libsql.LibsqlClient(url)
        stream = client.stream()
        assert stream.execute("SELECT 1").rows[0][0] == 1
        assert stream.execute("SELECT 2").rows[0][0] == 2  # sent to the base_url, with the baton
        stream.close()
        client.close()


HTTPX_FAILURES = {  # the same servers through the httpx transport (TLS servers, servers elsewhere)
    "hang": "timed out",
    "trickle": "timed out",
    "huge-length": "an answer of more than 4,194,304 bytes",
    "gzip-bomb": "an answer of more than 4,194,304 bytes",
    "truncated": "cannot reach the libSQL server",
    "garbage": "not a Hrana",
}


@pytest.mark.parametrize("name", list(HTTPX_FAILURES))
def test_the_httpx_transport_has_the_same_bounds(sqld_url, monkeypatch, name):
    """A server elsewhere goes through httpx: a trickling answer ends at the answer deadline, an
    announced or decompressed size past MAX_ANSWER_BYTES is refused before it is held, never a
    MemoryError or a hang."""
    monkeypatch.setattr(libsql._Loopback, "serves", lambda self, url: False)
    behaviour = FAILURES[name][0]
    with BadServer(sqld_url, lambda path, body: behaviour) as url:
        client = libsql.LibsqlClient(url)
        try:
            with pytest.raises(libsql.LibsqlError) as exc:
                client.read("SELECT id FROM events ORDER BY id LIMIT 5")
        finally:
            client.close()
    assert client._httpx is not None  # the request did go through httpx
    assert HTTPX_FAILURES[name] in exc.value.message, exc.value.message
