"""The SQL behind the inspection commands (`traces`, `session`, `experiments`, `experiment`,
`recent`, `usage`, `status`).

Every figure is aggregated by the database, one query per group of figures and never
one query per session; results come back as plain dataclasses and dicts. Queries adapt
to the schema they find: the current `tracing_v3` one (LLM calls as `LLMCallRecord`
arrays in `events.call_records`) and the earlier one without that column, where LLM
calls are reported as unavailable (None) while the `cais` event columns still count.

Conventions used throughout:

* `events.cost_usd` holds whole cents, truncated by the writer. A `cais` event's cost is
  the sum of its call records' `usage.cost_usd` (exact) when they report one, else
  `cost_usd / 100`. Costs are rounded to 9 decimals so sums agree between SQLite builds.
* A `call_records` value that is not a JSON array (or object) is malformed: it is skipped
  and counted (`malformed_call_records`), never fatal.
* Timestamps come back as naive `datetime`s (UTC as the tracer stores them).

This module never prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from synth_cli.errors import TraceStoreError, UsageError
from synth_cli.tracing.models import LLMCallRecord, parse_call_records, parse_datetime
from synth_cli.tracing.store import SQLITE_MAGIC, Schema, TraceStore

EVENT_TYPES = ("cais", "environment", "runtime")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
#: candidates listed in an "ambiguous ID" error
MAX_CANDIDATES = 8
#: rows of `events` per page when a session's events are streamed from a libSQL server
EVENT_PAGE_SIZE = 100


# --------------------------------------------------------------------------- discovery


def find_dbs(root: str | os.PathLike) -> list[Path]:
    """Trace DBs under `root` (not recursive beyond the sqld layout), sorted by path.

    * `root/<name>/data`: the sqld layout's `X.db/dbs/<name>/data` when root is `X.db/dbs`;
    * `root/dbs/<name>/data` and `root/<X.db>/dbs/<name>/data`: root is `X.db` or holds several;
    * `root/*.db|*.sqlite|*.sqlite3` files that start with the SQLite header.

    A root that does not exist raises TraceStoreError; nothing is created.
    """
    base = Path(root).expanduser()
    if not base.exists():
        raise TraceStoreError(f"{base}: no such directory",
                              hint="pass --root DIR (a directory of trace DBs) or --db PATH")
    if not base.is_dir():
        raise TraceStoreError(f"{base}: not a directory", hint=f"to read one DB, use --db {base}")
    found: list[Path] = []
    for pattern in ("*/data", "dbs/*/data", "*/dbs/*/data"):
        found.extend(p for p in base.glob(pattern) if p.is_file())
    for child in base.iterdir():
        if child.is_file() and child.suffix.lower() in SQLITE_SUFFIXES and _has_sqlite_header(child):
            found.append(child)
    unique = {p.resolve(): p for p in found}
    return sorted(unique.values(), key=lambda p: str(p))


def _has_sqlite_header(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def db_display_name(path: Path, root: Path) -> str:
    """`default` for root/default/data; the file name for plain files (relative to root)."""
    try:
        rel = path.relative_to(root)
    except ValueError:
        return str(path)
    parts = rel.parts
    if parts and parts[-1] == "data" and len(parts) >= 2:
        parts = parts[:-1]
    return "/".join(parts)


def target_key(target: str | os.PathLike) -> str:
    """Identity of a target for de-duplication (resolved path, or the URL as given)."""
    text = os.fspath(target)
    from synth_cli.tracing.store import is_remote, resolve_local_path

    if is_remote(text):
        return text.rstrip("/")
    try:
        return str(resolve_local_path(text).resolve())
    except TraceStoreError:
        return text


# --------------------------------------------------------------------------- SQL helpers


def _has(schema: Schema, table: str, column: str | None = None) -> bool:
    return schema.has(table, column)


def _col(schema: Schema, table: str, column: str, alias: str = "", default: str = "NULL") -> str:
    if not schema.has(table, column):
        return default
    return f"{alias}.{column}" if alias else column


def malformed_records_sql(column: str) -> str:
    """1 when a non-NULL `call_records` value is not a JSON array/object, else 0."""
    return (f"CASE WHEN {column} IS NULL THEN 0 WHEN NOT json_valid({column}) THEN 1 "
            f"WHEN json_type({column}) IN ('array', 'object') THEN 0 ELSE 1 END")


def calls_sql(schema: Schema, alias: str = "e") -> str | None:
    """Number of call records (JSON objects) of one event; None when the schema has no call_records.

    The usual one-record array takes a fast path: SQLite caches the parse of a value across
    the JSON functions of a row, while `json_each` walks it again (3x slower on big DBs).
    """
    if not schema.has_call_records:
        return None
    x = f"{alias}.call_records"
    return (f"(CASE WHEN json_valid({x}) THEN CASE json_type({x}) "
            f"WHEN 'array' THEN CASE json_array_length({x}) WHEN 0 THEN 0 "
            f"WHEN 1 THEN (json_type({x}, '$[0]') = 'object') "
            f"ELSE (SELECT COUNT(*) FROM json_each({x}) j WHERE j.type = 'object') END "
            f"WHEN 'object' THEN 1 ELSE 0 END ELSE 0 END)")


def cost_usd_sql(schema: Schema, alias: str = "e") -> str:
    """One event's cost in USD: the records' exact usage.cost_usd, else the cents column / 100."""
    cents = f"{alias}.cost_usd / 100.0" if schema.has("events", "cost_usd") else "NULL"
    if not schema.has_call_records:
        return cents
    x = f"{alias}.call_records"
    exact = (f"(CASE WHEN json_valid({x}) THEN CASE json_type({x}) "
             f"WHEN 'array' THEN CASE json_array_length({x}) WHEN 0 THEN NULL "
             f"WHEN 1 THEN json_extract({x}, '$[0].usage.cost_usd') "
             f"ELSE (SELECT SUM(CASE WHEN j.type = 'object' THEN json_extract(j.value, '$.usage.cost_usd') END) "
             f"FROM json_each({x}) j) END "
             f"WHEN 'object' THEN json_extract({x}, '$.usage.cost_usd') END END)")
    return f"COALESCE({exact}, {cents})"


def tokens_sql(schema: Schema, alias: str = "e") -> tuple[str, str, str]:
    """(input, output, total) token expressions; total falls back to input + output."""
    inp = _col(schema, "events", "input_tokens", alias)
    out = _col(schema, "events", "output_tokens", alias)
    total = _col(schema, "events", "total_tokens", alias)
    if total == "NULL":
        total = f"({inp} + {out})" if "NULL" not in (inp, out) else "NULL"
    elif "NULL" not in (inp, out):
        total = f"COALESCE({total}, {inp} + {out})"
    return inp, out, total


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _opt_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def _usd(value: Any) -> float | None:
    return None if value is None else round(float(value), 9)


def _dt(value: Any) -> datetime | None:
    parsed = parse_datetime(value)
    if parsed is not None and parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def _latest(*values: Any) -> datetime | None:
    parsed = [d for d in (_dt(v) for v in values) if d is not None]
    return max(parsed) if parsed else None


def _earliest(*values: Any) -> datetime | None:
    parsed = [d for d in (_dt(v) for v in values) if d is not None]
    return min(parsed) if parsed else None


def _json_obj(text: Any) -> Any:
    if text is None or text == "":
        return None
    if not isinstance(text, (str, bytes)):
        return text
    from synth_cli._json import loads

    try:
        return loads(text)
    except ValueError:
        return text


def schema_name(schema: Schema) -> str:
    return "tracing_v3" if schema.has_call_records else "tracing_v3 (no call_records)"


def cutoff_sql_value(when: datetime) -> str:
    """A naive-UTC datetime as the text SQLite's julianday() reads."""
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when.isoformat(sep=" ")


