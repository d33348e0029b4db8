"""`synth-ai traces merge SRC... --into TARGET`: worker DBs into one, idempotent, atomic per session."""

from __future__ import annotations

import json
import sqlite3

from helpers import FIXTURE_COUNTS, invoke
from synth_cli.tracing.events import EnvironmentEvent, RuntimeEvent
from synth_cli.tracing.models import LLMCallRecord, LLMMessage, LLMUsage
from synth_cli.tracing.tracer import SessionTracer


def _record(worker, session, step):
    return LLMCallRecord(
        call_id=f"{worker}-{session}-{step}", model_name="gpt-4o-mini", provider="openai", latency_ms=30,
        input_messages=[LLMMessage.from_dict({"role": "user", "parts": [{"type": "text", "text": f"obs {step}"}]})],
        output_messages=[LLMMessage.from_dict({"role": "assistant",
                                               "parts": [{"type": "text", "text": f"act {worker} {session} {step}"}]})],
        usage=LLMUsage(input_tokens=10, output_tokens=3, total_tokens=13, cost_usd=0.02), outcome="success")


def _worker_db(path, worker, sessions=3, steps=2):
    with SessionTracer(path) as tracer:
        tracer.create_experiment("exp_shared", "shared run", configuration={"lr": 0.1})
        for s in range(sessions):
            with tracer.session(session_id=f"{worker}-s{s}", metadata={"worker": worker, "seed": s},
                                experiment_id="exp_shared"):
                tracer.record_message("system prompt", "system")
                for step in range(steps):
                    with tracer.timestep(f"step_{step}", turn_number=step):
                        tracer.record_message(f"obs {step}", "user")
                        tracer.record_llm_call(_record(worker, s, step), system_instance_id="agent")
                        tracer.record_event(RuntimeEvent(system_instance_id="rt", actions=[step]))
                        tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=float(step)))
    return path


def _session_rows(path):
    """Every row of every session, ids replaced by what they point at (comparable across DBs)."""
    conn = sqlite3.connect(path)
    try:
        out = {}
        for sid, *rest in conn.execute("SELECT session_id, created_at, num_timesteps, num_events, num_messages,"
                                       " metadata, experiment_id FROM session_traces"):
            steps = conn.execute("SELECT step_id, step_index, turn_number, started_at, completed_at, num_events,"
                                 " num_messages, step_metadata FROM session_timesteps WHERE session_id = ?"
                                 " ORDER BY id", (sid,)).fetchall()
            events = conn.execute("SELECT s.step_id, e.event_type, e.system_instance_id, e.event_time, e.created_at,"
                                  " e.model_name, e.cost_usd, e.call_records, e.reward, e.terminated, e.metadata"
                                  " FROM events e LEFT JOIN session_timesteps s ON s.id = e.timestep_id"
                                  " WHERE e.session_id = ? ORDER BY e.id", (sid,)).fetchall()
            messages = conn.execute("SELECT s.step_id, m.message_type, m.content, m.timestamp, m.metadata"
                                    " FROM messages m LEFT JOIN session_timesteps s ON s.id = m.timestep_id"
                                    " WHERE m.session_id = ? ORDER BY m.id", (sid,)).fetchall()
            out[sid] = (tuple(rest), steps, events, messages)
        return out
    finally:
        conn.close()


def _count(path, table):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    finally:
        conn.close()


def test_merging_two_worker_dbs_twice_gives_each_session_once(tmp_path):
    a = _worker_db(tmp_path / "worker-a.db", "a")
    b = _worker_db(tmp_path / "worker-b.db", "b", sessions=2)
    merged = tmp_path / "merged" / "all.db"

    first = invoke("--json", "traces", "merge", str(a), str(b), "--into", str(merged))
    assert first.exit_code == 0, first.output
    report = first.json()
    assert (report["copied"], report["skipped"], report["sessions"]) == (5, 0, 5)
    assert [(s["sessions"], s["copied"], s["skipped"]) for s in report["sources"]] == [(3, 3, 0), (2, 2, 0)]
    assert report["events"] == 5 * 2 * 3 and report["messages"] == 5 * 3

    second = invoke("--json", "traces", "merge", str(a), str(b), "--into", str(merged))
    assert second.exit_code == 0, second.output
    assert (second.json()["copied"], second.json()["skipped"]) == (0, 5)

    assert _count(merged, "session_traces") == 5 and _count(merged, "events") == 30
    assert _count(merged, "messages") == 15 and _count(merged, "session_timesteps") == 10
    assert _count(merged, "experiments") == 1
    assert _session_rows(merged) == {**_session_rows(a), **_session_rows(b)}


