"""`SessionTracer` under concurrency and faults: many processes on a new DB, a DB locked past the
busy timeout (retried, then spooled next to the DB and written on the next open), and the
durable mode a `kill -9` cannot take more than one step from."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from synth_cli.store.writer import SessionBatch, Spool, TraceWriteWarning
from synth_cli.store.writers import open_writer
from synth_cli.tracing.events import EnvironmentEvent
from synth_cli.tracing.tracer import SessionTracer

ROOT = Path(__file__).resolve().parents[1]


def _count(path, table="session_traces"):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


_WORKER = """
    import sys, time
    from pathlib import Path
    path, go, worker, sessions = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    from synth_cli.tracing.tracer import SessionTracer
    Path(f"{go}.{worker}").touch()  # imported and ready
    while not go.exists():          # every process opens the DB in the same instant
        time.sleep(0.0005)
    with SessionTracer(path) as tracer:
        for i in range(sessions):
            with tracer.session(session_id=f"{worker}-{i}"):
                with tracer.timestep("step_0", turn_number=0):
                    tracer.record_message("hello", "user")
"""


def test_eight_processes_open_the_same_new_db_at_once(tmp_path):
    """Issue 10: 11 of 48 opens failed with `database is locked`; the migrations ran outside the lock."""
    rounds, workers, sessions = 3, 8, 3
    for r in range(rounds):
        path = tmp_path / f"new-{r}" / "traces.db"          # a new DB (and directory) every round
        go = tmp_path / f"go-{r}"
        procs = [_python(_WORKER, str(path), str(go), f"w{w}", str(sessions)) for w in range(workers)]
        deadline = time.monotonic() + 60
        while not all(Path(f"{go}.w{w}").exists() for w in range(workers)) and time.monotonic() < deadline:
            time.sleep(0.01)
        go.touch()
        failures = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                failures.append(err.strip().splitlines()[-1:])
        assert failures == []
        assert _count(path) == workers * sessions
        assert _count(path, "messages") == workers * sessions
        conn = sqlite3.connect(path)
        assert [r[0] for r in conn.execute("SELECT name FROM _synth_migrations ORDER BY rowid")] == \
            ["m001_initial", "m002_events_call_records", "m003_event_figures"]  # each migration applied exactly once
        conn.close()


def _hold_write_lock(path):
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def test_a_busy_db_is_retried_with_backoff(tmp_path):
    path = tmp_path / "busy.db"
    SessionTracer(path).close()
    tracer = SessionTracer(path, busy_timeout=0.05)
    blocker = _hold_write_lock(path)
    threading.Timer(0.4, blocker.rollback).start()           # the other writer lets go after 0.4 s
    with tracer.session(session_id="patient"):
        tracer.record_message("kept", "user")
    tracer.close()
    blocker.close()
    assert _count(path) == 1
    assert tracer.warnings == [] and tracer.sessions_written == 1
    assert not (tmp_path / "busy.db.spool").exists()


def test_a_db_locked_past_the_retries_spools_the_session_and_the_next_open_writes_it(tmp_path):
    path = tmp_path / "locked.db"
    SessionTracer(path).close()
    seen = []
    tracer = SessionTracer(path, busy_timeout=0.05, on_warning=seen.append)
    blocker = _hold_write_lock(path)
    with pytest.warns(TraceWriteWarning, match="kept in"):
        with tracer.session(session_id="unlucky", metadata={"seed": 7}):
            with tracer.timestep("step_0", turn_number=0):
                tracer.record_message("observation", "user")
                tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=2.0))
    tracer.close()
    blocker.rollback()
    blocker.close()
    spool = tmp_path / "locked.db.spool"
    [spooled] = list(spool.glob("*.json"))
    assert seen == tracer.warnings and len(seen) == 1
    assert str(spooled) in seen[0] and "database is locked" in seen[0]
    assert tracer.sessions_spooled == 1 and tracer.sessions_written == 0
    assert _count(path) == 0                                  # not written, but not lost either
    assert json.loads(spooled.read_text())["session_id"] == "unlucky"

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reopened = SessionTracer(path)
    assert [str(w.message) for w in caught] == reopened.warnings
    assert "wrote 1 spooled session" in reopened.warnings[0]
    reopened.close()
    assert not spool.exists()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT session_id, num_timesteps, num_events, num_messages, metadata "
                        "FROM session_traces").fetchall() == [("unlucky", 1, 1, 1, '{"seed":7}')]
    step_id = conn.execute("SELECT id FROM session_timesteps").fetchone()[0]
    assert conn.execute("SELECT timestep_id, reward FROM events").fetchall() == [(step_id, 2.0)]
    conn.close()
    SessionTracer(path).close()                                # replayed once: never twice
    assert _count(path) == 1


def test_replaying_a_spool_twice_writes_each_session_once(tmp_path):
    """A replay interrupted after the write but before the file is removed must not duplicate."""
    path = tmp_path / "twice.db"
    writer = open_writer(path)
    batch = SessionBatch("s-1", "2025-01-01 00:00:00.000000", "{}", None, 0, 0, 1,
                         messages=[(None, ("user", "hi", "2025-01-01 00:00:00", 1.0, None, "{}"))])
    spool = Spool(writer.spool_dir)
    first = spool.save(batch, 1)
    copy = first.with_name("99" + first.name[2:])
    copy.write_bytes(first.read_bytes())
    written, problems = spool.replay(writer)
    writer.close()
    assert problems == [] and written == ["s-1", "s-1"]
    assert _count(path) == 1 and _count(path, "messages") == 1


_KILLED = """
    import sys, time
    from synth_cli.tracing.tracer import SessionTracer
    from synth_cli.tracing.events import EnvironmentEvent
    tracer = SessionTracer(sys.argv[1], durable=sys.argv[2])
    tracer.start_session(session_id="doomed", metadata={"run": 1})
    tracer.record_message("system prompt", "system")      # outside any step: goes with the first step
    for step in range(1000):
        with tracer.timestep(f"step_{step}", turn_number=step):
            tracer.record_message(f"obs {step}", "user")
            tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))
            if step == 3:
                print("in step 3", flush=True)
                time.sleep(600)                      # killed here, in the middle of step 3
        print(f"ended {step}", flush=True)
