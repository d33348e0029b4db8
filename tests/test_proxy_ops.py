"""`synth-ai proxy` operations: sessions, the /synth endpoints, SIGTERM draining the queue, a full
queue, a DB that refuses writes (the spool), bad input. Real proxy processes, real upstream."""

from __future__ import annotations

import json
import signal
import sqlite3
import threading

import httpx
import pytest
from helpers.proxy import running_proxy, spawn_proxy
from helpers.upstream import running_upstream
from helpers import run_cli

KEY = "sk-test-proxy-ops-0123456789"
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def upstream():
    with running_upstream() as up:
        yield up


def _chat(url: str, text: str = "hi", headers: dict | None = None, client: httpx.Client | None = None) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": text}]}
    send = client.post if client is not None else httpx.post
    r = send(url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {KEY}", **(headers or {})},
             timeout=30)
    return r


def _sessions(db) -> dict[str, tuple[int, dict]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT s.session_id, s.metadata, (SELECT COUNT(*) FROM events e WHERE e.session_id = s.session_id "
            "AND e.event_type = 'cais') FROM session_traces s").fetchall()
    return {sid: (calls, json.loads(meta or "{}")) for sid, meta, calls in rows}


def test_sessions_by_header_path_prefix_and_default_per_client(tmp_path, upstream):
    db = tmp_path / "t.db"
    with running_proxy(tmp_path, upstream.base_url, db, "--idle-timeout", "1") as px:
        assert _chat(px.url, headers={"X-Synth-Session-Id": "h-1", "X-Synth-Metadata": '{"a": 1}'}).status_code == 200
        assert _chat(px.url, headers={"X-Synth-Session-Id": "h-1", "X-Synth-Metadata": '{"b": 2}'}).status_code == 200
        assert httpx.post(px.url + "/s/p-1/v1/chat/completions", json=CHAT).status_code == 200
        assert _chat(px.url + "/s/p-2", headers={"X-Synth-Session-Id": "ignored"}).status_code == 200
        assert _chat(px.url).status_code == 200
        assert _chat(px.url).status_code == 200
        status = px.wait_idle()
        opened = {s["session_id"]: s["calls"] for s in status["sessions"]["open_list"]}
        default = [sid for sid in opened if sid.startswith("proxy-")]
        assert len(default) == 1 and opened[default[0]] == 2 and default[0].endswith("-127.0.0.1-1")
        assert {k: v for k, v in opened.items() if not k.startswith("proxy-")} == {"h-1": 2, "p-1": 1, "p-2": 1}
        # idle for longer than --idle-timeout: the sessions are written, the default session renews
        import time

        deadline = time.time() + 20
        while px.status()["sessions"]["open"] and time.time() < deadline:
            time.sleep(0.2)
        assert px.status()["sessions"]["written"] == 4
        assert _chat(px.url).status_code == 200
        # the same explicit id after its session was written: a second part
        assert _chat(px.url, headers={"X-Synth-Session-Id": "h-1"}).status_code == 200
        assert px.stop() == 0
    sessions = _sessions(db)
    assert sessions["h-1"] == (2, {"a": 1, "b": 2})
    assert sessions["h-1.2"] == (1, {"proxy_session_id": "h-1", "proxy_part": 2})
    assert sessions["p-1"][0] == 1 and sessions["p-2"][0] == 1 and "ignored" not in sessions
    defaults = sorted(sid for sid in sessions if sid.startswith("proxy-"))
    assert [sid.rsplit("-", 1)[1] for sid in defaults] == ["1", "2"]
    assert sessions[defaults[0]] == (2, {"proxy_default_session": True})


def test_synth_endpoints_reject_bad_input_with_a_clear_400(tmp_path, upstream):
    db = tmp_path / "t.db"
    with running_proxy(tmp_path, upstream.base_url, db) as px:
        cases = [
            (_chat(px.url, headers={"X-Synth-Metadata": "{nope"}), "X-Synth-Metadata is not valid JSON"),
            (_chat(px.url, headers={"X-Synth-Metadata": "[1]"}), "must be a JSON object"),
            (_chat(px.url, headers={"X-Synth-Session-Id": "bad id!"}), "X-Synth-Session-Id must be"),
            (httpx.post(px.url + "/synth/sessions/s1/events", json={"rewards": 1}), "unknown key 'rewards'"),
            (httpx.post(px.url + "/synth/sessions/s1/events", json={"reward": "1"}), "reward must be a number"),
            (httpx.post(px.url + "/synth/sessions/s1/events", json={"terminated": 1}), "terminated must be true"),
            (httpx.post(px.url + "/synth/sessions/s1/events", content=b"{"), "not valid JSON"),
            (httpx.post(px.url + "/synth/sessions/s1/events"), "send a JSON object"),
        ]
        for response, message in cases:
            assert response.status_code == 400, response.text
            assert message in response.json()["error"]["message"], response.text
        assert httpx.get(px.url + "/synth/sessions/s1/end").status_code == 405
        assert httpx.post(px.url + "/synth/nothing").status_code == 404
        assert httpx.post(px.url + "/synth/sessions/s1/end").status_code == 202  # an empty end is fine
        assert px.status()["calls"]["seen"] == 0
        assert px.stop() == 0


def test_sigterm_drains_the_queue_and_writes_every_open_session(tmp_path, upstream):
    import time

    db = tmp_path / "t.db"
    px = spawn_proxy(upstream.base_url, db, tmp_path / "proxy.log")
    n_threads, per_thread = 8, 25
    errors: list[str] = []

    def worker(i: int) -> None:
        with httpx.Client() as client:
            for j in range(per_thread):
                r = _chat(px.url, f"w{i} c{j}", {"X-Synth-Session-Id": f"w-{i}"}, client)
                if r.status_code != 200:
                    errors.append(r.text)

    lock = sqlite3.connect(db, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # holds the writer thread at its first write: the calls stay queued
    try:
        assert _chat(px.url, headers={"X-Synth-Session-Id": "blocker"}).status_code == 200
        assert httpx.post(px.url + "/synth/sessions/blocker/end").status_code == 202
        px.wait_idle()
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert px.status()["queue"]["size"] == n_threads * per_thread
        px.proc.send_signal(signal.SIGTERM)  # no /end: the calls are queued, their sessions open
        time.sleep(1.0)
        assert px.proc.poll() is None  # still draining
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert px.stop(signal.SIGTERM) == 0
    sessions = _sessions(db)
    expected = {f"w-{i}": per_thread for i in range(n_threads)} | {"blocker": 1}
    assert {sid: calls for sid, (calls, _) in sessions.items()} == expected
    assert f"{n_threads * per_thread + 1} call(s) recorded in {n_threads + 1} session(s)" in px.log()


def test_ctrl_c_drains_too(tmp_path, upstream):
    db = tmp_path / "t.db"
    px = spawn_proxy(upstream.base_url, db, tmp_path / "proxy.log")
    for i in range(5):
        assert _chat(px.url, f"c{i}").status_code == 200
    assert px.stop(signal.SIGINT) == 0
    assert [calls for calls, _ in _sessions(db).values()] == [5]


def test_a_full_queue_is_counted_and_reported_and_never_fails_the_call(tmp_path, upstream):
    db = tmp_path / "t.db"
    with running_proxy(tmp_path, upstream.base_url, db, "--queue-size", "2") as px:
        px.status()
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # the writer thread now waits for the DB
        try:
            assert _chat(px.url, headers={"X-Synth-Session-Id": "first"}).status_code == 200
            assert httpx.post(px.url + "/synth/sessions/first/end").status_code == 202
            px.wait_idle()  # the writer took the end and is blocked writing `first`
            for i in range(5):
                assert _chat(px.url, f"more {i}", {"X-Synth-Session-Id": "second"}).status_code == 200
            status = px.status()
            assert status["queue"] == {"size": 2, "max": 2}
            assert status["calls"]["dropped_queue_full"] == 3 and status["calls"]["seen"] == 6
            assert httpx.post(px.url + "/synth/sessions/second/events", json={"reward": 1}).status_code == 503
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert px.stop() == 0
    log = px.log()
    assert "the record queue is full" in log
    assert "3 call(s) and 1 event(s) were not recorded: the record queue was full" in log
    assert {sid: calls for sid, (calls, _) in _sessions(db).items()} == {"first": 1, "second": 2}


def test_a_db_that_refuses_writes_spools_the_sessions_and_the_next_run_writes_them(tmp_path, upstream):
    db = tmp_path / "t.db"
    spool = tmp_path / "spool.jsonl"
    with running_proxy(tmp_path, upstream.base_url, db, "--spool", str(spool)) as px:
        assert _chat(px.url, "kept", {"X-Synth-Session-Id": "ok-1"}).status_code == 200
        assert httpx.post(px.url + "/synth/sessions/ok-1/end").status_code == 202
        px.wait_idle()
        with sqlite3.connect(db) as conn:  # from now on the DB refuses new sessions
            conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON session_traces "
                         "BEGIN SELECT RAISE(ABORT, 'disk quota exceeded'); END")
        for i in range(3):
            assert _chat(px.url, f"spooled {i}", {"X-Synth-Session-Id": "sp-1"}).status_code == 200
        assert httpx.post(px.url + "/synth/sessions/sp-1/end", json={"reward": 1}).status_code == 202
        assert _chat(px.url, "right after", {"X-Synth-Session-Id": "sp-2"}).status_code == 200
        assert httpx.post(px.url + "/synth/sessions/sp-2/end").status_code == 202
        status = px.wait_idle()
        import time

        deadline = time.time() + 10
        while status["sessions"]["spooled"] == 0 and time.time() < deadline:
            time.sleep(0.1)
            status = px.status()
        while status["sessions"]["spooled"] < 2 and time.time() < deadline:
            time.sleep(0.1)
            status = px.status()
        # sp-2, ended within 5 s of the failure, went straight to the spool: one failed write, not two
        assert status["sessions"]["spooled"] == 2 and status["calls"]["spooled"] == 4
        assert status["write_errors"] == 1 and "disk quota exceeded" in status["last_error"]
        assert px.stop() == 0
    log = px.log()
    assert "cannot write to the trace DB" in log and str(spool) in log
    assert "2 session(s) (4 calls) could not be written to the DB and are in the spool file" in log
    assert set(_sessions(db)) == {"ok-1"}
    assert len(spool.read_text().splitlines()) == 2 and KEY not in spool.read_text()

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse")
    with running_proxy(tmp_path, upstream.base_url, db, "--spool", str(spool)) as px:
        assert px.status()["sessions"]["replayed_from_spool"] == 2
        assert px.stop() == 0
    assert "wrote 2 spooled session(s)" in px.log()
    assert _sessions(db)["sp-1"][0] == 3 and _sessions(db)["sp-2"][0] == 1
    assert not spool.exists()
    out = tmp_path / "train.jsonl"
    result = run_cli("filter", "--db", str(db), "--min-reward", "1", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["messages"][0]["content"] for line in out.read_text().splitlines()] == \
        ["spooled 0", "spooled 1", "spooled 2"]


@pytest.mark.parametrize("args, env, message", [
    ([], {}, "error: no upstream: pass --upstream URL"),
    (["--upstream", "ftp://x"], {}, "error: --upstream ftp://x: not an http(s):// URL"),
    (["--upstream", "http://u:p@x"], {}, "error: --upstream: credentials in the URL are not supported"),
    (["--upstream", "localhost:8000"], {}, "not an http(s):// URL"),
    (["--upstream", "http://127.0.0.1:1", "--db", "NOT_SQLITE"], {}, "not a SQLite database"),
    (["--db", "NOT_SQLITE"], {"SYNTH_PROXY_UPSTREAM": "http://127.0.0.1:1"}, "not a SQLite database"),
])
def test_bad_input_is_one_error_line(tmp_path, args, env, message):
    (tmp_path / "NOT_SQLITE").write_text("hello")
    result = run_cli("proxy", *[a.replace("NOT_SQLITE", str(tmp_path / "NOT_SQLITE")) for a in args],
                     "--spool", str(tmp_path / "s.jsonl"), env=env, timeout=60)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("error:") == 1


def test_a_taken_port_is_one_error_line(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        result = run_cli("proxy", "--upstream", "http://127.0.0.1:1", "--db", str(tmp_path / "t.db"),
                         "--port", str(port), "--spool", str(tmp_path / "s.jsonl"), timeout=60)
    assert result.exit_code == 1
    assert f"error: port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_client_that_leaves_mid_stream_is_recorded_with_what_arrived(tmp_path, upstream):
    db = tmp_path / "t.db"
    body = {"model": "slow-m", "stream": True,
            "messages": [{"role": "user", "content": " ".join(f"w{i}" for i in range(40))}]}
    with running_proxy(tmp_path, upstream.base_url, db) as px:
        with httpx.Client() as client, client.stream("POST", px.url + "/v1/chat/completions", json=body) as r:
            first = next(r.iter_raw())
            assert first.startswith(b"data: ")
        # the proxy notices at the next chunk, stops reading the upstream and records what it relayed
        assert px.stop() == 0
    with sqlite3.connect(db) as conn:
        (blob,) = conn.execute("SELECT call_records FROM events WHERE event_type = 'cais'").fetchone()
    (record,) = json.loads(blob)
    assert record["metadata"]["stream_incomplete"] is True
    text = record["output_messages"][0]["parts"][0]["text"] if record["output_messages"][0]["parts"] else ""
    assert len(text.split()) < 40


def test_json_mode_announces_and_summarises_as_ndjson(tmp_path, upstream):
    db = tmp_path / "t.db"
    with running_proxy(tmp_path, upstream.base_url, db, "--json") as px:
        assert _chat(px.url, headers={"X-Synth-Session-Id": "j-1"}).status_code == 200
        assert px.stop() == 0
    events = [json.loads(line) for line in px.log().splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["listening", "stopped"]
    assert events[0]["openai_base_url"] == px.url + "/v1" and events[0]["db"] == str(db)
    assert events[1]["calls_recorded"] == 1 and events[1]["sessions_written"] == 1
    assert events[1]["calls_dropped_queue_full"] == 0 and events[1]["calls_lost"] == 0


def test_a_db_locked_past_the_busy_timeout_is_spooled_by_the_tracer_and_written_next_time(tmp_path, upstream):
    import time

    db = tmp_path / "t.db"
    env = {"SYNTH_TRACES_BUSY_TIMEOUT": "0.2"}
    with running_proxy(tmp_path, upstream.base_url, db, env=env) as px:
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN EXCLUSIVE")  # held past the busy timeout and every retry
        try:
            for i in range(2):
                assert _chat(px.url, f"busy {i}", {"X-Synth-Session-Id": "busy-1"}).status_code == 200
            assert httpx.post(px.url + "/synth/sessions/busy-1/end", json={"reward": 1}).status_code == 202
            deadline = time.time() + 30
            status = px.status()
            while status["sessions"]["spooled"] == 0 and time.time() < deadline:
                time.sleep(0.2)
                status = px.status()
            assert status["sessions"]["spooled"] == 1 and status["calls"]["spooled_by_tracer"] == 2
            assert status["calls"]["recorded"] == 0
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert px.stop() == 0
    log = px.log()
    assert "warning: " in log and "session busy-1 not written" in log and "t.db.spool" in log
    assert "1 session(s) (2 calls) found the DB busy and are in the tracer's spool" in log
    assert "proxy-spool.jsonl" not in log and "TraceWriteWarning" not in log
    assert _sessions(db) == {}
    with running_proxy(tmp_path, upstream.base_url, db, env=env) as px:  # the next tracer on the DB writes it
        assert px.stop() == 0
    assert _sessions(db)["busy-1"][0] == 2