def test_the_merged_db_reads_like_its_sources(tmp_path):
    a = _worker_db(tmp_path / "a.db", "a")
    b = _worker_db(tmp_path / "b.db", "b")
    merged = tmp_path / "merged.db"
    assert invoke("traces", "merge", str(a), str(b), "--into", str(merged)).exit_code == 0

    sources = invoke("--json", "traces", "--db", str(a), "--db", str(b)).json()["totals"]
    together = invoke("--json", "traces", "--db", str(merged)).json()["totals"]
    for key in ("sessions", "events", "llm_calls"):
        assert together[key] == sources[key], key
    assert together["sessions"] == 6 and together["experiments"] == 1     # the shared experiment, once

    out_sources, out_merged = tmp_path / "sources.jsonl", tmp_path / "merged.jsonl"
    r1 = invoke("filter", "--db", str(a), "--db", str(b), "--mode", "calls", "-o", str(out_sources))
    r2 = invoke("filter", "--db", str(merged), "--mode", "calls", "-o", str(out_merged))
    assert r1.exit_code == 0 and r2.exit_code == 0, r1.output + r2.output
    lines = sorted(out_merged.read_text().splitlines())
    assert lines == sorted(out_sources.read_text().splitlines()) and len(lines) == 12
    assert {json.loads(line)["messages"][-1]["content"] for line in lines} == \
        {f"act {w} {s} {step}" for w in "ab" for s in range(3) for step in range(2)}


def test_human_summary_dry_run_and_sessions_already_there(tmp_path):
    a = _worker_db(tmp_path / "a.db", "a")
    b = _worker_db(tmp_path / "b.db", "b")
    target = tmp_path / "target.db"

    dry = invoke("traces", "merge", str(a), str(b), "--into", str(target), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "Would copy 6 sessions (36 events, 18 messages)" in dry.stdout
    assert not target.exists()                                 # a dry run creates nothing

    assert invoke("traces", "merge", str(a), "--into", str(target)).exit_code == 0
    dry = invoke("--json", "traces", "merge", str(a), str(b), "--into", str(target), "--dry-run").json()
    assert (dry["copied"], dry["skipped"]) == (3, 3)
    assert _count(target, "session_traces") == 3

    done = invoke("traces", "merge", str(a), str(b), "--into", str(target))
    assert done.exit_code == 0, done.output
    assert "Copied 3 sessions" in done.stdout and "skipped 3 already there" in done.stdout
    assert _count(target, "session_traces") == 6
    quiet = invoke("--quiet", "traces", "merge", str(a), str(b), "--into", str(target))
    assert quiet.stdout.strip() == "0"


def test_the_published_fixture_merges_into_a_new_sqld_directory(tmp_path, fixture_dir):
    target = tmp_path / "merged.db"
    result = invoke("--json", "traces", "merge", str(fixture_dir), "--into", str(target), "--layout", "sqld")
    assert result.exit_code == 0, result.output
    assert result.json()["copied"] == FIXTURE_COUNTS["sessions"]
    data = target / "dbs" / "default" / "data"
    assert _count(data, "session_traces") == FIXTURE_COUNTS["sessions"]
    assert _count(data, "events") == FIXTURE_COUNTS["events"]
    assert _count(data, "messages") == FIXTURE_COUNTS["messages"]
    assert _count(data, "experiments") == FIXTURE_COUNTS["experiments"]
    assert _session_rows(data) == _session_rows(fixture_dir / "dbs" / "default" / "data")


def test_a_session_that_cannot_be_written_leaves_nothing_half_copied(tmp_path):
    a = _worker_db(tmp_path / "a.db", "a", sessions=3)
    conn = sqlite3.connect(a)               # corrupt one message of the second session (CHECK bypassed)
    conn.execute("PRAGMA ignore_check_constraints = ON")
    conn.execute("UPDATE messages SET message_type = 'robot' WHERE id = (SELECT max(id) FROM messages"
                 " WHERE session_id = 'a-s1')")
    conn.commit()
    conn.close()
    target = tmp_path / "target.db"
    result = invoke("traces", "merge", str(a), "--into", str(target))
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ") and "a-s1" in result.stderr and "rerun" in result.stderr
    assert "Traceback" not in result.output
    conn = sqlite3.connect(target)
    assert [r[0] for r in conn.execute("SELECT session_id FROM session_traces")] == ["a-s0"]
    assert conn.execute("SELECT count(*) FROM events WHERE session_id = 'a-s1'").fetchone()[0] == 0
    assert conn.execute("SELECT count(*) FROM session_timesteps WHERE session_id = 'a-s1'").fetchone()[0] == 0
    conn.close()


def test_bad_merges_are_one_line_errors_and_write_nothing(tmp_path):
    a = _worker_db(tmp_path / "a.db", "a", sessions=1)
    cases = [
        (["traces", "merge", str(a), "--into", str(a)], 2, "is the merge target itself"),
        (["traces", "merge", str(a), str(a), "--into", str(tmp_path / "t.db")], 2, "named twice"),
        (["traces", "merge", str(tmp_path / "missing.db"), "--into", str(tmp_path / "t.db")], 1,
         "no such file"),
        (["traces", "merge", str(a), "--into", str(tmp_path / "t.db"), "--layout", "tree"], 2, "--layout"),
    ]
    notes = tmp_path / "notes.txt"
    notes.write_text("not a database\n")
    cases.append((["traces", "merge", str(a), "--into", str(notes)], 1, "not a SQLite database"))
    for args, code, message in cases:
        result = invoke(*args)
        assert result.exit_code == code, (args, result.output)
        assert result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "t.db").exists()
    assert notes.read_text() == "not a database\n"
    assert _count(a, "session_traces") == 1
