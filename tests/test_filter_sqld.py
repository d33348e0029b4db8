"""`synth-ai filter` against a real libSQL server (sqld) on 127.0.0.1: the same output as the local file."""

from __future__ import annotations

import pytest

from helpers.filterdb import read_jsonl
from helpers import FIXTURE_DIR, invoke




def both(tmp_path, url, *args):
    """(remote lines, local lines, remote stats, local stats) of the same filter."""
    remote, local = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    r = invoke("--json", "filter", "--db", url, "-o", remote, *args)
    assert r.exit_code == 0, r.output
    loc = invoke("--json", "filter", "--db", FIXTURE_DIR, "-o", local, *args)
    assert loc.exit_code == 0, loc.output
    assert remote.read_bytes() == local.read_bytes()
    return read_jsonl(remote), read_jsonl(local), r.json(), loc.json()


def _comparable(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("dbs", "output", "val_output", "manifest", "elapsed_s")}


def test_calls_mode_over_http(tmp_path, sqld_url):
    lines, _, remote, local = both(tmp_path, sqld_url, "--include-metadata")
    assert len(lines) == 240
    assert sum(1 for e in lines if e["messages"][-1].get("tool_calls")) == 165
    assert remote["dbs"] == [{"db": sqld_url, "kind": "libsql", "source": "call_records"}]
    assert _comparable(remote) == _comparable(local)


@pytest.mark.parametrize("threshold, sessions", [(1, 20), (2, 9)])
def test_min_reward_over_http(tmp_path, sqld_url, threshold, sessions):
    lines, _, remote, _ = both(tmp_path, sqld_url, "--min-reward", str(threshold), "--include-metadata")
    assert len({e["metadata"]["session_id"] for e in lines}) == sessions
    assert remote["sessions"]["kept"] == sessions


def test_sessions_mode_over_http(tmp_path, sqld_url):
    lines, _, _, _ = both(tmp_path, sqld_url, "--mode", "sessions")
    assert len(lines) == 30 and {len(e["messages"]) for e in lines} == {17}


def test_every_session_filter_over_http(tmp_path, sqld_url):
    for args in (["--min-achievements", "2"], ["--where", "task_split=val"], ["--where", "seed=0"],
                 ["--since", "2026-11-22T22:23:50"], ["--experiment", "crafter_run_1"], ["--max-tokens", "3400"],
                 ["--model", "gpt-4o-mini"], ["--val-fraction", "0.3", "--seed", "3"]):
        _, _, remote, local = both(tmp_path, sqld_url, *args)
        assert _comparable(remote) == _comparable(local), args


# --------------------------------------------------------------------------- worker processes


def test_workers_over_http_write_the_bytes_of_one_process_and_of_the_file(tmp_path, sqld_url):
    """`--workers 2` on a server: each worker pages through its own sessions with a client of its own."""
    outs = {}
    for name, db, workers in (("file", FIXTURE_DIR, 1), ("http1", sqld_url, 1), ("http2", sqld_url, 2),
                              ("http3", sqld_url, 3)):
        for extra in ((), ("--mode", "sessions"), ("--val-fraction", "0.3", "--include-metadata")):
            out = tmp_path / f"{name}-{len(extra)}.jsonl"
            r = invoke("--json", "filter", "--db", db, "-o", out, "--workers", str(workers), *extra)
            assert r.exit_code == 0, r.output
            val = out.with_name(out.stem + ".val.jsonl")
            outs[name, extra] = (out.read_bytes(), val.read_bytes() if val.exists() else None,
                                 _comparable(r.json()))
    for key, value in outs.items():
        assert value == outs["file", key[1]], key
    assert len(outs["file", ()][0].splitlines()) == 240


def test_reopen_gives_a_store_with_a_client_of_its_own(sqld_url):
    from synth_cli.store.reader import TraceStore

    with TraceStore.open(sqld_url) as store:
        assert store.scalar("SELECT count(*) FROM session_traces") == 30
        other = store.reopen()
        try:
            assert other._client is None and other.schema is store.schema  # no query, no socket yet
            assert other.scalar("SELECT count(*) FROM session_traces") == 30
            assert other.client is not store.client
        finally:
            other.close()


