"""`synth-ai filter` on imperfect input: malformed rows, --strict, failed calls, the earlier schema,
and atomic output (a crash or Ctrl-C never leaves a partial or clobbered file)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from helpers.filterdb import call, conversation_calls, make_db, read_jsonl, text
from helpers import FIXTURE_DB, invoke


def run_json(*args, code=0):
    res = invoke("--json", "filter", *args)
    assert res.exit_code == code, res.output
    return res


def _corrupt(db, payloads):
    """Replace the call_records of the first cais events (by id) with `payloads`; returns their session ids."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, session_id FROM events WHERE event_type = 'cais' ORDER BY id LIMIT ?",
                        (len(payloads),)).fetchall()
    for (event_id, _), payload in zip(rows, payloads):
        conn.execute("UPDATE events SET call_records = ? WHERE id = ?", (payload, event_id))
    conn.commit()
    conn.close()
    return [sid for _, sid in rows]


# --------------------------------------------------------------------------- malformed rows


def test_malformed_rows_are_skipped_counted_and_named(fixture_db, tmp_path):
    sessions = _corrupt(fixture_db, ['{"truncated', "[1, 2]", '"a string"', '[{"input_messages": 5}]',
                                     '[{"input_messages": [{"role": "user", "parts": "not a list"}]}]'])
    out = tmp_path / "t.jsonl"
    res = run_json("--db", fixture_db, "-o", out)
    data = res.json()
    assert data["malformed_rows"]["count"] == 5
    assert data["malformed_rows"]["sessions"] == list(dict.fromkeys(sessions))
    assert data["examples"]["written"] == 235
    assert len(read_jsonl(out)) == 235
    assert "warning: skipped 5 malformed call_records row(s) (sessions " in res.stderr
    assert sessions[0] in res.stderr
    assert "--strict makes this an error" in res.stderr


def test_strict_makes_malformed_rows_fatal_and_keeps_the_old_output(fixture_db, tmp_path):
    (sid,) = _corrupt(fixture_db, ["not json at all"])
    out = tmp_path / "t.jsonl"
    out.write_text("previous dataset\n")
    res = invoke("filter", "--db", fixture_db, "-o", out, "--strict")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0].startswith(f"error: {sid}: malformed call_records in event ")
    assert out.read_text() == "previous dataset\n"
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))) == \
        ["fixture.db", "t.jsonl"]


def test_sessions_mode_survives_a_malformed_row(fixture_db, tmp_path):
    _corrupt(fixture_db, ["{"])
    data = run_json("--db", fixture_db, "--mode", "sessions", "--dry-run").json()
    assert data["malformed_rows"]["count"] == 1
    # the session of the broken row starts a new conversation after the gap; the others are whole
    assert data["examples"]["written"] in (30, 31)


def test_kept_sessions_without_call_records_say_so_not_loosen_the_filters(fixture_db, tmp_path):
    conn = sqlite3.connect(fixture_db)
    conn.execute("UPDATE events SET call_records = NULL")
    conn.commit()
    conn.close()
    out = tmp_path / "t.jsonl"
    res = invoke("filter", "--db", fixture_db, "-o", out, "--min-reward", "1")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[:2] == [
        "error: the 20 session(s) kept hold no LLM call records; nothing written",
        "hint: record LLM calls with the tracer (SessionTracer.record_llm_call); "
        "`synth-ai traces` shows how many LLM calls each DB holds"]
    assert not out.exists()
    res = invoke("filter", "--db", fixture_db, "--dry-run", "-q")
    assert res.exit_code == 0 and "warning: the 30 session(s) kept hold no LLM call records" in res.stderr
    # filters that drop everything still say so
    res = invoke("filter", "--db", fixture_db, "-o", out, "--min-reward", "100")
    assert res.stderr.startswith("error: no examples match the filters; nothing written")


# --------------------------------------------------------------------------- failed calls


def test_failed_calls_need_include_errors(tmp_path):
    records = conversation_calls(3)
    records.append(call([text("user", "retry")], "partial answer", outcome="error",
                        error={"code": 500, "message": "upstream", "type": "server_error"}))
    db = make_db(tmp_path / "errors.db", [{"id": "s1", "calls": records}])
    data = run_json("--db", db, "--dry-run").json()
    assert data["examples"]["written"] == 3
    assert data["calls"]["dropped_by"] == {"outcome": 1}
    out = tmp_path / "all.jsonl"
    data = run_json("--db", db, "-o", out, "--include-errors").json()
    assert data["examples"]["written"] == 4
    assert read_jsonl(out)[-1]["messages"][-1] == {"role": "assistant", "content": "partial answer"}


