"""What a trace DB holds: the `traces` inventory and the `status` totals.

Never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterable, Sequence

from synth_cli.store.reader import TraceStore
from synth_cli.store.sql import (
    EVENT_TYPES,
    as_int,
    as_usd,
    calls_sql,
    col,
    cost_usd_sql,
    earliest,
    figures_join,
    has,
    latest,
    malformed_records_sql,
    opt_int,
    schema_name,
    tokens_sql,
)


@dataclass
class DbSummary:
    """What one trace DB holds (the `traces` and `status` rows)."""

    db: str
    kind: str
    schema: str
    call_records: bool
    sessions: int = 0
    experiments: int | None = None
    events: int = 0
    events_by_type: dict[str, int] = field(default_factory=dict)
    messages: int | None = None
    timesteps: int | None = None
    llm_calls: int | None = None
    malformed_call_records: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float | None = None
    first_activity: datetime | None = None
    last_activity: datetime | None = None
    size_bytes: int | None = None
    systems: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db, "kind": self.kind, "schema": self.schema, "call_records": self.call_records,
            "sessions": self.sessions, "experiments": self.experiments, "events": self.events,
            "events_by_type": self.events_by_type, "messages": self.messages, "timesteps": self.timesteps,
            "llm_calls": self.llm_calls, "malformed_call_records": self.malformed_call_records,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens, "cost_usd": self.cost_usd,
            "first_activity": self.first_activity, "last_activity": self.last_activity,
            "size_bytes": self.size_bytes, "systems": self.systems,
        }


def summarize(store: TraceStore, *, label: str | None = None) -> DbSummary:
    """Counts, tokens, cost, activity span and per-system event counts of one DB (3 queries)."""
    schema = store.schema
    summary = DbSummary(db=label or store.label, kind=store.kind, schema=schema_name(schema),
                        call_records=schema.has_call_records)

    # 1. table counts and the sessions' and events' time span
    parts = ["(SELECT COUNT(*) FROM session_traces) AS sessions"]
    created = col(schema, "session_traces", "created_at")
    parts.append(f"(SELECT MIN({created}) FROM session_traces) AS first_session")
    parts.append(f"(SELECT MAX({created}) FROM session_traces) AS last_session")
    for name, table in (("experiments", "experiments"), ("messages", "messages"), ("timesteps", "session_timesteps")):
        parts.append(f"(SELECT COUNT(*) FROM {table}) AS {name}" if has(schema, table) else f"NULL AS {name}")
    event_created = col(schema, "events", "created_at")  # by its index, where there is one
    parts.append(f"(SELECT MIN({event_created}) FROM events) AS first_event")
    parts.append(f"(SELECT MAX({event_created}) FROM events) AS last_event")
    row = store.one("SELECT " + ", ".join(parts))
    summary.sessions = as_int(row["sessions"])
    summary.experiments = opt_int(row["experiments"])
    summary.messages = opt_int(row["messages"])
    summary.timesteps = opt_int(row["timesteps"])

    # 2. the events: counts per (type, system) in one pass (no GROUP BY sort of anything wider than
    # the two names: a sorter carrying every figure cost ~40% of the query); the cais events' LLM
    # calls, tokens and cost summed with no GROUP BY (SQLite reaches them by the event_type index),
    # their per-row figures in a subquery SQLite does not flatten (LIMIT -1), so no blob is copied.
    inp, out, total = tokens_sql(schema)
    calls = calls_sql(schema, figures=True) or "NULL"
    malformed = malformed_records_sql(schema, figures=True)
    system = col(schema, "events", "system_instance_id", "e")
    cais = store.one(f"""
SELECT SUM(calls) AS calls, SUM(malformed) AS malformed, SUM(input_tokens) AS input_tokens,
       SUM(output_tokens) AS output_tokens, SUM(total_tokens) AS total_tokens, SUM(cost_usd) AS cost_usd