# --------------------------------------------------------------------------- inventory


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
            "traces": self.sessions, "experiments": self.experiments, "events": self.events,
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
    created = _col(schema, "session_traces", "created_at")
    parts.append(f"(SELECT MIN({created}) FROM session_traces) AS first_session")
    parts.append(f"(SELECT MAX({created}) FROM session_traces) AS last_session")
    for name, table in (("experiments", "experiments"), ("messages", "messages"), ("timesteps", "session_timesteps")):
        parts.append(f"(SELECT COUNT(*) FROM {table}) AS {name}" if _has(schema, table) else f"NULL AS {name}")
    row = store.one("SELECT " + ", ".join(parts))
    summary.sessions = _int(row["sessions"])
    summary.experiments = _opt_int(row["experiments"])
    summary.messages = _opt_int(row["messages"])
    summary.timesteps = _opt_int(row["timesteps"])

    # 2. one pass over events: counts per (type, system), with LLM calls, tokens and cost of the cais
    # ones. The per-row figures are computed in a subquery SQLite does not flatten (LIMIT -1), so the
    # GROUP BY sorts small values and not the call_records blobs.
    inp, out, total = tokens_sql(schema)
    calls = calls_sql(schema) or "NULL"
    malformed = malformed_records_sql("e.call_records") if schema.has_call_records else "0"
    system = _col(schema, "events", "system_instance_id", "e")
    cais = "e.event_type = 'cais'"
    sql = f"""
SELECT event_type, system, COUNT(*) AS n, SUM(calls) AS calls, SUM(malformed) AS malformed,
       SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens, SUM(total_tokens) AS total_tokens,
       SUM(cost_usd) AS cost_usd, MIN(created) AS first_event, MAX(created) AS last_event
FROM (SELECT e.event_type AS event_type, {system} AS system,
             CASE WHEN {cais} THEN {calls} END AS calls, CASE WHEN {cais} THEN {malformed} END AS malformed,
             CASE WHEN {cais} THEN {inp} END AS input_tokens, CASE WHEN {cais} THEN {out} END AS output_tokens,
             CASE WHEN {cais} THEN {total} END AS total_tokens,
             CASE WHEN {cais} THEN {cost_usd_sql(schema)} END AS cost_usd,
             {_col(schema, "events", "created_at", "e")} AS created
      FROM events e LIMIT -1)
GROUP BY event_type, system"""
    firsts: list[Any] = [row["first_session"]]
    lasts: list[Any] = [row["last_session"]]
    llm_calls = 0
    cost: float | None = None
    systems: dict[Any, dict[str, Any]] = {}
    for r in store.rows(sql):
        etype, n = str(r["event_type"]), _int(r["n"])
        summary.events += n
        summary.events_by_type[etype] = summary.events_by_type.get(etype, 0) + n
        firsts.append(r["first_event"])
        lasts.append(r["last_event"])
        if schema.has("events", "system_instance_id"):
            entry = systems.setdefault(r["system"], {"system": r["system"], "events": 0, "event_types": {}})
            entry["events"] += n
            entry["event_types"][etype] = entry["event_types"].get(etype, 0) + n
        if etype == "cais":
            llm_calls += _int(r["calls"])
            summary.malformed_call_records += _int(r["malformed"])
            summary.input_tokens += _int(r["input_tokens"])
            summary.output_tokens += _int(r["output_tokens"])
            summary.total_tokens += _int(r["total_tokens"])
            if r["cost_usd"] is not None:
                cost = (cost or 0.0) + float(r["cost_usd"])
    for etype in EVENT_TYPES:
        summary.events_by_type.setdefault(etype, 0)
    summary.events_by_type = dict(sorted(summary.events_by_type.items()))
    summary.llm_calls = llm_calls if schema.has_call_records else None
    summary.cost_usd = _usd(cost if cost is not None else 0.0)
    summary.first_activity = _earliest(*firsts)
    summary.last_activity = _latest(*lasts)
    summary.systems = sorted(systems.values(), key=lambda e: (-e["events"], e["system"] or ""))
    summary.size_bytes = store.size_bytes()
    return summary


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


