"""`synth-ai proxy`'s recording process (synth_cli/proxy/worker.py): the records are built and
written in a child process; Ctrl-C to the whole process group still drains everything, a dead
child is replaced by a writer thread (what it held is counted as lost), and a killed proxy's
child still writes what it was sent. Real proxy processes, a real upstream, real SQLite files."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest
from helpers.devserver import free_port
from helpers.proxy import running_proxy, spawn_proxy
from helpers.upstream import running_upstream

KEY = "sk-test-proxy-writer-0123456789"


@pytest.fixture(scope="module")
def upstream():
    with running_upstream() as up:
        yield up


def _chat(url: str, text: str, session: str) -> httpx.Response:
    return httpx.post(url + "/v1/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": text}]},
                      headers={"Authorization": f"Bearer {KEY}", "X-Synth-Session-Id": session}, timeout=30)


def _sessions(db) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT s.session_id, (SELECT COUNT(*) FROM events e WHERE e.session_id = s.session_id "
            "AND e.event_type = 'cais') FROM session_traces s").fetchall()
    return dict(rows)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < deadline, f"process {pid} still running"
        time.sleep(0.05)


def _wait_written(px, sessions: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = px.status()
        if status["sessions"]["written"] >= sessions or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_the_records_are_written_by_a_child_process(tmp_path, upstream):
    db = tmp_path / "t.db"
    with running_proxy(tmp_path, upstream.base_url, db) as px:
        child = px.status()["writer"]["process"]
        assert isinstance(child, int) and child != px.proc.pid
        with open(f"/proc/{child}/stat") as fh:
            assert int(fh.read().rsplit(")", 1)[1].split()[1]) == px.proc.pid  # its parent is the proxy
        for i in range(3):
            assert _chat(px.url, f"q{i}", "one").status_code == 200
        assert httpx.post(px.url + "/synth/sessions/one/end").status_code == 202
        status = _wait_written(px, 1)
        assert status["calls"]["recorded"] == 3 and status["queue"]["size"] == 0
        assert px.stop() == 0
    _wait_gone(child)
    assert _sessions(db) == {"one": 3}


def test_ctrl_c_to_the_whole_process_group_drains_everything(tmp_path, upstream):
    """A terminal's Ctrl-C reaches the proxy and its recording process at once: the child waits
    for its parent's word and writes every open session."""
    db = tmp_path / "t.db"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    log = open(tmp_path / "proxy.log", "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([sys.executable, "-m", "synth_cli", "proxy", "--upstream", upstream.base_url, "--db",
                             str(db), "--port", str(port), "--spool", str(tmp_path / "spool.jsonl")],
                            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/synth/status", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "proxy.log").read_text()
            time.sleep(0.05)
        for i in range(4):
            assert _chat(url, f"a{i}", "group-a").status_code == 200
            assert _chat(url, f"b{i}", "group-b").status_code == 200
        os.killpg(proc.pid, signal.SIGINT)  # no /end: both sessions are open
        assert proc.wait(timeout=60) == 0, (tmp_path / "proxy.log").read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert _sessions(db) == {"group-a": 4, "group-b": 4}
    assert "8 call(s) recorded in 2 session(s)" in (tmp_path / "proxy.log").read_text()


def test_a_dead_recording_process_is_replaced_and_what_it_held_is_counted_lost(tmp_path, upstream):
    db = tmp_path / "t.db"
    px = spawn_proxy(upstream.base_url, db, tmp_path / "proxy.log")
    try:
        for i in range(3):
            assert _chat(px.url, f"w{i}", "written").status_code == 200
        assert httpx.post(px.url + "/synth/sessions/written/end").status_code == 202
        _wait_written(px, 1)
        for i in range(2):  # taken by the child, not yet written: its session is open
            assert _chat(px.url, f"o{i}", "open").status_code == 200
        status = px.wait_idle()
        assert status["calls"]["pending"] == 2
        child = status["writer"]["process"]
        os.kill(child, signal.SIGKILL)
        _wait_gone(child)
        deadline = time.monotonic() + 30
        while px.status()["writer"]["process"] is not None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for i in range(2):  # recorded by the proxy's own writer thread now
            assert _chat(px.url, f"l{i}", "later").status_code == 200
        assert px.status()["calls"]["lost"] == 2
        code = px.stop()
    finally:
        if px.proc.poll() is None:
            px.proc.kill()
    log = px.log()
    assert code == 1, log
    assert "the recording process exited unexpectedly" in log and "up to 2 queued or open call(s)" in log
    assert "2 recorded calls were lost" in log
    assert _sessions(db) == {"written": 3, "later": 2}


def test_a_killed_proxy_s_recording_process_still_writes_what_it_was_sent(tmp_path, upstream):
    db = tmp_path / "t.db"
    px = spawn_proxy(upstream.base_url, db, tmp_path / "proxy.log")
    try:
        for i in range(5):
            assert _chat(px.url, f"k{i}", "orphaned").status_code == 200
        status = px.wait_idle()
        assert status["queue"]["size"] == 0 and status["calls"]["pending"] == 5
        child = status["writer"]["process"]
    finally:
        px.proc.kill()  # SIGKILL: no drain in the proxy itself
        px.proc.wait()
    _wait_gone(child)  # its stdin ended: it writes the open session and exits
    assert _sessions(db) == {"orphaned": 5}
    with sqlite3.connect(db) as conn:
        (records,), = conn.execute("SELECT call_records FROM events WHERE event_type = 'cais' LIMIT 1").fetchall()
    assert json.loads(records)[0]["outcome"] == "success"