FROM (SELECT {calls} AS calls, {malformed} AS malformed, {inp} AS input_tokens, {out} AS output_tokens,
             {total} AS total_tokens, {cost_usd_sql(schema, figures=True)} AS cost_usd
      FROM events e{figures_join(schema)} WHERE e.event_type = 'cais' LIMIT -1)""")
    firsts: list[Any] = [row["first_session"], row["first_event"]]
    lasts: list[Any] = [row["last_session"], row["last_event"]]
    systems: dict[Any, dict[str, Any]] = {}
    for r in store.rows(f"SELECT e.event_type AS event_type, {system} AS system, COUNT(*) AS n "
                        f"FROM events e NOT INDEXED GROUP BY 1, 2"):
        etype, n = str(r["event_type"]), as_int(r["n"])
        summary.events += n
        summary.events_by_type[etype] = summary.events_by_type.get(etype, 0) + n
        if schema.has("events", "system_instance_id"):
            entry = systems.setdefault(r["system"], {"system": r["system"], "events": 0, "event_types": {}})
            entry["events"] += n
            entry["event_types"][etype] = entry["event_types"].get(etype, 0) + n
    llm_calls = as_int(cais["calls"])
    summary.malformed_call_records = as_int(cais["malformed"])
    summary.input_tokens = as_int(cais["input_tokens"])
    summary.output_tokens = as_int(cais["output_tokens"])
    summary.total_tokens = as_int(cais["total_tokens"])
    cost: float | None = None if cais["cost_usd"] is None else float(cais["cost_usd"])
    for etype in EVENT_TYPES:
        summary.events_by_type.setdefault(etype, 0)
    summary.events_by_type = dict(sorted(summary.events_by_type.items()))
    summary.llm_calls = llm_calls if schema.has_call_records else None
    summary.cost_usd = as_usd(cost if cost is not None else 0.0)
    summary.first_activity = earliest(*firsts)
    summary.last_activity = latest(*lasts)
    summary.systems = sorted(systems.values(), key=lambda e: (-e["events"], e["system"] or ""))
    summary.size_bytes = store.size_bytes()
    return summary


def by_activity(summaries: Iterable[DbSummary]) -> list[DbSummary]:
    """Most recently active first (DBs without activity last), then by name."""
    return sorted(summaries, key=lambda s: (s.last_activity is None,
                                            -(s.last_activity.timestamp() if s.last_activity else 0), s.db))


def totals(summaries: Sequence[DbSummary]) -> dict[str, Any]:
    """The figures of several DBs added up (the `traces` and `status` totals)."""
    costs = [s.cost_usd for s in summaries if s.cost_usd is not None]
    return {
        "dbs": len(summaries),
        "sessions": sum(s.sessions for s in summaries),
        "experiments": sum(s.experiments or 0 for s in summaries),
        "events": sum(s.events for s in summaries),
        "messages": sum(s.messages or 0 for s in summaries),
        "llm_calls": sum(s.llm_calls or 0 for s in summaries),
        "input_tokens": sum(s.input_tokens for s in summaries),
        "output_tokens": sum(s.output_tokens for s in summaries),
        "total_tokens": sum(s.total_tokens for s in summaries),
        "cost_usd": as_usd(sum(costs)) if costs else None,
        "size_bytes": sum(s.size_bytes or 0 for s in summaries),
        "malformed_call_records": sum(s.malformed_call_records for s in summaries),
    }


def merge_systems(groups: Iterable[tuple[str, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    """Per-system counts across DBs: `[(db_label, DbSummary.systems), …]` → one list with `dbs`."""
    merged: dict[str | None, dict[str, Any]] = {}
    for db, systems in groups:
        for entry in systems:
            target = merged.setdefault(entry["system"], {"system": entry["system"], "events": 0,
                                                         "event_types": {}, "dbs": []})
            target["events"] += entry["events"]
            for etype, n in entry["event_types"].items():
                target["event_types"][etype] = target["event_types"].get(etype, 0) + n
            if db not in target["dbs"]:
                target["dbs"].append(db)
    return sorted(merged.values(), key=lambda e: (-e["events"], e["system"] or ""))
