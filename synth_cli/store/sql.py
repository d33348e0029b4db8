"""The shared SQL of the inspection commands and `filter` (`traces`, `session`, `experiments`, `experiment`,
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

from datetime import datetime, timezone
from typing import Any

from synth_cli.store.reader import Schema
from synth_cli.tracing.dates import parse_datetime

EVENT_TYPES = ("cais", "environment", "runtime")
#: candidates listed in an "ambiguous ID" error
MAX_CANDIDATES = 8

def has(schema: Schema, table: str, column: str | None = None) -> bool:
    return schema.has(table, column)


def col(schema: Schema, table: str, column: str, alias: str = "", default: str = "NULL") -> str:
    if not schema.has(table, column):
        return default
    return f"{alias}.{column}" if alias else column


#: The per-event figures the project's writers store beside each `cais` event with call records
#: (migration `m003_event_figures`, :meth:`synth_cli.store.writer.TraceWriter.write`), so reports
#: need not parse every record on every run: `llm_calls`, `cost_usd` (the records' exact cost,
#: NULL when none reports one) and `malformed`, each what the JSON expressions below give for the
#: event's `call_records`. Triggers in the DB delete an event's row when the event is deleted or
#: its `call_records` (or id) is updated, whoever does it, so a row is never stale. An event
#: without a row (written by the published tracer, or before the migration) is parsed.
FIGURES_TABLE = "_synth_event_figures"
#: the alias of FIGURES_TABLE in the queries that join it (:func:`figures_join`)
FIGURES_ALIAS = "ef"


def has_figures(schema: Schema) -> bool:
    return schema.has_call_records and all(schema.has(FIGURES_TABLE, c) for c in
                                           ("event_id", "llm_calls", "cost_usd", "malformed"))


def figures_join(schema: Schema, alias: str = "e") -> str:
    """`LEFT JOIN` of the stored per-event figures to the events aliased `alias` ('' when the DB has
    none); the expressions below read them with `figures=True`."""
    if not has_figures(schema):
        return ""
    return f" LEFT JOIN {FIGURES_TABLE} {FIGURES_ALIAS} ON {FIGURES_ALIAS}.event_id = {alias}.id"


def _stored_or(schema: Schema, figures: bool, column: str, parsed: str) -> str:
    """The stored figure `column` when the event has a row, else the expression `parsed` (which reads
    the records). CASE evaluates one branch only: an event with a row never loads its blob."""
    if not (figures and has_figures(schema)):
        return parsed
    return f"(CASE WHEN {FIGURES_ALIAS}.event_id IS NOT NULL THEN {FIGURES_ALIAS}.{column} ELSE {parsed} END)"


def malformed_json_sql(x: str) -> str:
    """1 when a non-NULL `call_records` value `x` is not a JSON array/object, else 0."""
    return (f"CASE WHEN {x} IS NULL THEN 0 WHEN NOT json_valid({x}) THEN 1 "
            f"WHEN json_type({x}) IN ('array', 'object') THEN 0 ELSE 1 END")


def malformed_records_sql(schema: Schema, alias: str = "e", *, figures: bool = False) -> str:
    """1 when the event's non-NULL `call_records` value is not a JSON array/object, else 0."""
    if not schema.has_call_records:
        return "0"
    return _stored_or(schema, figures, "malformed", malformed_json_sql(f"{alias}.call_records"))


def calls_json_sql(x: str) -> str:
    """Number of call records (JSON objects) in the `call_records` value `x`.

    The usual one-record array takes a fast path: SQLite caches the parse of a value across
    the JSON functions of a row, while `json_each` walks it again (3x slower on big DBs).
    """
    return (f"(CASE WHEN json_valid({x}) THEN CASE json_type({x}) "
            f"WHEN 'array' THEN CASE json_array_length({x}) WHEN 0 THEN 0 "
            f"WHEN 1 THEN (json_type({x}, '$[0]') = 'object') "
            f"ELSE (SELECT COUNT(*) FROM json_each({x}) j WHERE j.type = 'object') END "
            f"WHEN 'object' THEN 1 ELSE 0 END ELSE 0 END)")


def calls_sql(schema: Schema, alias: str = "e", *, figures: bool = False) -> str | None:
    """Number of call records of one event; None when the schema has no call_records.
    `figures=True`: the stored figure where there is one (the query has :func:`figures_join`)."""
    if not schema.has_call_records:
        return None
    return _stored_or(schema, figures, "llm_calls", calls_json_sql(f"{alias}.call_records"))


def _json_number(x: str, path: str) -> str:
    """The value at `path` when it is a JSON number, else NULL (a string or a boolean is no cost)."""
    return f"CASE WHEN json_type({x}, '{path}') IN ('integer', 'real') THEN json_extract({x}, '{path}') END"