def test_filters_on_a_tracer_written_db(tmp_path):
    sessions = [
        {"id": f"s{i}", "calls": conversation_calls(2, prefix=f"s{i} ", model="m-a" if i % 2 else "m-b"),
         "rewards": [float(i), 0.0], "metadata": {"task_split": "train" if i < 3 else "test", "flag": i == 1},
         "experiment": ("exp_a", "alpha") if i < 2 else ("exp_b", "beta"),
         "achievements": {"a": True, "b": i > 2, "c": False}, "cost_usd": 0.01 * i}
        for i in range(5)]
    db = make_db(tmp_path / "t.db", sessions)

    def kept(*args):
        return run_json("--db", db, "--dry-run", *args).json()["sessions"]["kept"]

    assert kept() == 5
    assert kept("--min-reward", "2") == 3
    assert kept("--max-reward", "2") == 3
    assert kept("--min-achievements", "2") == 2
    assert kept("--max-cost", "0.04") == 3  # $0.01 × i per call, 2 calls: 0, 2, 4, 6, 8 cents
    assert kept("--experiment", "beta") == 3
    assert kept("--experiment", "exp_a") == 2
    assert kept("--where", "flag=true") == 1
    assert kept("--where", "task_split=test") == 2
    assert kept("--since", "1h") == 5  # written just now (created_at is UTC)
    assert kept("--until", "1h") == 0
    assert kept("--since", "2999-01-01") == 0
    data = run_json("--db", db, "--dry-run", "--model", "m-a").json()
    assert data["examples"]["written"] == 4 and data["models"] == {"m-a": 4}


def test_flat_function_tools_are_kept_not_dropped_as_invalid(tmp_path):
    # the Responses API spells a function tool flat: {"type": "function", "name", "parameters"}
    flat = {"type": "function", "name": "act", "description": "Act", "parameters": {"type": "object"},
            "strict": True}
    db = make_db(tmp_path / "flat.db", [{"id": "s1", "calls": [call([text("user", "go")], "ok", tools=[flat])]}])
    out = tmp_path / "t.jsonl"
    data = run_json("--db", db, "-o", out).json()
    assert data["examples"]["written"] == 1 and data["examples"]["invalid_dropped"] == {}
    assert read_jsonl(out)[0]["tools"] == [{"type": "function", "function": {
        "name": "act", "description": "Act", "parameters": {"type": "object"}, "strict": True}}]


# --------------------------------------------------------------------------- invalid examples, skipped parts, chains


def _two_calls_not_parallel():
    return call([text("user", "two")], None, tools=[{"type": "function", "function": {"name": "act"}}],
                parallel=False, call_id="bad", tool_calls=[{"name": "act", "arguments_json": "{}", "call_id": "a"},
                                                           {"name": "act", "arguments_json": "{}", "call_id": "b"}])


def test_invalid_examples_are_left_out_and_named_and_strict_makes_them_fatal(tmp_path):
    db = make_db(tmp_path / "inv.db", [{"id": "s1", "calls": conversation_calls(2) + [_two_calls_not_parallel()]}])
    out = tmp_path / "t.jsonl"
    res = run_json("--db", db, "-o", out)
    reason = "several tool_calls in one message with parallel_tool_calls false"
    assert res.json()["examples"]["invalid_dropped"] == {reason: 1}
    assert res.json()["examples"]["written"] == 2 and len(read_jsonl(out)) == 2
    assert f"warning: left out 1 example(s) that fail validation: {reason} (1)" in res.stderr
    out.write_text("previous dataset\n")
    res = invoke("filter", "--db", db, "-o", out, "--strict")
    assert res.exit_code == 1
    assert res.stderr.splitlines() == [f"error: session s1: the example of call bad is not valid ({reason})",
                                       "hint: drop --strict to skip invalid examples"]
    assert out.read_text() == "previous dataset\n"


