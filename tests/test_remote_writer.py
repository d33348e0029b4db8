"""Writing traces into a real libSQL server (sqld on 127.0.0.1, tests/helpers/sqld.py): the schema on an
empty server, many writer processes at once, writes idempotent by session id, transient failures
retried, sessions that cannot be written spooled and written on the next run."""

from __future__ import annotations

import http.server
import json
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from helpers import ROOT, invoke

try:
    from helpers import sqld as _sqld
except ImportError:  # run from inside tests/
    from helpers import sqld as _sqld  # type: ignore[no-redef]

WORKER = ROOT / "tests" / "helpers" / "trace_worker.py"


@pytest.fixture
def spool(tmp_path, monkeypatch):
    directory = tmp_path / "spool"
    monkeypatch.setenv("SYNTH_TRACES_SPOOL_DIR", str(directory))
    return directory


@pytest.fixture
def empty_server(tmp_path):
    """A sqld serving a new, empty database."""
    if _sqld.sqld_binary() is None:
        pytest.skip(_sqld.install_error())
    served = tmp_path / "served.db"
    served.mkdir()
    with _sqld.running_sqld(served) as url:
        yield url


def run_worker(target: str, worker: int, sessions: int, steps: int = 2, env: dict | None = None):
    return subprocess.Popen([sys.executable, str(WORKER), target, str(worker), str(sessions), str(steps)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def finish(proc) -> dict:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def server_rows(url: str, sql: str) -> list[tuple]:
    from synth_cli.store.libsql import LibsqlClient

    client = LibsqlClient(url)
    try:
        return [tuple(r) for r in client.execute(sql).rows]
    finally:
        client.close()


def _env(spool_dir: Path) -> dict:
    import os

    return {**{k: v for k, v in os.environ.items() if not k.startswith(("SYNTH_", "LIBSQL_", "TURSO_"))},
            "PYTHONPATH": str(ROOT), "SYNTH_TRACES_SPOOL_DIR": str(spool_dir)}


# --------------------------------------------------------------------------- schema and reading back


def test_tracer_creates_the_schema_and_the_readers_read_it(empty_server, tmp_path, spool):
    local = tmp_path / "local.db"
    for target in (empty_server, str(local)):
        report = finish(run_worker(target, 0, 5, 3, env=_env(spool)))
        assert (report["written"], report["spooled"], report["warnings"]) == (5, 0, [])
    tables = {r[0] for r in server_rows(empty_server, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"session_traces", "session_timesteps", "events", "messages", "experiments",
            "_synth_migrations"} <= tables
    remote_out, local_out = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    remote = invoke("--json", "filter", "--db", empty_server, "-o", remote_out, "--mode", "sessions")
    loc = invoke("--json", "filter", "--db", local, "-o", local_out, "--mode", "sessions")
    assert remote.exit_code == 0 and loc.exit_code == 0, remote.output + loc.output
    assert remote_out.read_bytes() == local_out.read_bytes() and len(remote_out.read_bytes().splitlines()) == 5
    traces_remote = invoke("--json", "traces", "--db", empty_server).json()["totals"]
    traces_local = invoke("--json", "traces", "--db", local).json()["totals"]
    drop = ("size_bytes", "dbs")
    assert {k: v for k, v in traces_remote.items() if k not in drop} == \
        {k: v for k, v in traces_local.items() if k not in drop}
    assert traces_remote["sessions"] == 5 and traces_remote["llm_calls"] == 15
    # messages point at their timesteps (resolved on the server inside the transaction)
    orphans = server_rows(empty_server, "SELECT count(*) FROM messages m LEFT JOIN session_timesteps t "
                                        "ON t.id = m.timestep_id WHERE t.step_id IS NULL")
    assert orphans == [(0,)]


def test_eight_writer_processes_fifty_sessions_each(empty_server, tmp_path, spool):
    procs = [run_worker(empty_server, w, 50, 2, env=_env(spool)) for w in range(8)]
    reports = [finish(p) for p in procs]
    assert sum(r["written"] for r in reports) == 400 and not any(r["spooled"] or r["warnings"] for r in reports)
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.trace_worker import session_id

    ids = server_rows(empty_server, "SELECT session_id FROM session_traces")
    assert len(ids) == 400 and {r[0] for r in ids} == {session_id(w, n) for w in range(8) for n in range(50)}
    per_session = server_rows(empty_server, "SELECT session_id, count(*) FROM events GROUP BY session_id "
                                            "HAVING count(*) != 4")
    assert per_session == []  # 2 steps x (one cais + one environment event), none duplicated
    assert server_rows(empty_server, "SELECT count(*), count(DISTINCT json_extract(call_records, '$[0].call_id')) "
                                     "FROM events WHERE event_type = 'cais'") == [(800, 800)]
    assert server_rows(empty_server, "SELECT count(*) FROM messages") == [(1600,)]
    traces = invoke("--json", "traces", "--db", empty_server)
    assert traces.exit_code == 0, traces.output
    assert traces.json()["totals"]["sessions"] == 400 and traces.json()["totals"]["experiments"] == 8
    out = tmp_path / "all.jsonl"
    filtered = invoke("--json", "filter", "--db", empty_server, "-o", out)
    assert filtered.exit_code == 0, filtered.output
    assert len(out.read_bytes().splitlines()) == 800


# --------------------------------------------------------------------------- idempotency and faults


class _Proxy(http.server.BaseHTTPRequestHandler):
    """Forwards to sqld; `plan` decides, per request that writes a session, what goes wrong."""

    upstream = ""
    plan: list[str] = []  # per session write, in order: "ok", "lost" (forwarded, then 503), "down" (503)
    seen: list[str] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        writes_session = b'"batch"' in body and b"INSERT INTO session_traces" in body
        action = "ok"
        if writes_session:
            action = self.plan.pop(0) if self.plan else "ok"
            self.seen.append(action)
        if action == "down":
            return self._answer(503, b"upstream unavailable", "text/plain")
        request = urllib.request.Request(self.upstream + self.path, data=body, method="POST",
                                         headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                status, data, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, data, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
        if action == "lost":  # the server committed, the client never hears it
            return self._answer(503, b"answer lost", "text/plain")
        self._answer(status, data, ctype)

    def _answer(self, status, data, ctype):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def proxy(empty_server):
    handler = type("P", (_Proxy,), {"upstream": empty_server, "plan": [], "seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, f"http://127.0.0.1:{server.server_address[1]}", empty_server
    finally:
        server.shutdown()


def _batch(session_id: str):
    from synth_cli.store.writer import SessionBatch

    step = ("step_0", 0, 0, "2026-12-01 10:00:00.000000", "2026-12-01 10:00:01.000000", 1, 1, "{}")
    event = ("environment", "env", 1.0, 0, "2026-12-01 10:00:00", *([None] * 10), 1.0, 0, 0, None, None, "{}", None)
    message = ("user", "hello", "2026-12-01 10:00:00", 1.0, 0, "{}")
    return SessionBatch(session_id, "2026-12-01 10:00:00.000000", "{}", None, 1, 1, 1, steps=[step],
                        events=[("step_0", event)], messages=[("step_0", message), (None, message)])


def test_a_session_written_twice_is_stored_once(proxy, spool):
    from synth_cli.store.writer import deliver
    from synth_cli.store.writers import open_writer

    handler, url, direct = proxy
    with open_writer(direct) as writer:
        assert writer.write(_batch("s-twice")) is True
        assert writer.write(_batch("s-twice")) is False  # skipped: already there
    handler.plan[:] = ["lost"]  # committed on the server, the answer lost on the way back
    with open_writer(url) as writer:
        delivery = deliver(writer, _batch("s-lost"), delays=(0.01, 0.01), sleep=lambda _s: None)
    assert (delivery.status, delivery.attempts) == ("skipped", 2)
    assert handler.seen == ["lost", "ok"]
    rows = server_rows(direct, "SELECT session_id, (SELECT count(*) FROM events e WHERE e.session_id = s.session_id),"
                               " (SELECT count(*) FROM messages m WHERE m.session_id = s.session_id) "
                               "FROM session_traces s ORDER BY session_id")
    assert rows == [("s-lost", 1, 2), ("s-twice", 1, 2)]


def test_transient_failures_are_retried_with_backoff(proxy, spool):
    from synth_cli.store.writer import deliver
    from synth_cli.store.writers import open_writer

    handler, url, direct = proxy
    handler.plan[:] = ["down", "down"]
    pauses: list[float] = []
    with open_writer(url) as writer:
        delivery = deliver(writer, _batch("s-retried"), delays=(0.2, 0.5, 1.0), sleep=pauses.append)
    assert (delivery.status, delivery.attempts) == ("written", 3) and pauses == [0.2, 0.5]
    assert server_rows(direct, "SELECT count(*) FROM session_traces") == [(1,)]


def test_an_unwritable_session_is_spooled_and_written_on_the_next_run(proxy, spool, monkeypatch):
    from synth_cli.store import writer as writer_module
    from synth_cli.tracing.tracer import SessionTracer

    handler, url, direct = proxy
    monkeypatch.setitem(writer_module.deliver.__kwdefaults__, "delays", (0.01, 0.01, 0.01))  # 4 attempts
    handler.plan[:] = ["down"] * 4
    tracer = SessionTracer(url)
    with pytest.warns(writer_module.TraceWriteWarning):
        with tracer.session("s-spooled", metadata={"kept": True}):
            with tracer.timestep("step_0", turn_number=0):
                tracer.record_message("hello", message_type="user")
    tracer.close()
    assert tracer.sessions_spooled == 1 and tracer.sessions_written == 0
    [warning] = tracer.warnings
    assert "session s-spooled not written" in warning and "written on the next open" in warning
    assert url in warning and str(spool) in warning
    [spooled] = [p for p in spool.rglob("*.json")]
    assert server_rows(direct, "SELECT count(*) FROM session_traces") == [(0,)]

    seen: list[str] = []
    with pytest.warns(writer_module.TraceWriteWarning):
        with SessionTracer(url, on_warning=seen.append) as again:  # the server answers again
            pass
    assert seen == [f"{url}: wrote 1 spooled session from {spooled.parent}"]
    assert not spooled.exists()
    assert server_rows(direct, "SELECT session_id, metadata FROM session_traces") == [("s-spooled", '{"kept":true}')]
    assert server_rows(direct, "SELECT count(*) FROM messages") == [(1,)]
    assert again.sessions_written == 0


def test_writer_errors_are_one_clear_line(tmp_path, spool):
    """Unreachable at open: the plain reason, no traceback, nothing spooled."""
    import socket

    from synth_cli.errors import TraceStoreError
    from synth_cli.tracing.tracer import SessionTracer

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"libsql://127.0.0.1:{port}?tls=0&authToken=secret-token-123456"
    with pytest.raises(TraceStoreError) as info:
        SessionTracer(url)
    assert info.value.message == f"libsql://127.0.0.1:{port}: cannot reach the libSQL server (connection refused)"
    assert not spool.exists()


def test_traces_merge_into_a_server_twice_copies_each_session_once(empty_server, tmp_path, spool):
    import shutil

    from helpers import FIXTURE_DIR

    source = tmp_path / "worker.db"
    shutil.copytree(FIXTURE_DIR, source)
    first = invoke("--json", "traces", "merge", source, "--into", empty_server)
    second = invoke("--json", "traces", "merge", source, "--into", empty_server)
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert server_rows(empty_server, "SELECT count(*), count(DISTINCT session_id) FROM session_traces") == [(30, 30)]
    assert server_rows(empty_server, "SELECT count(*) FROM events") == [(720,)]
    remote_out, local_out = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    assert invoke("filter", "--db", empty_server, "-o", remote_out).exit_code == 0
    assert invoke("filter", "--db", FIXTURE_DIR, "-o", local_out).exit_code == 0
    assert remote_out.read_bytes() == local_out.read_bytes()
