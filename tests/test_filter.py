"""`synth-ai filter` on the fixture DB: the acceptance list of issue 3 and every flag."""

from __future__ import annotations

import json
import sqlite3
from collections import Counter

import pytest

from helpers.filterdb import read_jsonl
from helpers import FIXTURE_COUNTS, FIXTURE_DB, FIXTURE_DIR, invoke, run_cli
from synth_cli.dataset.validate import validate_file


# --------------------------------------------------------------------------- ground truth, straight from SQLite


def _db():
    conn = sqlite3.connect(f"file:{FIXTURE_DB}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    return conn


def truth_rewards() -> dict[str, float]:
    with _db() as conn:
        return {r[0]: r[1] or 0.0 for r in conn.execute(
            "SELECT s.session_id, (SELECT SUM(reward) FROM events e WHERE e.session_id = s.session_id "
            "AND e.event_type = 'environment') FROM session_traces s")}


def truth_records() -> dict[str, tuple[str, dict]]:
    """call_id → (session_id, record)."""
    out = {}
    with _db() as conn:
        for r in conn.execute("SELECT session_id, call_records FROM events WHERE event_type = 'cais'"):
            for rec in json.loads(r[1]):
                out[rec["call_id"]] = (r[0], rec)
    return out


def truth_achievements() -> dict[str, int]:
    out = {}
    with _db() as conn:
        for sid, state in conn.execute(
                "SELECT session_id, system_state_after FROM events WHERE event_type = 'environment' ORDER BY id"):
            status = json.loads(state)["public_state"]["achievements_status"] if state else {}
            out[sid] = sum(1 for v in status.values() if v is True)  # the last one wins
    return out


def run(*args, ok=True):
    res = invoke("filter", *args)
    if ok:
        assert res.exit_code == 0, res.output
    return res


def stats(*args):
    res = run("--json", *args)
    return res.json()


# --------------------------------------------------------------------------- acceptance


def test_calls_mode_on_the_fixture(tmp_path):
    out = tmp_path / "train.jsonl"
    data = stats("--db", FIXTURE_DB, "--output", out, "--include-metadata")
    lines = read_jsonl(out)
    assert len(lines) == FIXTURE_COUNTS["call_records"] == 240
    assert sum(1 for e in lines if e["messages"][-1].get("tool_calls")) == FIXTURE_COUNTS["with_tool_calls"] == 165
    records = truth_records()
    for e in lines:
        session_id, rec = records[e["metadata"]["call_id"]]
        assert e["metadata"]["session_id"] == session_id
        assert len(e["messages"]) == len(rec["input_messages"]) + 1
        assert e["messages"][-1]["role"] == "assistant"
        for m, original in zip(e["messages"], rec["input_messages"]):
            assert m == {"role": original["role"], "content": original["parts"][0]["text"]}
        if rec["output_tool_calls"]:
            assert e["messages"][-1]["tool_calls"] == [
                {"id": tc["call_id"], "type": "function", "function": {"name": tc["name"], "arguments": tc["arguments_json"]}}
                for tc in rec["output_tool_calls"]]
        if rec["request_params"]["raw_params"].get("tools"):
            assert e["tools"] == rec["request_params"]["raw_params"]["tools"]
        else:
            assert "tools" not in e
        assert set(e) <= {"messages", "tools", "metadata"}
    report = validate_file(out)
    assert report.valid and report.invalid == 0 and report.examples == 240
    assert data["examples"]["written"] == 240
    assert data["examples"]["with_tool_calls"] == 165
    assert data["examples"]["invalid_dropped"] == {}
    assert data["models"] == FIXTURE_COUNTS["per_model"]
    assert data["sessions"] == {"scanned": 30, "kept": 30, "dropped": 0, "dropped_by": {}}
    assert invoke("sft", "validate", out).exit_code == 0


@pytest.mark.parametrize("threshold, sessions", [(1, 20), (2, 9)])
def test_min_reward(tmp_path, threshold, sessions):
    out = tmp_path / "train.jsonl"
    data = stats("--db", FIXTURE_DB, "--output", out, "--min-reward", threshold, "--include-metadata")
    expected = {sid for sid, r in truth_rewards().items() if r >= threshold}
    assert len(expected) == sessions == FIXTURE_COUNTS[f"reward_ge_{threshold}"]
    lines = read_jsonl(out)
    got = {e["metadata"]["session_id"] for e in lines}
    assert got == expected
    assert len(lines) == 8 * sessions
    assert all(e["metadata"]["total_reward"] >= threshold for e in lines)
    assert data["sessions"] == {"scanned": 30, "kept": sessions, "dropped": 30 - sessions,
                                "dropped_by": {"min_reward": 30 - sessions}}


def test_sessions_mode_on_the_fixture(tmp_path):
    out = tmp_path / "sessions.jsonl"
    data = stats("--db", FIXTURE_DIR, "--output", out, "--mode", "sessions")
    lines = read_jsonl(out)
    assert len(lines) == 30
    for e in lines:
        roles = [m["role"] for m in e["messages"]]
        assert len(roles) == 17
        assert roles == ["system"] + ["user", "assistant"] * 8
    # every tool call the model made is in the merged conversations
    made = sum(len(tc) for tc in (m.get("tool_calls") or [] for e in lines for m in e["messages"]))
    assert made == sum(len(rec["output_tool_calls"]) for _, rec in truth_records().values())
    assert validate_file(out).valid
    assert data["examples"]["written"] == 30


# --------------------------------------------------------------------------- session filters


def test_max_reward_and_min_achievements(tmp_path):
    rewards = truth_rewards()
    data = stats("--db", FIXTURE_DB, "--dry-run", "--max-reward", "1")
    assert data["sessions"]["kept"] == sum(1 for r in rewards.values() if r <= 1)
    ach = truth_achievements()
    for n in (1, 2, 3):
        data = stats("--db", FIXTURE_DB, "--dry-run", "--min-achievements", n)
        assert data["sessions"]["kept"] == sum(1 for v in ach.values() if v >= n), n
        assert 0 < data["sessions"]["kept"] or n == 3


def _session_figures(db) -> dict[str, dict]:
    """Per-session figures as the `experiment` report gives them (the reference for `filter`)."""
    out: dict[str, dict] = {}
    for exp in invoke("experiments", "--db", db, "-q").stdout.split():
        res = invoke("experiment", exp, "--db", db, "--json")
        assert res.exit_code == 0, res.output
        out.update({s["session_id"]: s for s in res.json()["sessions"]})
    return out


def test_max_cost_keeps_exactly_the_sessions_the_reports_price_at_or_below(fixture_db):
    # events.cost_usd holds truncated cents (0 here); the exact cost is in the call records
    figures = _session_figures(fixture_db)
    costs = sorted({s["cost_usd"] for s in figures.values()})
    assert len(figures) == 30 and costs[0] > 0.0005
    assert stats("--db", fixture_db, "--dry-run", "--max-cost", "0.0005")["sessions"]["kept"] == 0
    for limit in (costs[0], costs[len(costs) // 2], (costs[3] + costs[4]) / 2, costs[-1]):
        data = stats("--db", fixture_db, "--dry-run", "--max-cost", repr(limit))
        assert data["sessions"]["kept"] == sum(1 for c in figures.values() if c["cost_usd"] <= limit), limit


def test_max_cost_falls_back_to_the_cents_column_like_the_reports(fixture_db):
    conn = sqlite3.connect(fixture_db)
    sid = conn.execute("SELECT session_id FROM session_traces ORDER BY session_id LIMIT 1").fetchone()[0]
    conn.execute("UPDATE events SET cost_usd = 5, call_records = json_remove(call_records, '$[0].usage.cost_usd') "
                 "WHERE session_id = ? AND event_type = 'cais'", (sid,))
    conn.commit()
    conn.close()
    assert _session_figures(fixture_db)[sid]["cost_usd"] == pytest.approx(0.40)  # 8 calls x 5 cents
    data = stats("--db", fixture_db, "--dry-run", "--max-cost", "0.39")
    assert data["sessions"]["dropped_by"] == {"max_cost": 1}
    assert stats("--db", fixture_db, "--dry-run", "--max-cost", "0.40")["sessions"]["kept"] == 30


def test_max_tokens_and_min_reward_agree_with_the_reports(fixture_db):
    figures = _session_figures(fixture_db)
    tokens = sorted(s["total_tokens"] for s in figures.values())
    for limit in (tokens[0], tokens[10], tokens[-1]):
        data = stats("--db", fixture_db, "--dry-run", "--max-tokens", limit)
        assert data["sessions"]["kept"] == sum(1 for s in figures.values() if s["total_tokens"] <= limit)
    for reward in (1, 2):
        data = stats("--db", fixture_db, "--dry-run", "--min-reward", reward)
        assert data["sessions"]["kept"] == sum(1 for s in figures.values() if (s["reward"] or 0) >= reward)


def test_experiment_by_id_and_name(tmp_path):
    assert stats("--db", FIXTURE_DB, "--dry-run", "--experiment", "exp_6513270e269e")["sessions"]["kept"] == 10
    data = stats("--db", FIXTURE_DB, "--dry-run", "--experiment", "crafter_run_1", "--experiment", "crafter_run_2")
    assert data["sessions"]["kept"] == 20
    assert data["sessions"]["dropped_by"] == {"experiment": 10}
    assert stats("--db", FIXTURE_DB, "--dry-run", "--experiment", "nope")["sessions"]["kept"] == 0


def test_since_until_absolute(tmp_path):
    # fixture sessions were created between 2026-11-22 22:23:49.76 and 22:23:50.84 (UTC)
    assert stats("--db", FIXTURE_DB, "--dry-run", "--since", "2026-11-22")["sessions"]["kept"] == 30
    assert stats("--db", FIXTURE_DB, "--dry-run", "--until", "2026-11-22")["sessions"]["kept"] == 30  # whole day
    assert stats("--db", FIXTURE_DB, "--dry-run", "--until", "2026-11-21")["sessions"]["kept"] == 0
    assert stats("--db", FIXTURE_DB, "--dry-run", "--since", "2026-11-23T00:00:00Z")["sessions"]["kept"] == 0
    with sqlite3.connect(f"file:{FIXTURE_DB}?mode=ro", uri=True) as conn:
        created = sorted(r[0] for r in conn.execute("SELECT created_at FROM session_traces"))
    middle = created[15]
    data = stats("--db", FIXTURE_DB, "--dry-run", "--since", middle)
    assert data["sessions"]["kept"] == sum(1 for c in created if c >= middle)
    assert data["sessions"]["dropped_by"] == {"since": 15}
    # with an offset: the same instant two hours east
    data = stats("--db", FIXTURE_DB, "--dry-run", "--until", "2026-11-23T00:23:50+02:00")
    assert data["sessions"]["kept"] == sum(1 for c in created if c <= "2026-11-22 22:23:50")


@pytest.mark.parametrize("span, seconds", [
    ("90s", 90), ("30m", 1800), ("45min", 2700), ("24h", 86400), ("1.5h", 5400), ("2 hours", 7200),
    ("7d", 7 * 86400), ("3days", 3 * 86400), ("2w", 14 * 86400), ("1 week", 7 * 86400)])
def test_relative_spans(span, seconds):
    from datetime import datetime, timedelta

    from synth_cli.dataset.options import parse_when

    now = datetime(2026, 1, 10, 12, 0, 0)
    assert parse_when(span, "--since", now=now) == now - timedelta(seconds=seconds)
    assert parse_when(span, "--until", end_of_day=True, now=now) == now - timedelta(seconds=seconds)


def test_where_on_metadata(tmp_path):
    assert stats("--db", FIXTURE_DB, "--dry-run", "--where", "task_split=train")["sessions"]["kept"] == 18
    assert stats("--db", FIXTURE_DB, "--dry-run", "--where", "task_split=val")["sessions"]["kept"] == 12
    data = stats("--db", FIXTURE_DB, "--dry-run", "--where", "task_split=train", "--where", "model=gpt-4o-mini")
    with sqlite3.connect(f"file:{FIXTURE_DB}?mode=ro", uri=True) as conn:
        expected = conn.execute("SELECT COUNT(*) FROM session_traces WHERE json_extract(metadata, '$.task_split') = "
                                "'train' AND json_extract(metadata, '$.model') = 'gpt-4o-mini'").fetchone()[0]
    assert data["sessions"]["kept"] == expected
    assert stats("--db", FIXTURE_DB, "--dry-run", "--where", "seed=0")["sessions"]["kept"] == 1  # a number
    assert stats("--db", FIXTURE_DB, "--dry-run", "--where", "missing=x")["sessions"]["dropped_by"] == {"where": 30}


def test_dropped_counts_by_first_failing_filter():
    data = stats("--db", FIXTURE_DB, "--dry-run", "--min-reward", "1", "--where", "task_split=train")
    s = data["sessions"]
    assert s["dropped_by"]["where"] == 12
    assert s["kept"] + sum(s["dropped_by"].values()) == 30


# --------------------------------------------------------------------------- call-level filters


def test_model_filter(tmp_path):
    out = tmp_path / "m.jsonl"
    data = stats("--db", FIXTURE_DB, "-o", out, "--model", "gpt-4o-mini", "--include-metadata")
    lines = read_jsonl(out)
    assert len(lines) == 80 and {e["metadata"]["model"] for e in lines} == {"gpt-4o-mini"}
    assert data["calls"]["dropped_by"] == {"model": 160}
    assert data["models"] == {"gpt-4o-mini": 80}
    data = stats("--db", FIXTURE_DB, "--dry-run", "--model", "gpt-4o-mini", "--model", "claude-3-5-haiku")
    assert data["examples"]["written"] == 160


# --------------------------------------------------------------------------- output options


def test_include_metadata_shape(tmp_path):
    out = tmp_path / "t.jsonl"
    run("--db", FIXTURE_DB, "-o", out, "--include-metadata", "--limit", "3")
    rewards = truth_rewards()
    for e in read_jsonl(out):
        assert set(e["metadata"]) == {"session_id", "call_id", "model", "total_reward", "experiment_id"}
        assert e["metadata"]["total_reward"] == rewards[e["metadata"]["session_id"]]
        assert e["metadata"]["experiment_id"].startswith("exp_")
    run("--db", FIXTURE_DB, "-o", out, "--limit", "3")
    assert all(set(e) <= {"messages", "tools"} for e in read_jsonl(out))


def test_limit(tmp_path):
    out = tmp_path / "t.jsonl"
    data = stats("--db", FIXTURE_DB, "-o", out, "--limit", "5")
    assert len(read_jsonl(out)) == 5 and data["limit_reached"] is True


def test_val_split_is_disjoint_deterministic_and_seeded(tmp_path):
    def split(seed, name):
        out = tmp_path / f"{name}.jsonl"
        data = stats("--db", FIXTURE_DB, "-o", out, "--val-fraction", "0.2", "--seed", seed, "--include-metadata")
        train, val = read_jsonl(out), read_jsonl(tmp_path / f"{name}.val.jsonl")
        assert data["val_output"] == str(tmp_path / f"{name}.val.jsonl")
        return ({e["metadata"]["session_id"] for e in train}, {e["metadata"]["session_id"] for e in val},
                len(train), len(val))

    train, val, n_train, n_val = split(0, "a")
    assert not train & val
    assert len(train | val) == 30 and len(val) == 6  # 20% of 30 sessions
    assert n_train + n_val == 240
    assert split(0, "b")[:2] == (train, val)
    assert split(7, "c")[1] != val


def test_duplicates_are_written_once(fixture_db, tmp_path):
    # copy one session's cais events into a new session: identical examples
    conn = sqlite3.connect(fixture_db)
    sid = conn.execute("SELECT session_id FROM session_traces ORDER BY session_id LIMIT 1").fetchone()[0]
    conn.execute("INSERT INTO session_traces (session_id, created_at, num_timesteps, num_events, num_messages, "
                 "metadata, experiment_id) SELECT 'copy', created_at, num_timesteps, num_events, num_messages, "
                 "metadata, experiment_id FROM session_traces WHERE session_id = ?", (sid,))
    conn.execute("INSERT INTO events (session_id, event_type, call_records, model_name) SELECT 'copy', event_type, "
                 "call_records, model_name FROM events WHERE session_id = ? AND event_type = 'cais'", (sid,))
    conn.commit()
    conn.close()
    out = tmp_path / "d.jsonl"
    data = stats("--db", fixture_db, "-o", out)
    assert data["examples"]["duplicates_removed"] == 8
    lines = out.read_text().splitlines()
    assert len(lines) == 240 == len(set(lines))


def test_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "never.jsonl"
    data = stats("--db", FIXTURE_DB, "-o", out, "--val-fraction", "0.1", "--dry-run")
    assert data["dry_run"] is True and data["examples"]["written"] == 240
    assert list(tmp_path.iterdir()) == []
    assert stats("--db", FIXTURE_DB, "--dry-run")["examples"]["written"] == 240  # no --output needed


def test_json_stats_shape(tmp_path):
    data = stats("--db", FIXTURE_DB, "--dry-run", "--min-reward", "1")
    assert set(data) >= {"mode", "sessions", "calls", "examples", "skipped_parts", "token_estimate",
                         "reward_histogram", "models", "malformed_rows", "dbs"}
    hist = {b["min"]: (b["sessions"], b["kept"]) for b in data["reward_histogram"]}
    counts = Counter(truth_rewards().values())
    assert hist == {int(r): (counts[r], counts[r] if r >= 1 else 0) for r in counts}
    assert data["token_estimate"] > 0
    assert data["dbs"] == [{"db": str(FIXTURE_DB), "kind": "sqlite", "source": "call_records"}]


def test_human_summary(tmp_path):
    res = run("--db", FIXTURE_DB, "-o", tmp_path / "t.jsonl", "--min-reward", "1")
    text = res.stdout
    assert f"Wrote 160 example(s) to {tmp_path / 't.jsonl'}" in text
    assert "30 scanned · 20 kept · 10 dropped (min_reward 10)" in text
    assert "111 with tool calls" in text or "with tool calls" in text
    assert "Total reward per session" in text and "█" in text and "░" in text
    assert "Examples per model" in text and "gpt-4o-mini" in text
    assert "every example valid" in text
    quiet = run("--db", FIXTURE_DB, "-o", tmp_path / "q.jsonl", "--quiet")
    assert quiet.stdout == ""


def test_db_from_env_and_several_dbs(tmp_path, fixture_db):
    out = tmp_path / "env.jsonl"
    res = invoke("filter", "-o", out, "--json", env={"SYNTH_TRACES_DB": str(FIXTURE_DIR)})
    assert res.exit_code == 0, res.output
    assert res.json()["examples"]["written"] == 240
    data = stats("--db", FIXTURE_DB, "--db", fixture_db, "-o", tmp_path / "two.jsonl")
    assert data["sessions"]["scanned"] == 60
    assert data["examples"]["written"] == 240 and data["examples"]["duplicates_removed"] == 240


def test_no_examples_is_an_error_and_writes_nothing(tmp_path):
    out = tmp_path / "t.jsonl"
    res = run("--db", FIXTURE_DB, "-o", out, "--min-reward", "100", ok=False)
    assert res.exit_code == 1
    assert "error: no examples match the filters; nothing written" in res.stderr
    assert not out.exists()


def test_output_cannot_be_the_db(fixture_db):
    res = run("--db", fixture_db, "-o", fixture_db, ok=False)
    assert res.exit_code == 1
    assert "is the trace DB being read" in res.stderr


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args, message", [
    (["--since", "yesterday-ish"], "error: --since 'yesterday-ish': not a date/time or a relative span"),
    (["--until", "2025-13-45"], "error: --until '2025-13-45': not a date/time or a relative span"),
    (["--limit", "-3"], "error: --limit: must be >= 1, got -3"),
    (["--limit", "0"], "error: --limit: must be >= 1, got 0"),
    (["--val-fraction", "1.5"], "error: --val-fraction 1.5: must be at least 0 and below 1"),
    (["--val-fraction", "-0.1"], "error: --val-fraction -0.1: must be at least 0 and below 1"),
    (["--mode", "turns"], "error: --mode 'turns': expected calls or sessions"),
    (["--where", "novalue"], "error: --where 'novalue': expected KEY=VALUE"),
    (["--max-cost", "-1"], "error: --max-cost: must be >= 0, got -1.0"),
    (["--min-reward", "lots"], "error: Invalid value for '--min-reward'"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, message):
    res = run("--db", FIXTURE_DB, "-o", tmp_path / "t.jsonl", *args, ok=False)
    assert res.exit_code == 2, res.output
    assert res.stderr.splitlines()[0].startswith(message), res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "t.jsonl").exists()


def test_output_required_and_db_required(tmp_path):
    res = run("--db", FIXTURE_DB, ok=False)
    assert res.exit_code == 2 and res.stderr.startswith("error: --output is required")
    res = run("-o", tmp_path / "t.jsonl", ok=False)
    assert res.exit_code == 2 and res.stderr.startswith("error: no trace DB given")


def test_nonexistent_db_exit_1_and_nothing_created(tmp_path):
    missing = tmp_path / "typo.db"
    out = tmp_path / "t.jsonl"
    res = run_cli("filter", "--db", missing, "-o", out)
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0] == f"error: {missing}: no such file or directory"
    assert "Traceback" not in res.stderr
    assert not missing.exists() and not out.exists()
    assert list(tmp_path.iterdir()) == []