def test_skipped_parts_are_counted_by_kind_in_the_stats(tmp_path):
    user = {"role": "user", "parts": [{"type": "text", "text": "look"},
                                      {"type": "image", "base64_data": "AAAA", "mime_type": "image/png"},
                                      {"type": "audio", "base64_data": "UklG", "mime_type": "audio/wav"}]}
    thinking = {"role": "assistant", "parts": [{"type": "thinking", "text": "hmm"}, {"type": "text", "text": "hi"}]}
    record = call([user, thinking, text("user", "again"), text("critic", "meh")], "ok")
    db = make_db(tmp_path / "parts.db", [{"id": "s1", "calls": [record]}])
    out = tmp_path / "t.jsonl"
    data = run_json("--db", db, "-o", out).json()
    assert data["skipped_parts"] == {"audio": 1, "role:critic": 1, "thinking": 1}
    (example,) = read_jsonl(out)
    assert example["messages"][0]["content"] == [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]
    res = invoke("filter", "--db", db, "-o", out)
    assert "skipped parts  audio 1, role:critic 1, thinking 1" in res.stdout


def test_sessions_mode_starts_a_new_example_where_the_chain_breaks(tmp_path):
    # s1 keeps its history: one example; s2 sends each question alone: one example per call;
    # s3 keeps its history for two turns, then starts over: two examples.
    fresh = [call([text("user", f"q{i}")], f"a{i}", call_id=f"fresh{i}") for i in range(3)]
    restart = conversation_calls(2, prefix="r ") + conversation_calls(2, prefix="again ")
    db = make_db(tmp_path / "chains.db", [{"id": "s1", "calls": conversation_calls(4, prefix="s1 ")},
                                          {"id": "s2", "calls": fresh}, {"id": "s3", "calls": restart}])
    out = tmp_path / "s.jsonl"
    data = run_json("--db", db, "-o", out, "--mode", "sessions", "--include-metadata").json()
    lines = read_jsonl(out)
    per_session = {sid: [len(e["messages"]) for e in lines if e["metadata"]["session_id"] == sid]
                   for sid in ("s1", "s2", "s3")}
    assert per_session == {"s1": [9], "s2": [2, 2, 2], "s3": [5, 5]}
    assert data["examples"]["written"] == 6


# --------------------------------------------------------------------------- earlier schema


@pytest.fixture
def old_schema_db(fixture_db):
    conn = sqlite3.connect(fixture_db)
    conn.execute("ALTER TABLE events DROP COLUMN call_records")
    conn.commit()
    conn.close()
    return fixture_db


def test_earlier_schema_falls_back_to_messages_and_says_so(old_schema_db, tmp_path):
    out = tmp_path / "s.jsonl"
    res = run_json("--db", old_schema_db, "-o", out, "--mode", "sessions", "--include-metadata")
    assert "no events.call_records (earlier tracing_v3 schema); building examples from the messages table" \
        in res.stderr
    data = res.json()
    assert data["dbs"][0]["source"] == "messages"
    lines = read_jsonl(out)
    assert len(lines) == 30
    with sqlite3.connect(old_schema_db) as conn:
        for e in lines:
            expected = conn.execute(
                "SELECT m.message_type, m.content FROM messages m JOIN session_timesteps t ON t.id = m.timestep_id "
                "WHERE m.session_id = ? ORDER BY t.step_index, m.id", (e["metadata"]["session_id"],)).fetchall()
            assert [(m["role"], m["content"]) for m in e["messages"]] == expected
            assert [m["role"] for m in e["messages"]] == ["user", "assistant"] * 8


def test_earlier_schema_calls_mode_and_filters(old_schema_db, tmp_path):
    out = tmp_path / "c.jsonl"
    data = run_json("--db", old_schema_db, "-o", out, "--min-reward", "1").json()
    lines = read_jsonl(out)
    assert len(lines) == data["examples"]["written"] == 160  # one per assistant message of the 20 sessions
    assert sorted({len(e["messages"]) for e in lines}) == list(range(2, 17, 2))
    assert all(e["messages"][-1]["role"] == "assistant" for e in lines)
    data = run_json("--db", old_schema_db, "--dry-run", "--model", "gpt-4o-mini").json()
    assert data["sessions"]["kept"] == 10 and data["sessions"]["dropped_by"] == {"model": 20}


# --------------------------------------------------------------------------- atomic output