def records_cost_json_sql(x: str) -> str:
    """The exact cost in USD the records of the `call_records` value `x` report: the sum of their
    `usage.cost_usd` numbers, NULL when none reports one (or the value is not JSON)."""
    return (f"(CASE WHEN json_valid({x}) THEN CASE json_type({x}) "
            f"WHEN 'array' THEN CASE json_array_length({x}) WHEN 0 THEN NULL "
            f"WHEN 1 THEN {_json_number(x, '$[0].usage.cost_usd')} "
            f"ELSE (SELECT SUM(CASE WHEN j.type = 'object' THEN {_json_number('j.value', '$.usage.cost_usd')} END) "
            f"FROM json_each({x}) j) END "
            f"WHEN 'object' THEN {_json_number(x, '$.usage.cost_usd')} END END)")


def cost_usd_sql(schema: Schema, alias: str = "e", *, figures: bool = False) -> str:
    """One event's cost in USD: the records' exact usage.cost_usd, else the cents column / 100.
    `figures=True`: the records' cost from the stored figures where there are some."""
    cents = f"{alias}.cost_usd / 100.0" if schema.has("events", "cost_usd") else "NULL"
    if not schema.has_call_records:
        return cents
    exact = _stored_or(schema, figures, "cost_usd", records_cost_json_sql(f"{alias}.call_records"))
    return f"COALESCE({exact}, {cents})"


def insert_figures_sql(event_id: str = "?") -> str:
    """The INSERT of one event's stored figures known to its writer: params (llm_calls, cost_usd),
    the event's id given by the SQL expression `event_id` (a `?` first when it is a parameter)."""
    return f"INSERT INTO {FIGURES_TABLE} (event_id, llm_calls, cost_usd, malformed) VALUES ({event_id}, ?, ?, 0)"


def insert_figures_from_json_sql(where: str) -> str:
    """The INSERT of the stored figures of the events `e` matching `where`, computed from their JSON."""
    x = "e.call_records"
    return (f"INSERT INTO {FIGURES_TABLE} (event_id, llm_calls, cost_usd, malformed) "
            f"SELECT e.id, {calls_json_sql(x)}, {records_cost_json_sql(x)}, {malformed_json_sql(x)} "
            f"FROM events e WHERE {where}")


def tokens_sql(schema: Schema, alias: str = "e") -> tuple[str, str, str]:
    """(input, output, total) token expressions; total falls back to input + output."""
    inp = col(schema, "events", "input_tokens", alias)
    out = col(schema, "events", "output_tokens", alias)
    total = col(schema, "events", "total_tokens", alias)
    if total == "NULL":
        total = f"({inp} + {out})" if "NULL" not in (inp, out) else "NULL"
    elif "NULL" not in (inp, out):
        total = f"COALESCE({total}, {inp} + {out})"
    return inp, out, total


def as_int(value: Any) -> int:
    return int(value) if value is not None else 0


def opt_int(value: Any) -> int | None:
    return int(value) if value is not None else None


def as_usd(value: Any) -> float | None:
    return None if value is None else round(float(value), 9)


def as_dt(value: Any) -> datetime | None:
    parsed = parse_datetime(value)
    if parsed is not None and parsed.tzinfo is not None:
        parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
    return parsed


def latest(*values: Any) -> datetime | None:
    parsed = [d for d in (as_dt(v) for v in values) if d is not None]
    return max(parsed) if parsed else None


def earliest(*values: Any) -> datetime | None:
    parsed = [d for d in (as_dt(v) for v in values) if d is not None]
    return min(parsed) if parsed else None


def json_obj(text: Any) -> Any:
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


def reward_sql(schema: Schema, alias: str = "e") -> str:
    """One event's contribution to its session's reward: environment events' `reward`."""
    reward = col(schema, "events", "reward", alias)
    return f"CASE WHEN {alias}.event_type = 'environment' THEN {reward} END"


def achievements_sql(schema: Schema, alias: str = "le") -> str:
    """Achievements unlocked in one (the session's last) environment event's `system_state_after`."""
    if not schema.has("events", "system_state_after"):
        return "0"
    x = f"{alias}.system_state_after"
    return (f"CASE WHEN json_valid({x}) THEN (SELECT COUNT(*) FROM json_each("
            f"{x}, '$.public_state.achievements_status') j WHERE j.type = 'true') ELSE 0 END")


_SESSION_FIGURES = ("events", "lm_events", "llm_calls", "record_events", "input_tokens", "output_tokens",
                    "total_tokens", "cost_usd", "reward", "terminated", "models", "first_event", "last_event",
                    "last_env_id")