"""


@pytest.mark.parametrize("durable, steps_kept", [("timestep", 3), ("session", None)])
def test_kill_9_loses_at_most_the_current_step_in_durable_mode(tmp_path, durable, steps_kept):
    path = tmp_path / "killed.db"
    proc = _python(_KILLED, str(path), durable)
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.startswith("in step 3"):
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert lines == ["ended 0", "ended 1", "ended 2", "in step 3"], proc.stderr.read()
    conn = sqlite3.connect(path)
    sessions = conn.execute("SELECT session_id, num_timesteps, num_events, num_messages FROM session_traces"
                            ).fetchall()
    if steps_kept is None:          # the default buffers the session: a kill loses it (the documented trade-off)
        assert sessions == []
        return
    assert sessions == [("doomed", 3, 3, 4)]
    assert [r[0] for r in conn.execute("SELECT step_id FROM session_timesteps ORDER BY step_index")] == \
        ["step_0", "step_1", "step_2"]
    assert conn.execute("SELECT count(*) FROM session_timesteps WHERE completed_at IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM events WHERE timestep_id IS NULL").fetchone()[0] == 0
    assert conn.execute("SELECT content FROM messages ORDER BY id LIMIT 2").fetchall() == \
        [("system prompt",), ("obs 0",)]
    conn.close()


def test_durable_mode_writes_the_same_rows_as_the_default(tmp_path):
    def play(tracer):
        with tracer.session(session_id="same", created_at=None):
            tracer.record_message("outside", "system")
            for step in range(3):
                with tracer.timestep(f"step_{step}", turn_number=step):
                    tracer.record_message(f"obs {step}", "user")
                    tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=float(step)))
            tracer.record_message("after the last step", "assistant")

    rows = {}
    for durable in ("session", "timestep"):
        path = tmp_path / f"{durable}.db"
        with SessionTracer(path, durable=durable) as tracer:
            play(tracer)
        conn = sqlite3.connect(path)
        rows[durable] = (
            conn.execute("SELECT num_timesteps, num_events, num_messages FROM session_traces").fetchall(),
            conn.execute("SELECT step_id, step_index, turn_number, num_events, num_messages "
                         "FROM session_timesteps ORDER BY id").fetchall(),
            conn.execute("SELECT s.step_id, e.reward, e.metadata FROM events e "
                         "LEFT JOIN session_timesteps s ON s.id = e.timestep_id ORDER BY e.id").fetchall(),
            conn.execute("SELECT s.step_id, m.message_type, m.content FROM messages m "
                         "LEFT JOIN session_timesteps s ON s.id = m.timestep_id ORDER BY m.id").fetchall())
        conn.close()
    assert rows["session"] == rows["timestep"]
    assert rows["timestep"][0] == [(3, 3, 5)]


def test_durable_mode_is_validated():
    with pytest.raises(ValueError, match="durable"):
        SessionTracer("x.db", durable="always")


@pytest.mark.parametrize("value", ["soon", "-1", "inf", "nan"])
def test_busy_timeout_from_the_environment_is_checked(monkeypatch, tmp_path, value):
    monkeypatch.setenv("SYNTH_TRACES_BUSY_TIMEOUT", value)
    with pytest.raises(Exception, match="SYNTH_TRACES_BUSY_TIMEOUT") as info:
        SessionTracer(tmp_path / "t.db")
    assert type(info.value).__name__ == "TraceStoreError"
    assert not (tmp_path / "t.db").exists()


@pytest.mark.parametrize("value", [None, "", "  ", "2.5"])
def test_busy_timeout_from_the_environment_or_the_default(monkeypatch, tmp_path, value):
    if value is None:
        monkeypatch.delenv("SYNTH_TRACES_BUSY_TIMEOUT", raising=False)
    else:
        monkeypatch.setenv("SYNTH_TRACES_BUSY_TIMEOUT", value)
    with SessionTracer(tmp_path / "t.db") as tracer:
        assert tracer._writer.busy_timeout == (2.5 if value == "2.5" else 30.0)


def test_a_db_that_refuses_writes_spools_at_once(tmp_path):
    """Not a lock (e.g. the file became read-only): no retries to wait through, the session is spooled."""
    path = tmp_path / "readonly.db"
    SessionTracer(path).close()
    tracer = SessionTracer(path)
    tracer._writer._query("PRAGMA query_only = ON")          # every write now fails as on a read-only file
    with pytest.warns(TraceWriteWarning, match="readonly|read-only"):
        with tracer.session(session_id="kept"):
            tracer.record_message("safe", "user")
    tracer.close()
    assert tracer.sessions_spooled == 1 and _count(path) == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        SessionTracer(path).close()
    assert _count(path) == 1 and not (tmp_path / "readonly.db.spool").exists()


def test_a_session_whose_experiment_is_gone_is_refused_whole(tmp_path):
    """The writer checks the session's experiment itself (no `PRAGMA foreign_keys`): a session naming
    an experiment deleted after it started is refused as the foreign key refused it, and nothing of it
    is written (not the session, its steps, events or messages)."""
    from synth_cli.store.writer import WriteError

    db = tmp_path / "t.db"
    with SessionTracer(db) as tracer:
        tracer.create_experiment("exp_1", "run")
        tracer.start_session("s1", experiment_id="exp_1")
        with tracer.timestep("step_0", turn_number=0):
            tracer.record_message("hello", "user")
            tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))
        conn = sqlite3.connect(db)
        conn.execute("DELETE FROM experiments")
        conn.commit()
        conn.close()
        with pytest.raises(WriteError, match=r"write refused \(FOREIGN KEY constraint failed\)") as info:
            tracer.end_session()
        assert info.value.integrity
        with tracer.session("s2"):  # the tracer goes on; a session without an experiment is written
            tracer.record_message("again", "user")
    for table, expected in (("session_traces", 1), ("session_timesteps", 0), ("events", 0), ("messages", 1)):
        assert _count(db, table) == expected, table
    writer = open_writer(db)
    try:  # a batch naming an experiment the DB never had (e.g. replayed from a spool) likewise
        with pytest.raises(WriteError, match="FOREIGN KEY") as info:
            writer.write(SessionBatch("s3", "2026-01-01 00:00:00.000000", "{}", "exp_nope", 0, 0, 0))
        assert info.value.integrity
        assert writer.write(SessionBatch("s4", "2026-01-01 00:00:00.000000", "{}", "exp_new", 0, 0, 0,
                                         experiment=("exp_new", "n", None, None, None, None, None)))
    finally:
        writer.close()
    assert _count(db) == 2
