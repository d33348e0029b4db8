"""Helpers for the inspection tests: DB variants built with plain sqlite3, and figures computed
independently of `synth_cli.store` (plain SQL + json in Python)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

from . import FIXTURE_DB


def copy_fixture(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_DB, dest)
    return dest


def sqld_dir(root: Path, name: str = "default") -> Path:
    """A fixture copy in sqld layout: ROOT/dbs/<name>/data (returns ROOT)."""
    copy_fixture(root / "dbs" / name / "data")
    return root


def make_earlier_schema(db: Path) -> Path:
    """Rebuild `events` without `call_records` (the tracing_v3 schema before that column)."""
    conn = sqlite3.connect(db)
    cols = [r[1] for r in conn.execute("PRAGMA table_info(events)") if r[1] != "call_records"]
    views = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'view'")]
    with conn:
        for view in views:
            conn.execute(f'DROP VIEW "{view}"')
        conn.execute(f"CREATE TABLE events_old AS SELECT {', '.join(cols)} FROM events")
        conn.execute("DROP TABLE events")
        conn.execute("ALTER TABLE events_old RENAME TO events")
    conn.execute("VACUUM")
    conn.close()
    return db


def break_call_records(db: Path, values: list[str]) -> list[tuple[int, str]]:
    """Overwrite the call_records of the first len(values) cais events; returns [(event id, session id)]."""
    conn = sqlite3.connect(db)
    rows = conn.execute("SELECT id, session_id FROM events WHERE event_type = 'cais' ORDER BY id LIMIT ?",
                        (len(values),)).fetchall()
    with conn:
        for (event_id, _), value in zip(rows, values):
            conn.execute("UPDATE events SET call_records = ? WHERE id = ?", (value, event_id))
    conn.close()
    return rows


def make_old_timestamps(db: Path) -> Path:
    """Move every timestamp to 2001 (nothing is 'recent' any more)."""
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE session_traces SET created_at = '2001-01-01 00:00:00'")
        conn.execute("UPDATE events SET created_at = '2001-01-01 00:00:00'")
    conn.close()
    return db


def truth(db: Path = FIXTURE_DB) -> dict:
    """Figures of a fixture-shaped DB, computed without the code under test."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    per_model: dict[str, dict] = {}
    tool_calls = 0
    calls = 0
    for model, provider, inp, out, total, latency, records in conn.execute(
            "SELECT model_name, provider, input_tokens, output_tokens, total_tokens, latency_ms, call_records "
            "FROM events WHERE event_type = 'cais'"):
        entry = per_model.setdefault(model, {"provider": provider, "calls": 0, "input_tokens": 0, "output_tokens": 0,
                                             "total_tokens": 0, "cost_usd": 0.0, "latency": 0})
        entry["calls"] += 1
        entry["input_tokens"] += inp
        entry["output_tokens"] += out
        entry["total_tokens"] += total
        entry["latency"] += latency
        for record in json.loads(records):
            calls += 1
            entry["cost_usd"] += record["usage"]["cost_usd"]
            tool_calls += len(record["output_tool_calls"])
    rewards = dict(conn.execute("SELECT session_id, SUM(reward) FROM events WHERE event_type = 'environment' "
                                "GROUP BY session_id").fetchall())
    conn.close()
    return {"per_model": per_model, "calls": calls, "tool_calls": tool_calls, "rewards": rewards,
            "total_tokens": sum(m["total_tokens"] for m in per_model.values()),
            "cost_usd": sum(m["cost_usd"] for m in per_model.values())}