class _Proxy:
    """A proxy in front of sqld that passes the parent's requests (schema, session query) and fails the
    workers' pages: all of them with `status`, or drops the connection after `pass_pages` of them
    (`status=None, pass_pages=big`: passes everything; `protobuf=False`: a server without Protobuf)."""

    def __init__(self, upstream: str, *, status: int | None = None, pass_pages: int = 0, protobuf: bool = True):
        import http.server
        import threading
        import urllib.request

        proxy = self
        self.bodies: list[bytes] = []
        self.pages = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                proxy.bodies.append(body)
                if self.path.startswith("/v3-protobuf/") and not protobuf:  # a server without Protobuf
                    self.send_response(404)
                    self.send_header("content-length", "0")
                    self.end_headers()
                    return
                if b"json_each" in body:  # a worker's page (the parent's queries pass)
                    proxy.pages += 1
                    if status is not None:
                        self.send_response(status)
                        self.send_header("content-type", "text/plain")
                        self.send_header("content-length", "12")
                        self.end_headers()
                        self.wfile.write(b"overloaded!!")
                        return
                    if proxy.pages > pass_pages:
                        self.close_connection = True  # the server went away mid-scan
                        return
                req = urllib.request.Request(upstream + self.path, data=body, method="POST",
                                             headers={"content-type": self.headers.get("content-type", "")})
                with urllib.request.urlopen(req, timeout=30) as resp:
                    data = resp.read()
                    self.send_response(resp.status)
                    self.send_header("content-type", resp.headers.get("content-type", ""))
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def _alive_with(marker: str) -> list[str]:
    """Processes whose command line names `marker` (a worker is forked: it has its parent's)."""
    from pathlib import Path

    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                found.append(proc.name)
        except OSError:
            pass
    return found


@pytest.mark.parametrize("status, pass_pages, expected", [
    (503, 0, "the libSQL server answered HTTP 503: overloaded!!"),
    (None, 3, "cannot reach the libSQL server"),
], ids=["5xx", "dropped-mid-scan"])
def test_a_server_failing_under_workers_is_one_clean_error(tmp_path, sqld_url, status, pass_pages, expected):
    from helpers import run_cli

    out = tmp_path / "failing-under-workers.jsonl"
    with _Proxy(sqld_url, status=status, pass_pages=pass_pages) as proxy:
        # each worker reads its 120 rows in 2 pages (64 rows first): the 4th page is dropped mid-scan
        r = run_cli("filter", "--db", proxy.url, "-o", out, "--workers", "2")
        bodies = list(proxy.bodies)
    assert r.exit_code == 1, r.output
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {proxy.url}: {expected}"), r.stderr
    assert "Traceback" not in r.stderr and "unexpected" not in r.stderr
    assert list(tmp_path.iterdir()) == []  # no output, no partial or temporary file
    assert any(b"json_each" in b for b in bodies)  # the workers' scans were the ones failing
    assert _alive_with(str(out)) == []


def test_workers_over_a_server_without_protobuf_read_json_pages(tmp_path, sqld_url):
    out, local = tmp_path / "json-pages.jsonl", tmp_path / "local.jsonl"
    with _Proxy(sqld_url, pass_pages=10 ** 9, protobuf=False) as proxy:
        r = invoke("filter", "--db", proxy.url, "-o", out, "--workers", "2")
        pages = proxy.pages
        bodies = list(proxy.bodies)
    assert r.exit_code == 0, r.output
    assert invoke("filter", "--db", FIXTURE_DIR, "-o", local).exit_code == 0
    assert out.read_bytes() == local.read_bytes() and len(out.read_bytes().splitlines()) == 240
    json_pages = [b for b in bodies if b"json_each" in b and b.startswith(b"{")]
    assert pages >= 2 and len(json_pages) == pages  # each worker paged in JSON after one refused Protobuf try