# --------------------------------------------------------------------------- experiments


@dataclass
class ExperimentRow:
    experiment_id: str | None
    name: str | None
    description: str | None
    created_at: datetime | None
    sessions: int
    events: int
    messages: int | None
    llm_calls: int | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    first_activity: datetime | None
    last_activity: datetime | None
    db: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _session_aggregates_cte(schema: Schema, *, session_filter: str = "") -> str:
    """`ev` (per-session event figures) and `msg` (messages per session) CTE bodies.

    `session_filter` restricts both to some sessions; `{alias}` in it names the table alias.
    """
    inp, out, total = tokens_sql(schema)
    calls = calls_sql(schema)
    reward = _col(schema, "events", "reward", "e")
    created = _col(schema, "events", "created_at", "e")
    term = _col(schema, "events", "terminated", "e")
    model = _col(schema, "events", "model_name", "e")
    where = f"WHERE {session_filter.format(alias='e')}" if session_filter else ""
    ev = f"""ev AS (
  SELECT e.session_id AS session_id, COUNT(*) AS events,
         SUM(CASE WHEN e.event_type = 'cais' THEN 1 ELSE 0 END) AS lm_events,
         SUM(CASE WHEN e.event_type = 'cais' THEN {calls or 'NULL'} END) AS llm_calls,
         SUM(CASE WHEN e.event_type = 'cais' THEN {inp} END) AS input_tokens,
         SUM(CASE WHEN e.event_type = 'cais' THEN {out} END) AS output_tokens,
         SUM(CASE WHEN e.event_type = 'cais' THEN {total} END) AS total_tokens,
         SUM(CASE WHEN e.event_type = 'cais' THEN {cost_usd_sql(schema)} END) AS cost_usd,
         SUM(CASE WHEN e.event_type = 'environment' THEN {reward} END) AS reward,
         MAX(CASE WHEN e.event_type = 'environment' THEN {term} END) AS terminated,
         GROUP_CONCAT(DISTINCT CASE WHEN e.event_type = 'cais' THEN {model} END) AS models,
         MIN({created}) AS first_event, MAX({created}) AS last_event
  FROM events e {where} GROUP BY e.session_id)"""
    if _has(schema, "messages"):
        msg_where = f"WHERE {session_filter.format(alias='m')}" if session_filter else ""
        msg = f"msg AS (SELECT m.session_id AS session_id, COUNT(*) AS messages FROM messages m {msg_where} " \
              f"GROUP BY m.session_id)"
    else:
        msg = "msg AS (SELECT NULL AS session_id, NULL AS messages WHERE 0)"
    return ev + ",\n" + msg