def test_an_exception_mid_write_leaves_the_old_output(tmp_path, monkeypatch):
    from synth_cli.dataset import build

    out = tmp_path / "train.jsonl"
    out.write_text("old\n")
    original = build.Sink.accept  # every example written goes through it
    calls = {"n": 0}

    def flaky(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 100:
            raise RuntimeError("disk on fire")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(build.Sink, "accept", flaky)
    res = invoke("filter", "--db", FIXTURE_DB, "-o", out, "--val-fraction", "0.2")
    assert res.exit_code == 1
    assert "error: unexpected RuntimeError: disk on fire" in res.stderr
    assert out.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["train.jsonl"]  # no temp file, no val file


def _big_db(directory, copies: int):
    """The fixture's call records copied `copies` times into new sessions (each copy's text made distinct)."""
    db = directory / f"big{copies}.db"
    if db.exists():
        return db
    src = sqlite3.connect(f"file:{FIXTURE_DB}?mode=ro", uri=True)
    dst = sqlite3.connect(db)
    src.backup(dst)
    src.close()
    copies_cte = "WITH RECURSIVE c(k) AS (SELECT 1 UNION ALL SELECT k + 1 FROM c WHERE k < ?) "
    dst.execute("INSERT INTO session_traces (session_id, created_at, num_timesteps, num_events, num_messages, "
                "metadata, experiment_id) " + copies_cte + "SELECT s.session_id || '#' || c.k, s.created_at, "
                "s.num_timesteps, s.num_events, s.num_messages, s.metadata, s.experiment_id "
                "FROM session_traces s, c", (copies - 1,))
    dst.execute("INSERT INTO events (session_id, event_type, model_name, call_records) " + copies_cte +
                "SELECT e.session_id || '#' || c.k, e.event_type, e.model_name, "
                "replace(e.call_records, 'Step ', 'Step #' || c.k || ' ') FROM events e, c "
                "WHERE e.event_type = 'cais'", (copies - 1,))
    dst.commit()
    dst.close()
    return db


@pytest.fixture(scope="module")
def big_dbs(tmp_path_factory):
    return tmp_path_factory.mktemp("big")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_interrupted_mid_write_leaves_no_partial_or_clobbered_output(tmp_path, big_dbs, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "train.jsonl"
    out.write_text("the previous dataset\n")
    for copies in (100, 400):
        db = _big_db(big_dbs, copies)
        proc = subprocess.Popen([sys.executable, "-m", "synth_cli", "filter", "--db", str(db), "-o", str(out)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")})
        deadline = time.monotonic() + 60
        signalled = False
        while time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in out_dir.iterdir() if p.name.startswith(".train.jsonl.")]
            if temps and temps[0].exists() and temps[0].stat().st_size > 0:  # bytes are being written
                proc.send_signal(sig)
                signalled = True
                break
            time.sleep(0.002)
        _, stderr = proc.communicate(timeout=60)
        if not signalled:  # finished before we saw it write: try a bigger DB
            out.write_text("the previous dataset\n")
            continue
        assert proc.returncode == 130, stderr
        assert "Traceback" not in stderr
        assert stderr.strip().splitlines()[-1] == "error: interrupted"
        assert out.read_text() == "the previous dataset\n"
        assert [p.name for p in out_dir.iterdir()] == ["train.jsonl"]
        return
    pytest.fail("filter finished before it could be interrupted, even on the large DB")


def test_progress_is_reported_while_scanning(big_dbs):
    from synth_cli.dataset.build import PROGRESS_EVERY
    from synth_cli.dataset.run import run_filter
    from synth_cli.dataset.options import FilterOptions

    db = _big_db(big_dbs, 100)
    seen = []
    stats = run_filter(FilterOptions(dbs=[str(db)], dry_run=True),
                       on_progress=lambda s: seen.append((s.calls_scanned, s.examples, s.rows_done, s.rows_total)))
    assert stats.examples == 24000
    # once when the total is known (before the scan: the bar shows it), then every PROGRESS_EVERY rows
    assert len(seen) == 1 + 24000 // PROGRESS_EVERY
    assert seen[0] == (0, 0, 0, 24000) and all(total == 24000 for *_, total in seen)
    assert seen == sorted(seen) and seen[-1][0] <= 24000 and seen[-1][2] <= 24000
