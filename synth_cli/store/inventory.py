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
    """Counts, tokens, cost, activity span and per-system event counts of one DB (2 queries)."""
    schema = store.schema
    summary = DbSummary(db=label or store.label, kind=store.kind, schema=schema_name(schema),
                        call_records=schema.has_call_records)

    # 1. table counts and the sessions' time span
    parts = ["(SELECT COUNT(*) FROM session_traces) AS sessions"]
    created = col(schema, "session_traces", "created_at")
    parts.append(f"(SELECT MIN({created}) FROM session_traces) AS first_session")
    parts.append(f"(SELECT MAX({created}) FROM session_traces) AS last_session")
    for name, table in (("experiments", "experiments"), ("messages", "messages"), ("timesteps", "session_timesteps")):
        parts.append(f"(SELECT COUNT(*) FROM {table}) AS {name}" if has(schema, table) else f"NULL AS {name}")
    row = store.one("SELECT " + ", ".join(parts))
    summary.sessions = as_int(row["sessions"])
    summary.experiments = opt_int(row["experiments"])
    summary.messages = opt_int(row["messages"])
    summary.timesteps = opt_int(row["timesteps"])

    # 2. one pass over events: counts per (type, system), with LLM calls, tokens and cost of the cais
    # ones. The per-row figures are computed in a subquery SQLite does not flatten (LIMIT -1), so the
    # GROUP BY sorts small values and not the call_records blobs.
    inp, out, total = tokens_sql(schema)
    calls = calls_sql(schema, figures=True) or "NULL"
    malformed = malformed_records_sql(schema, figures=True)
    system = col(schema, "events", "system_instance_id", "e")
    cais = "e.event_type = 'cais'"
    sql = f"""
SELECT event_type, system, COUNT(*) AS n, SUM(calls) AS calls, SUM(malformed) AS malformed,
       SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, SUM(total_tokens) AS total_tokens,
       SUM(cost_usd) AS cost_usd, MIN(created) AS first_event, MAX(created) AS last_event
FROM (SELECT e.event_type AS event_type, {system} AS system,
             CASE WHEN {cais} THEN {calls} END AS calls, CASE WHEN {cais} THEN {malformed} END AS malformed,
             CASE WHEN {cais} THEN {inp} END AS input_tokens, CASE WHEN {cais} THEN {out} END AS output_tokens,
             CASE WHEN {cais} THEN {total} END AS total_tokens,
             CASE WHEN {cais} THEN {cost_usd_sql(schema, figures=True)} END AS cost_usd,
             {col(schema, "events", "created_at", "e")} AS created
      FROM events e{figures_join(schema)} LIMIT -1)
GROUP BY event_type, system"""
    firsts: list[Any] = [row["first_session"]]
    lasts: list[Any] = [row["last_session"]]
    llm_calls = 0
    cost: float | None = None
    systems: dict[Any, dict[str, Any]] = {}
    for r in store.rows(sql):
        etype, n = str(r["event_type"]), as_int(r["n"])
        summary.events += n
        summary.events_by_type[etype] = summary.events_by_type.get(etype, 0) + n
        firsts.append(r["first_event"])
        lasts.append(r["last_event"])
        if schema.has("events", "system_instance_id"):
            entry = systems.setdefault(r["system"], {"system": r["system"], "events": 0, "event_types": {}})
            entry["events"] += n
            entry["event_types"][etype] = entry["event_types"].get(etype, 0) + n
        if etype == "cais":
            llm_calls += as_int(r["calls"])
            summary.malformed_call_records += as_int(r["malformed"])
            summary.input_tokens += as_int(r["input_tokens"])
            summary.output_tokens += as_int(r["output_tokens"])
            summary.total_tokens += as_int(r["total_tokens"])
            if r["cost_usd"] is not None:
                cost = (cost or 0.0) + float(r["cost_usd"])
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