def experiments(store: TraceStore, *, limit: int | None = None, active_since: datetime | None = None
                ) -> tuple[list[ExperimentRow], int]:
    """Experiments with their sessions' figures, most recently active first; (rows, total before limit).

    Sessions without an experiment (or naming one missing from `experiments`) form their own
    rows. With `active_since`, only sessions created or with events at/after it count, and
    experiments without such sessions are left out (`recent`).
    """
    schema = store.schema
    has_exp_table = _has(schema, "experiments", "experiment_id")
    s_exp = _col(schema, "session_traces", "experiment_id", "s")
    s_created = _col(schema, "session_traces", "created_at", "s")
    params: list[Any] = []
    active = ""
    if active_since is not None:
        cutoff = cutoff_sql_value(active_since)
        active = (f"WHERE julianday({s_created}) >= julianday(?) "
                  f"OR julianday(ev.last_event) >= julianday(?)")
        params.extend([cutoff, cutoff])
    sess = f"""sess AS (
  SELECT {s_exp} AS experiment_id, COUNT(*) AS sessions, SUM(ev.events) AS events, SUM(msg.messages) AS messages,
         SUM(ev.llm_calls) AS llm_calls, SUM(ev.input_tokens) AS input_tokens,
         SUM(ev.output_tokens) AS output_tokens, SUM(ev.total_tokens) AS total_tokens,
         SUM(ev.cost_usd) AS cost_usd, MIN({s_created}) AS first_session, MAX({s_created}) AS last_session,
         MIN(ev.first_event) AS first_event, MAX(ev.last_event) AS last_event
  FROM session_traces s LEFT JOIN ev ON ev.session_id = s.session_id
       LEFT JOIN msg ON msg.session_id = s.session_id
  {active}
  GROUP BY {s_exp})"""
    figures = ("sess.sessions, sess.events, sess.messages, sess.llm_calls, sess.input_tokens, sess.output_tokens, "
               "sess.total_tokens, sess.cost_usd, sess.first_session, sess.last_session, sess.first_event, "
               "sess.last_event")
    if has_exp_table:
        x_name = _col(schema, "experiments", "name", "x")
        x_desc = _col(schema, "experiments", "description", "x")
        x_created = _col(schema, "experiments", "created_at", "x")
        join = "JOIN" if active_since is not None else "LEFT JOIN"
        body = f"""
SELECT x.experiment_id AS experiment_id, {x_name} AS name, {x_desc} AS description, {x_created} AS created_at,
       {figures}
FROM experiments x {join} sess ON sess.experiment_id = x.experiment_id
UNION ALL
SELECT sess.experiment_id, NULL, NULL, NULL, {figures}
FROM sess WHERE sess.experiment_id IS NULL
             OR sess.experiment_id NOT IN (SELECT experiment_id FROM experiments)"""
    else:
        body = f"SELECT sess.experiment_id AS experiment_id, NULL AS name, NULL AS description, " \
               f"NULL AS created_at, {figures} FROM sess"
    sql = f"""WITH {_session_aggregates_cte(schema)},
{sess}
SELECT *, COUNT(*) OVER () AS total_rows FROM ({body}) AS t
ORDER BY MAX(COALESCE(julianday(t.last_event), 0), COALESCE(julianday(t.last_session), 0),
             COALESCE(julianday(t.created_at), 0)) DESC, t.name, t.experiment_id"""
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    rows: list[ExperimentRow] = []
    total = 0
    has_msgs = _has(schema, "messages")
    for r in store.rows(sql, params):
        total = _int(r["total_rows"])
        rows.append(ExperimentRow(
            experiment_id=r["experiment_id"], name=r["name"], description=r["description"],
            created_at=_dt(r["created_at"]), sessions=_int(r["sessions"]), events=_int(r["events"]),
            messages=_int(r["messages"]) if has_msgs else None,
            llm_calls=_int(r["llm_calls"]) if schema.has_call_records else None,
            input_tokens=_int(r["input_tokens"]), output_tokens=_int(r["output_tokens"]),
            total_tokens=_int(r["total_tokens"]), cost_usd=_usd(r["cost_usd"] or 0.0),
            first_activity=_earliest(r["first_session"], r["first_event"]),
            last_activity=_latest(r["last_session"], r["last_event"]), db=store.label))
    return rows, total


def recent(store: TraceStore, hours: float, *, now: datetime | None = None) -> list[ExperimentRow]:
    """Experiments with sessions active in the last `hours` hours (figures of those sessions only)."""
    if hours <= 0:
        raise UsageError(f"--hours {hours:g}: must be greater than 0")
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    rows, _ = experiments(store, active_since=now - timedelta(hours=hours))
    return rows


# --------------------------------------------------------------------------- one experiment


@dataclass
class SessionRow:
    session_id: str
    created_at: datetime | None
    steps: int
    events: int
    messages: int | None
    llm_calls: int | None
    reward: float | None
    terminated: bool | None
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float | None
    models: list[str]
    metadata: Any
    last_activity: datetime | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def resolve_experiment(stores: Sequence[TraceStore], ident: str) -> tuple[TraceStore, dict[str, Any]]:
    """Find an experiment by exact id, exact name, or unique id/name prefix across `stores`."""
    exact: list[tuple[TraceStore, dict[str, Any]]] = []
    prefix: list[tuple[TraceStore, dict[str, Any]]] = []
    for store in stores:
        schema = store.schema
        if _has(schema, "experiments", "experiment_id"):
            name = _col(schema, "experiments", "name")
            desc = _col(schema, "experiments", "description")
            created = _col(schema, "experiments", "created_at")
            sql = (f"SELECT experiment_id, {name} AS name, {desc} AS description, {created} AS created_at "
                   f"FROM experiments WHERE experiment_id = ? OR {name} = ? "
                   f"OR lower(substr(experiment_id, 1, length(?))) = lower(?) "
                   f"OR lower(substr({name}, 1, length(?))) = lower(?) ORDER BY experiment_id LIMIT 50")
            for r in store.rows(sql, [ident, ident, ident, ident, ident, ident]):
                info = {"experiment_id": r["experiment_id"], "name": r["name"], "description": r["description"],
                        "created_at": _dt(r["created_at"]), "db": store.label}
                (exact if ident in (r["experiment_id"], r["name"]) else prefix).append((store, info))
        elif _has(schema, "session_traces", "experiment_id"):
            for r in store.rows("SELECT DISTINCT experiment_id FROM session_traces WHERE experiment_id = ? "
                                "OR lower(substr(experiment_id, 1, length(?))) = lower(?) LIMIT 50",
                                [ident, ident, ident]):
                info = {"experiment_id": r["experiment_id"], "name": None, "description": None,
                        "created_at": None, "db": store.label}
                (exact if r["experiment_id"] == ident else prefix).append((store, info))
    matches = exact or prefix
    if len(matches) == 1:
        return matches[0]
    if not matches:
        known = []
        for store in stores:
            rows, _ = experiments(store, limit=MAX_CANDIDATES)
            known.extend(r.name or r.experiment_id or "(none)" for r in rows if r.experiment_id)
        where = stores[0].label if len(stores) == 1 else f"{len(stores)} DBs"
        hint = ("experiments: " + ", ".join(known[:MAX_CANDIDATES])) if known else "this DB has no experiments"
        raise TraceStoreError(f"no experiment {ident!r} in {where}", hint=hint)
    listed = ", ".join(f"{m['experiment_id']} ({m['name']})" if m["name"] else str(m["experiment_id"])
                       for _, m in matches[:MAX_CANDIDATES])
    more = f" and {len(matches) - MAX_CANDIDATES} more" if len(matches) > MAX_CANDIDATES else ""
    raise TraceStoreError(f"experiment {ident!r} is ambiguous: {len(matches)} match ({listed}{more})",
                          hint="give the full experiment ID")


