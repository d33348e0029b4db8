"""Per-event figures stored beside `events` (`_synth_event_figures`, migration m003) give every report
exactly what parsing the call records gives, and are never stale.

The project's writers store, with each `cais` event holding call records, its LLM calls, the records'
exact cost and whether the value is malformed, so `usage`, `traces`, `experiments`, `recent` and
`filter --max-cost` read three numbers instead of parsing every record on every run. These tests hold
the stored figures to the readers' SQL over the JSON (the one definition) on odd records, through every
report, after deletes and updates by other tools, through merges, spools and a libSQL server.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
from pathlib import Path

import pytest

from helpers import invoke
from synth_cli.store import sql
from synth_cli.store.writer import SessionBatch
from synth_cli.tracing.events import EnvironmentEvent
from synth_cli.tracing.models import LLMCallRecord, LLMUsage
from synth_cli.tracing.tracer import SessionTracer

FIGURES = sql.FIGURES_TABLE


def _usage(cost, **extra) -> LLMUsage:
    usage = LLMUsage(input_tokens=10, output_tokens=5, total_tokens=15, cost_usd=cost)
    usage.extra.update(extra)
    return usage


def _record(i: int, cost=0.0004, *, model: str = "gpt-4o-mini", usage: LLMUsage | None | str = "default",
            **extra) -> LLMCallRecord:
    record = LLMCallRecord(call_id=f"c{i}", model_name=model, provider="openai",
                           usage=_usage(cost) if usage == "default" else usage, latency_ms=20 + i)
    record.extra.update(extra)
    return record


#: call records of one event each: the shapes the stored figures must get right
ODD_EVENTS = [
    [_record(0)],                                              # the usual: one record, a sub-cent cost
    [_record(1, 0.25), _record(2, 0.125), _record(3, None)],  # several, one without a cost
    [_record(4, 3)],                                           # an int cost
    [_record(5, usage=None)],                                  # no usage at all
    [_record(6, None)],                                        # usage without a cost
    [_record(7, float("nan"))],                                # NaN: JSON has no NaN
    [_record(8, float("inf"))],
    [_record(9, 2 ** 60)],                                     # an int past a double's exact range
    [_record(10, True)],                                       # a boolean is no cost
    [_record(11, "0.5")],                                      # a numeric string is no cost
    [_record(12, usage=_usage(0.1, cost_usd=0.7))],            # `extra` wins, as to_dict merges it
    [_record(13, 0.1, usage="default", usage_extra=1)],
    [_record(14, 0.1), _record(15, 0.01)],
    [_record(16, 0.5, usage=_usage(0.5))],
    [_record(17, 0.2, usage="default", note="extra field")],
    [{"call_id": "d18", "model_name": "claude", "usage": {"cost_usd": 0.02, "input_tokens": 4}}],  # dicts
    [_record(19, -0.001)],                                     # a refund is a number too
    [_record(20, 1e-12), _record(21, 1e-12), _record(22, 1e-12)],
]


ODD_EVENTS[13][0].extra = {"usage": {"cost_usd": 0.9, "input_tokens": 1}}  # `extra` replaces the usage
ODD_EVENTS[14][0].extra = {"usage": "free"}                                   # ... with something else


def _write(path: Path, events=ODD_EVENTS, *, sessions: int = 3, experiment: str | None = "exp_f") -> None:
    with SessionTracer(path) as tracer:
        if experiment:
            tracer.create_experiment(experiment, "figures")
        for s in range(sessions):
            with tracer.session(session_id=f"sess-{s}", experiment_id=experiment):
                for i, records in enumerate(events):
                    with tracer.timestep(f"step_{i}", turn_number=i):
                        tracer.record_llm_call(records, system_instance_id="agent")
                        tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=float(i % 2)))


def _without_figures(src: Path, dst: Path) -> Path:
    """A copy of `src` as a DB without stored figures reads: every figure parsed from the records."""
    shutil.copyfile(src, dst)
    conn = sqlite3.connect(dst)
    with conn:
        for trigger in ("_synth_event_figures_on_delete", "_synth_event_figures_on_update"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute(f"DROP TABLE {FIGURES}")
    conn.close()
    return dst


def _stored_vs_parsed(db: Path) -> list[tuple]:
    """(event id, stored calls, parsed calls, stored cost, parsed cost, stored malformed, parsed malformed)."""
    x = "e.call_records"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(
            f"SELECT e.id, f.llm_calls, {sql.calls_json_sql(x)}, f.cost_usd, {sql.records_cost_json_sql(x)}, "
            f"f.malformed, {sql.malformed_json_sql(x)} FROM events e JOIN {FIGURES} f ON f.event_id = e.id "
            "ORDER BY e.id").fetchall()
    finally:
        conn.close()


def _assert_stored_equal_parsed(db: Path) -> int:
    rows = _stored_vs_parsed(db)
    for event_id, calls, calls_json, cost, cost_json, malformed, malformed_json in rows:
        assert calls == calls_json, event_id
        assert malformed == malformed_json, event_id
        if cost is None or cost_json is None:
            assert cost is None and cost_json is None, (event_id, cost, cost_json)
        else:
            assert math.isclose(cost, cost_json, rel_tol=0, abs_tol=1e-12), (event_id, cost, cost_json)
    return len(rows)


REPORTS = [
    ("usage", "--json"),
    ("traces", "--json"),
    ("experiments", "--json"),
    ("recent", "--hours", "1000000", "--json"),
    ("experiment", "exp_f", "--json"),
    ("status", "--json"),
]


def _report(args: tuple, db: Path) -> object:
    result = invoke(*args, "--db", str(db))
    assert result.exit_code == 0, (args, result.stderr)
    doc = json.loads(result.stdout)
    return _scrub(doc, str(db))


def _scrub(value, path: str):
    """The report without what names the file (the two DBs differ only in where they are and in size)."""
    if isinstance(value, dict):
        return {k: _scrub(v, path) for k, v in value.items()
                if k not in ("db", "path", "label", "size_bytes", "bytes", "size", "modified", "mtime", "since", "backend")}
    if isinstance(value, list):
        return [_scrub(v, path) for v in value]
    if isinstance(value, str):
        return value.replace(path, "DB")
    return value


def test_every_event_with_records_gets_figures_equal_to_parsing_them(tmp_path):
    db = tmp_path / "t.db"
    _write(db)
    conn = sqlite3.connect(db)
    with_records = conn.execute("SELECT count(*) FROM events WHERE call_records IS NOT NULL").fetchone()[0]
    conn.close()
    assert with_records == 3 * len(ODD_EVENTS)
    # records the tracer knows as objects get figures from Python, the rest (dicts) from SQL: all of them
    assert _assert_stored_equal_parsed(db) == with_records


@pytest.mark.parametrize("args", REPORTS, ids=[a[0] for a in REPORTS])
def test_reports_say_the_same_with_and_without_stored_figures(tmp_path, args):
    db = tmp_path / "t.db"
    _write(db)
    parsed = _without_figures(db, tmp_path / "parsed.db")
    assert _report(args, db) == _report(args, parsed)


def test_filter_max_cost_selects_the_same_sessions(tmp_path):
    from synth_cli.tracing.models import LLMContentPart, LLMMessage

    def message(role: str, text: str) -> LLMMessage:
        return LLMMessage(role=role, parts=[LLMContentPart(type="text", text=text)])

    db = tmp_path / "t.db"
    with SessionTracer(db) as tracer:
        for s in range(6):  # session s costs 0.3 * s in sub-cent calls (its cents column says 0)
            with tracer.session(session_id=f"sess-{s}"):
                for i in range(300 * s + 1):
                    record = _record(i, 0.001 if i else 0.0)
                    record.input_messages = [message("user", f"question {s}.{i}")]
                    record.output_messages = [message("assistant", f"answer {s}.{i}")]
                    tracer.record_llm_call(record)
    parsed = _without_figures(db, tmp_path / "parsed.db")
    outputs = []
    for source in (db, parsed):
        out = tmp_path / f"{source.stem}.jsonl"
        result = invoke("filter", "--db", str(source), "--output", str(out), "--max-cost", "0.7", "--mode", "calls")
        assert result.exit_code == 0, result.stderr
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    assert outputs[0].count(b"\n") == 1 + 301 + 601  # sessions 0-2: 0.0, 0.3, 0.6 USD


def test_a_deleted_event_takes_its_figures_along_and_a_reused_id_gets_none(tmp_path):
    """Another tool deletes the newest events and appends new ones: SQLite gives them the same ids, and
    the stored figures of the deleted events must not be read as theirs."""
    db = tmp_path / "t.db"
    _write(db, sessions=1)
    conn = sqlite3.connect(db)
    with conn:
        last = conn.execute("SELECT max(id) FROM events WHERE call_records IS NOT NULL").fetchone()[0]
        row = conn.execute("SELECT session_id, timestep_id FROM events WHERE id = ?", (last,)).fetchone()
        conn.execute("DELETE FROM events WHERE id >= ?", (last,))
        assert conn.execute(f"SELECT count(*) FROM {FIGURES} WHERE event_id >= ?", (last,)).fetchone()[0] == 0
        # what a writer that knows nothing of the figures appends: the same id, other records
        conn.execute("INSERT INTO events (session_id, timestep_id, event_type, model_name, cost_usd, call_records)"
                     " VALUES (?, ?, 'cais', 'other', 0, ?)",
                     (*row, json.dumps([{"usage": {"cost_usd": 7.0}}, {"usage": {"cost_usd": 2.0}}])))
        assert conn.execute("SELECT max(id) FROM events").fetchone()[0] == last
    conn.close()
    usage = {r["model"]: r for r in json.loads(invoke("usage", "--db", str(db), "--json").stdout)["models"]}
    assert usage["other"]["cost_usd"] == pytest.approx(9.0)
    status = json.loads(invoke("status", "--db", str(db), "--json").stdout)
    parsed = json.loads(invoke("status", "--db", str(_without_figures(db, tmp_path / "p.db")), "--json").stdout)
    assert _scrub(status, str(db)) == _scrub(parsed, str(tmp_path / "p.db"))
    assert status != {}


def test_updated_records_drop_their_stored_figures(tmp_path):
    db = tmp_path / "t.db"
    _write(db, sessions=1)
    conn = sqlite3.connect(db)
    with conn:
        first = conn.execute("SELECT min(id) FROM events WHERE call_records IS NOT NULL").fetchone()[0]
        conn.execute("UPDATE events SET call_records = ? WHERE id = ?",
                     (json.dumps([{"usage": {"cost_usd": 5.0}}]), first))
        assert conn.execute(f"SELECT count(*) FROM {FIGURES} WHERE event_id = ?", (first,)).fetchone()[0] == 0
        conn.execute("UPDATE events SET call_records = 'not json' WHERE id = ?", (first + 2,))  # +2: the next cais
    conn.close()
    parsed = _without_figures(db, tmp_path / "p.db")
    for args in REPORTS:
        assert _report(args, db) == _report(args, parsed), args


def test_a_published_db_gets_figures_for_what_is_appended_only(tmp_path, fixture_db):
    """Opening a published DB to append keeps it quick: its events get no figures (reports parse them),
    the appended ones do, and every report agrees with parsing all."""
    conn = sqlite3.connect(fixture_db)
    before = conn.execute("SELECT max(id) FROM events").fetchone()[0]
    conn.close()
    _write(fixture_db, sessions=1, experiment=None)
    conn = sqlite3.connect(fixture_db)
    assert conn.execute(f"SELECT min(event_id) FROM {FIGURES}").fetchone()[0] > before
    conn.close()
    assert _assert_stored_equal_parsed(fixture_db) == len(ODD_EVENTS)
    parsed = _without_figures(fixture_db, tmp_path / "parsed.db")
    for args in REPORTS[:4]:
        assert _report(args, fixture_db) == _report(args, parsed), args


def test_merged_sessions_get_figures_from_their_records(tmp_path):
    a, b, into = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "into.db"
    _write(a, sessions=2)
    with SessionTracer(b) as tracer:
        with tracer.session(session_id="other"):
            tracer.record_llm_call(_record(99, 0.003))
    result = invoke("traces", "merge", str(a), str(b), "--into", str(into))
    assert result.exit_code == 0, result.stderr
    conn = sqlite3.connect(into)
    with_records = conn.execute("SELECT count(*) FROM events WHERE call_records IS NOT NULL").fetchone()[0]
    conn.close()
    assert _assert_stored_equal_parsed(into) == with_records == 2 * len(ODD_EVENTS) + 1


def test_spooled_batches_keep_their_figures():
    batch = SessionBatch("s", "2026-01-01 00:00:00.000000", None, None, 0, 2, 0,
                         events=[(None, ("cais",)), (None, ("runtime",))], figures=[(1, 0.5), None])
    again = SessionBatch.from_json(json.loads(json.dumps(batch.to_json())))
    assert again.figures == [(1, 0.5), None]
    doc = batch.to_json()
    for odd in ([[1, "0.5"], None], [[1, 0.5]], "x", [[True, 0.5], None]):
        doc["figures"] = odd
        assert SessionBatch.from_json(doc).figures is None  # recomputed from the records


def test_a_libsql_server_gets_the_same_figures(tmp_path, sqld_url):
    from synth_cli.store.reader import TraceStore

    with SessionTracer(sqld_url) as tracer:
        for i, records in enumerate(ODD_EVENTS[:6]):
            with tracer.session(session_id=f"remote-fig-{i}"):
                tracer.record_llm_call(records)
    x = "e.call_records"
    with TraceStore.open(sqld_url) as store:
        rows = list(store.rows(
            f"SELECT f.llm_calls AS calls, {sql.calls_json_sql(x)} AS calls_json, f.cost_usd AS cost, "
            f"{sql.records_cost_json_sql(x)} AS cost_json FROM events e JOIN {FIGURES} f ON f.event_id = e.id "
            "WHERE e.session_id LIKE 'remote-fig-%'"))
    assert len(rows) == 6
    for r in rows:
        assert r["calls"] == r["calls_json"]
        assert (r["cost"] is None and r["cost_json"] is None) or math.isclose(r["cost"], r["cost_json"],
                                                                              abs_tol=1e-12)