def session_figures_cte(schema: Schema, *, session_filter: str = "", exact_cost: bool = True,
                        llm_calls: bool = True, only: set[str] | frozenset[str] | None = None) -> str:
    """THE per-session figures, as the CTE bodies `ev` (events) and `msg` (messages per session).

    Every command that reports or filters by a session's reward, cost, tokens or LLM calls
    reads them from here (`experiments`, `experiment`, `recent`, `filter`), so they agree:

    * `reward`: the sum of its environment events' rewards (:func:`reward_sql`);
    * `cost_usd`: the sum of its `cais` events' exact cost (:func:`cost_usd_sql`: the call
      records' `usage.cost_usd`, the cents column only as a fallback); `exact_cost=False`
      leaves it NULL for callers that do not use it (reading it costs a JSON parse per event);
      `llm_calls=False` likewise leaves `llm_calls` NULL (`filter` counts the records it parses);
    * `input_tokens`/`output_tokens`/`total_tokens` (:func:`tokens_sql`), `llm_calls` (call
      records, :func:`calls_sql`), `record_events` (`cais` events that hold call records);
    * `events`, `lm_events`, `terminated`, `models`, `first_event`, `last_event`, and
      `last_env_id` (the last environment event, whose state gives the achievements).

    `session_filter` restricts both to some sessions; `{alias}` in it names the table alias.
    `only` (a set of those names) computes just these columns of `ev` and leaves the others
    NULL: each column an event row is read for costs a lookup of that row (`filter` needs the
    reward and the record count of 720,000 events in 0.48 s where all the figures take 0.9 s).
    """
    inp, out, total = tokens_sql(schema)
    wanted = set(_SESSION_FIGURES) if only is None else set(only)
    # the stored figures are joined only for a query that reads them (a lookup per event row)
    stored = (llm_calls and "llm_calls" in wanted) or (exact_cost and "cost_usd" in wanted)
    join = figures_join(schema) if stored else ""
    calls = calls_sql(schema, figures=stored) if llm_calls else None
    created = col(schema, "events", "created_at", "e")
    term = col(schema, "events", "terminated", "e")
    model = col(schema, "events", "model_name", "e")
    cost = cost_usd_sql(schema, figures=stored) if exact_cost else "NULL"
    # typeof() reads the value's type from the row header; `IS NOT NULL` would load every blob
    records = "typeof(e.call_records) <> 'null'" if schema.has_call_records else "0"
    where = f"WHERE {session_filter.format(alias='e')}" if session_filter else ""
    figures = [
        ("events", "COUNT(*)"),
        ("lm_events", "SUM(CASE WHEN e.event_type = 'cais' THEN 1 ELSE 0 END)"),
        ("llm_calls", f"SUM(CASE WHEN e.event_type = 'cais' THEN {calls or 'NULL'} END)"),
        ("record_events", f"SUM(CASE WHEN e.event_type = 'cais' AND {records} THEN 1 ELSE 0 END)"),
        ("input_tokens", f"SUM(CASE WHEN e.event_type = 'cais' THEN {inp} END)"),
        ("output_tokens", f"SUM(CASE WHEN e.event_type = 'cais' THEN {out} END)"),
        ("total_tokens", f"SUM(CASE WHEN e.event_type = 'cais' THEN {total} END)"),
        ("cost_usd", f"SUM(CASE WHEN e.event_type = 'cais' THEN {cost} END)"),
        ("reward", f"SUM({reward_sql(schema)})"),
        ("terminated", f"MAX(CASE WHEN e.event_type = 'environment' THEN {term} END)"),
        ("models", f"GROUP_CONCAT(DISTINCT CASE WHEN e.event_type = 'cais' THEN {model} END)"),
        ("first_event", f"MIN({created})"),
        ("last_event", f"MAX({created})"),
        ("last_env_id", "MAX(CASE WHEN e.event_type = 'environment' THEN e.id END)"),
    ]
    assert [name for name, _ in figures] == list(_SESSION_FIGURES)
    columns = ",\n         ".join(f"{expr if only is None or name in only else 'NULL'} AS {name}"
                                   for name, expr in figures)
    ev = f"""ev AS (
  SELECT e.session_id AS session_id,
         {columns}
  FROM events e{join} {where} GROUP BY e.session_id)"""
    if has(schema, "messages"):
        msg_where = f"WHERE {session_filter.format(alias='m')}" if session_filter else ""
        msg = f"msg AS (SELECT m.session_id AS session_id, COUNT(*) AS messages FROM messages m {msg_where} " \
              f"GROUP BY m.session_id)"
    else:
        msg = "msg AS (SELECT NULL AS session_id, NULL AS messages WHERE 0)"
    return ev + ",\n" + msg


#: a session's cost as compared by `filter --max-cost`, rounded like the reports (:func:`as_usd`)
COST_PRECISION = 9