def experiment_sessions(store: TraceStore, experiment_id: str | None) -> list[SessionRow]:
    """The sessions of one experiment with reward, steps, tokens, cost (one query), oldest first."""
    schema = store.schema
    s_exp = _col(schema, "session_traces", "experiment_id", "s")
    if s_exp == "NULL":
        return []
    # `?1` everywhere: the experiment ID, bound once (NULL selects the sessions without one)
    in_exp = "{alias}.session_id IN (SELECT s.session_id FROM session_traces s WHERE s.experiment_id IS ?1)"
    s_created = _col(schema, "session_traces", "created_at", "s")
    s_meta = _col(schema, "session_traces", "metadata", "s")
    if _has(schema, "session_timesteps", "session_id"):
        steps_cte = (",\nts AS (SELECT t.session_id AS session_id, COUNT(*) AS steps FROM session_timesteps t "
                     f"WHERE {in_exp.format(alias='t')} GROUP BY t.session_id)")
        steps_join = "LEFT JOIN ts ON ts.session_id = s.session_id"
        steps = "ts.steps"
    else:
        steps_cte, steps_join = "", ""
        steps = _col(schema, "session_traces", "num_timesteps", "s")
    sql = f"""WITH {_session_aggregates_cte(schema, session_filter=in_exp)}{steps_cte}
SELECT s.session_id AS session_id, {s_created} AS created_at, {s_meta} AS metadata, {steps} AS steps,
       ev.events AS events, msg.messages AS messages, ev.llm_calls AS llm_calls, ev.reward AS reward,
       ev.terminated AS terminated, ev.input_tokens AS input_tokens, ev.output_tokens AS output_tokens,
       ev.total_tokens AS total_tokens, ev.cost_usd AS cost_usd, ev.models AS models, ev.last_event AS last_event
FROM session_traces s LEFT JOIN ev ON ev.session_id = s.session_id
     LEFT JOIN msg ON msg.session_id = s.session_id {steps_join}
WHERE s.experiment_id IS ?1
ORDER BY julianday({s_created}), s.session_id"""
    params = [experiment_id]
    has_msgs = _has(schema, "messages")
    out: list[SessionRow] = []
    for r in store.rows(sql, params):
        out.append(SessionRow(
            session_id=r["session_id"], created_at=_dt(r["created_at"]), steps=_int(r["steps"]),
            events=_int(r["events"]), messages=_int(r["messages"]) if has_msgs else None,
            llm_calls=_int(r["llm_calls"]) if schema.has_call_records else None,
            reward=None if r["reward"] is None else float(r["reward"]),
            terminated=None if r["terminated"] is None else bool(r["terminated"]),
            input_tokens=_int(r["input_tokens"]), output_tokens=_int(r["output_tokens"]),
            total_tokens=_int(r["total_tokens"]), cost_usd=_usd(r["cost_usd"] or 0.0),
            models=sorted(m for m in (r["models"] or "").split(",") if m),
            metadata=_json_obj(r["metadata"]), last_activity=_latest(r["created_at"], r["last_event"])))
    return out


# --------------------------------------------------------------------------- usage


@dataclass
class UsageRow:
    model: str | None
    provider: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    latency_ms_total: int
    calls_with_latency: int
    first_used: datetime | None
    last_used: datetime | None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_total / self.calls_with_latency if self.calls_with_latency else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider, "calls": self.calls,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens, "cost_usd": _usd(self.cost_usd),
                "avg_latency_ms": None if self.avg_latency_ms is None else round(self.avg_latency_ms, 3),
                "first_used": self.first_used, "last_used": self.last_used}


def _model_condition(models: Sequence[str]) -> tuple[str, list[Any]]:
    """`--model` values: exact names (case-insensitive), or glob patterns with * ? [."""
    conds: list[str] = []
    params: list[Any] = []
    for model in models:
        if any(ch in model for ch in "*?["):
            conds.append("e.model_name GLOB ?")
        else:
            conds.append("e.model_name = ? COLLATE NOCASE")
        params.append(model)
    return "(" + " OR ".join(conds) + ")", params


def usage(store: TraceStore, *, models: Sequence[str] = (), since: datetime | None = None) -> list[UsageRow]:
    """LLM usage per (model, provider) from the `cais` events: one grouped query."""
    schema = store.schema
    model = _col(schema, "events", "model_name", "e")
    provider = _col(schema, "events", "provider", "e")
    latency = _col(schema, "events", "latency_ms", "e")
    created = _col(schema, "events", "created_at", "e")
    inp, out, total = tokens_sql(schema)
    where = ["e.event_type = 'cais'"]
    params: list[Any] = []
    if models:
        if model == "NULL":
            return []
        cond, cond_params = _model_condition(models)
        where.append(cond)
        params.extend(cond_params)
    if since is not None:
        where.append(f"julianday({created}) >= julianday(?)")
        params.append(cutoff_sql_value(since))
    # per-row figures in a subquery SQLite keeps apart (LIMIT -1): GROUP BY then sorts small rows, not blobs
    sql = f"""
SELECT model, provider, COUNT(*) AS calls, SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
       SUM(total_tokens) AS total_tokens, SUM(cost_usd) AS cost_usd, SUM(latency) AS latency_sum,
       COUNT(latency) AS latency_n, MIN(created) AS first_used, MAX(created) AS last_used
FROM (SELECT {model} AS model, {provider} AS provider, {inp} AS input_tokens, {out} AS output_tokens,
             {total} AS total_tokens, {cost_usd_sql(schema)} AS cost_usd, {latency} AS latency, {created} AS created
      FROM events e WHERE {' AND '.join(where)} LIMIT -1)
GROUP BY model, provider
ORDER BY calls DESC, model, provider"""
    return [UsageRow(model=r["model"], provider=r["provider"], calls=_int(r["calls"]),
                     input_tokens=_int(r["input_tokens"]), output_tokens=_int(r["output_tokens"]),
                     total_tokens=_int(r["total_tokens"]), cost_usd=float(r["cost_usd"] or 0.0),
                     latency_ms_total=_int(r["latency_sum"]), calls_with_latency=_int(r["latency_n"]),
                     first_used=_dt(r["first_used"]), last_used=_dt(r["last_used"]))
            for r in store.rows(sql, params)]


def merge_usage(groups: Iterable[Sequence[UsageRow]]) -> list[UsageRow]:
    """Usage rows of several DBs added up per (model, provider)."""
    merged: dict[tuple[Any, Any], UsageRow] = {}
    for rows in groups:
        for row in rows:
            key = (row.model, row.provider)
            cur = merged.get(key)
            if cur is None:
                merged[key] = UsageRow(**{k: getattr(row, k) for k in row.__dataclass_fields__})
                continue
            cur.calls += row.calls
            cur.input_tokens += row.input_tokens
            cur.output_tokens += row.output_tokens
            cur.total_tokens += row.total_tokens
            cur.cost_usd += row.cost_usd
            cur.latency_ms_total += row.latency_ms_total
            cur.calls_with_latency += row.calls_with_latency
            cur.first_used = _earliest(cur.first_used, row.first_used)
            cur.last_used = _latest(cur.last_used, row.last_used)
    return sorted(merged.values(), key=lambda r: (-r.calls, r.model or "", r.provider or ""))


# --------------------------------------------------------------------------- sessions


def find_sessions(store: TraceStore, prefix: str, *, limit: int = MAX_CANDIDATES + 1) -> list[str]:
    """Session IDs equal to `prefix` or starting with it (case-insensitive), exact match first."""
    rows = store.rows(
        "SELECT session_id FROM session_traces WHERE session_id = ? "
        "OR lower(substr(session_id, 1, length(?))) = lower(?) "
        "ORDER BY session_id = ? DESC, session_id LIMIT ?", [prefix, prefix, prefix, prefix, int(limit)])
    return [r[0] for r in rows]


def recent_sessions(store: TraceStore, limit: int = 3) -> list[str]:
    created = _col(store.schema, "session_traces", "created_at")
    return [r[0] for r in store.rows(
        f"SELECT session_id FROM session_traces ORDER BY julianday({created}) DESC, session_id LIMIT ?", [limit])]


def resolve_session(stores: Sequence[TraceStore], ident: str) -> tuple[TraceStore, str]:
    """The one session `ident` names (full ID or unique prefix) across `stores`.

    Ambiguous or unknown IDs raise TraceStoreError listing the candidates.
    """
    ident = ident.strip()
    if not ident:
        raise UsageError("session ID is empty")
    matches: list[tuple[TraceStore, str]] = []
    for store in stores:
        for sid in find_sessions(store, ident):
            if sid == ident:
                return store, sid
            matches.append((store, sid))
    if len(matches) == 1:
        return matches[0]
    many_dbs = len(stores) > 1
    if not matches:
        recent_ids = [sid for store in stores for sid in recent_sessions(store)]
        where = stores[0].label if not many_dbs else f"{len(stores)} DBs"
        hint = ("recent sessions: " + ", ".join(recent_ids[:MAX_CANDIDATES])) if recent_ids else \
            "this DB holds no sessions"
        raise TraceStoreError(f"no session {ident!r} in {where}", hint=hint)
    shown = [f"{sid} ({store.label})" if many_dbs else sid for store, sid in matches[:MAX_CANDIDATES]]
    more = " …" if len(matches) > MAX_CANDIDATES else ""
    count = f"{len(matches)}+" if len(matches) > MAX_CANDIDATES else str(len(matches))
    raise TraceStoreError(f"session ID prefix {ident!r} is ambiguous: {count} sessions match: "
                          f"{', '.join(shown)}{more}", hint="type more characters of the session ID")


@dataclass
class EventDetail:
    id: int
    event_type: str
    system: str | None
    created_at: datetime | None
    event_time: float | None
    timestep_id: int | None
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: int | None = None
    calls: list[LLMCallRecord] | None = None
    malformed_call_records: bool = False
    reward: float | None = None
    terminated: bool | None = None
    truncated: bool | None = None
    state_after: Any = None
    metadata: Any = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "type": self.event_type, "system": self.system,
                               "created_at": self.created_at, "event_time": self.event_time,
                               "timestep_id": self.timestep_id}
        if self.event_type == "cais":
            out.update(model=self.model, provider=self.provider, input_tokens=self.input_tokens,
                       output_tokens=self.output_tokens, total_tokens=self.total_tokens,
                       cost_usd=_usd(self.cost_usd), latency_ms=self.latency_ms,
                       call_records=None if self.calls is None else [c.to_dict() for c in self.calls],
                       malformed_call_records=self.malformed_call_records)
        elif self.event_type == "environment":
            out.update(reward=self.reward, terminated=self.terminated, truncated=self.truncated,
                       state_after=self.state_after)
        out["metadata"] = self.metadata
        return out


@dataclass
class TimestepDetail:
    id: int | None
    step_id: str | None
    step_index: int | None
    turn_number: int | None
    started_at: datetime | None
    completed_at: datetime | None
    metadata: Any
    events: list[EventDetail] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "step_id": self.step_id, "step_index": self.step_index,
                "turn_number": self.turn_number, "started_at": self.started_at, "completed_at": self.completed_at,
                "metadata": self.metadata, "events": [e.to_dict() for e in self.events],
                "messages": self.messages}


@dataclass
class SessionDetail:
    session_id: str
    db: str
    created_at: datetime | None
    experiment_id: str | None
    experiment_name: str | None
    metadata: Any
    call_records: bool
    timesteps: list[TimestepDetail] = field(default_factory=list)
    malformed_call_records: int = 0

    @property
    def events(self) -> list[EventDetail]:
        return [e for t in self.timesteps for e in t.events]

    def totals(self) -> dict[str, Any]:
        events = self.events
        cais = [e for e in events if e.event_type == "cais"]
        env = [e for e in events if e.event_type == "environment"]
        latencies = [e.latency_ms for e in cais if e.latency_ms is not None]
        records = [c for e in cais for c in (e.calls or [])]
        rewards = [e.reward for e in env if e.reward is not None]
        return {
            "steps": sum(1 for t in self.timesteps if t.id is not None),
            "events": len(events),
            "events_by_type": {t: sum(1 for e in events if e.event_type == t) for t in EVENT_TYPES},
            "messages": sum(len(t.messages) for t in self.timesteps),
            "llm_calls": len(records) if self.call_records else None,
            "tool_calls": sum(len(c.output_tool_calls) for c in records) if self.call_records else None,
            "input_tokens": sum(e.input_tokens or 0 for e in cais),
            "output_tokens": sum(e.output_tokens or 0 for e in cais),
            "total_tokens": sum(e.total_tokens or 0 for e in cais),
            "cost_usd": _usd(sum(e.cost_usd or 0.0 for e in cais)),
            "latency_ms": sum(latencies) if latencies else None,
            "avg_latency_ms": round(sum(latencies) / len(latencies), 3) if latencies else None,
            "reward": sum(rewards) if rewards else None,
            "terminated": any(bool(e.terminated) for e in env) if env else None,
            "malformed_call_records": self.malformed_call_records,
        }

    def to_dict(self) -> dict[str, Any]:
        return {"db": self.db, "session_id": self.session_id, "created_at": self.created_at,
                "experiment_id": self.experiment_id, "experiment_name": self.experiment_name,
                "metadata": self.metadata, "call_records_available": self.call_records,
                "timesteps": [t.to_dict() for t in self.timesteps], "totals": self.totals()}


def session_detail(store: TraceStore, session_id: str) -> SessionDetail:
    """One session with its timesteps, events (call records parsed) and messages: 4 queries.

    A `call_records` value that does not parse is skipped and counted in
    `malformed_call_records`, and the event keeps its column figures.
    """
    schema = store.schema
    s_exp = _col(schema, "session_traces", "experiment_id", "s")
    exp_join = ""
    exp_name = "NULL"
    if s_exp != "NULL" and _has(schema, "experiments", "name"):
        exp_join = "LEFT JOIN experiments x ON x.experiment_id = s.experiment_id"
        exp_name = "x.name"
    head = store.one(
        f"SELECT s.session_id AS session_id, {_col(schema, 'session_traces', 'created_at', 's')} AS created_at, "
        f"{s_exp} AS experiment_id, {exp_name} AS experiment_name, "
        f"{_col(schema, 'session_traces', 'metadata', 's')} AS metadata "
        f"FROM session_traces s {exp_join} WHERE s.session_id = ?", [session_id])
    if head is None:
        raise TraceStoreError(f"no session {session_id!r} in {store.label}")
    detail = SessionDetail(session_id=head["session_id"], db=store.label, created_at=_dt(head["created_at"]),
                           experiment_id=head["experiment_id"], experiment_name=head["experiment_name"],
                           metadata=_json_obj(head["metadata"]), call_records=schema.has_call_records)

    steps: dict[int | None, TimestepDetail] = {}
    if _has(schema, "session_timesteps", "session_id"):
        c = lambda col: _col(schema, "session_timesteps", col)  # noqa: E731
        order = "step_index" if _has(schema, "session_timesteps", "step_index") else "id"
        for r in store.rows(
                f"SELECT id, {c('step_id')} AS step_id, {c('step_index')} AS step_index, "
                f"{c('turn_number')} AS turn_number, {c('started_at')} AS started_at, "
                f"{c('completed_at')} AS completed_at, {c('step_metadata')} AS step_metadata "
                f"FROM session_timesteps WHERE session_id = ? ORDER BY {order}, id", [session_id]):
            steps[r["id"]] = TimestepDetail(
                id=r["id"], step_id=r["step_id"], step_index=_opt_int(r["step_index"]),
                turn_number=_opt_int(r["turn_number"]), started_at=_dt(r["started_at"]),
                completed_at=_dt(r["completed_at"]), metadata=_json_obj(r["step_metadata"]))

    def step_for(timestep_id: Any) -> TimestepDetail:
        if timestep_id not in steps:  # events/messages outside any recorded timestep
            steps[timestep_id if timestep_id is not None else None] = TimestepDetail(
                id=None, step_id=None if timestep_id is None else f"timestep {timestep_id}", step_index=None,
                turn_number=None, started_at=None, completed_at=None, metadata=None)
        return steps[timestep_id]

    e = lambda col: _col(schema, "events", col, "e")  # noqa: E731
    inp, out, total = tokens_sql(schema)
    event_sql = (
        f"SELECT e.id AS id, e.event_type AS event_type, {e('system_instance_id')} AS system, "
        f"{e('created_at')} AS created_at, {e('event_time')} AS event_time, {e('timestep_id')} AS timestep_id, "
        f"{e('model_name')} AS model, {e('provider')} AS provider, {inp} AS input_tokens, "
        f"{out} AS output_tokens, {total} AS total_tokens, {cost_usd_sql(schema)} AS cost_usd, "
        f"{e('latency_ms')} AS latency_ms, {e('call_records')} AS call_records, {e('reward')} AS reward, "
        f"{e('terminated')} AS terminated, {e('truncated')} AS truncated, "
        f"{e('system_state_after')} AS state_after, {e('metadata')} AS metadata "
        f"FROM events e WHERE e.session_id = ?")
    for r in store.scan(event_sql, [session_id], key="id", page_size=EVENT_PAGE_SIZE):
        ev = EventDetail(
            id=r["id"], event_type=r["event_type"], system=r["system"], created_at=_dt(r["created_at"]),
            event_time=r["event_time"], timestep_id=r["timestep_id"], metadata=_json_obj(r["metadata"]))
        if ev.event_type == "cais":
            ev.model, ev.provider = r["model"], r["provider"]
            ev.input_tokens, ev.output_tokens = _opt_int(r["input_tokens"]), _opt_int(r["output_tokens"])
            ev.total_tokens = _opt_int(r["total_tokens"])
            ev.cost_usd = None if r["cost_usd"] is None else float(r["cost_usd"])
            ev.latency_ms = _opt_int(r["latency_ms"])
            if schema.has_call_records:
                try:
                    ev.calls = parse_call_records(r["call_records"])
                except (ValueError, TypeError, AttributeError):
                    ev.calls = []
                    ev.malformed_call_records = True
                    detail.malformed_call_records += 1
        elif ev.event_type == "environment":
            ev.reward = None if r["reward"] is None else float(r["reward"])
            ev.terminated = None if r["terminated"] is None else bool(r["terminated"])
            ev.truncated = None if r["truncated"] is None else bool(r["truncated"])
            ev.state_after = _json_obj(r["state_after"])
        step_for(r["timestep_id"]).events.append(ev)

    if _has(schema, "messages", "session_id"):
        m = lambda col: _col(schema, "messages", col)  # noqa: E731
        for r in store.rows(
                f"SELECT id, {m('timestep_id')} AS timestep_id, {m('message_type')} AS message_type, "
                f"{m('content')} AS content, {m('timestamp')} AS timestamp, {m('metadata')} AS metadata "
                f"FROM messages WHERE session_id = ? ORDER BY id", [session_id]):
            step_for(r["timestep_id"]).messages.append({
                "id": r["id"], "type": r["message_type"], "content": _json_obj(r["content"])
                if _looks_like_json(r["content"]) else r["content"],
                "timestamp": _dt(r["timestamp"]), "metadata": _json_obj(r["metadata"])})

    ordered = [s for k, s in steps.items() if k is not None and s.id is not None]
    extra = [s for k, s in steps.items() if k is None or s.id is None]
    detail.timesteps = ordered + extra
    return detail


def _looks_like_json(text: Any) -> bool:
    return isinstance(text, str) and text[:1] in ("{", "[")
