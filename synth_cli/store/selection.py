"""The SQL `filter` runs: session selection in one pass, then one streamed scan.

* :func:`select_sessions`: ONE query computes, for every session, its figures as the
  reports define them (:func:`synth_cli.store.sql.session_figures_cte`: total environment
  reward, exact cost in USD, tokens), the achievements of its last environment event, how
  many call-record events/messages it holds, and which filter (if any) drops it
  (`dropped_by`, first failing filter in :data:`FILTER_ORDER`). No query per session.
* :func:`scan_calls`: the `cais` events' `call_records` blobs, streamed in id order
  through :meth:`TraceStore.scan` (one cursor locally, keyset pages against libSQL).
* :func:`scan_messages`: the `messages` table with each message's timestep order, for
  DBs written before `call_records` existed.

Everything goes through `TraceStore.rows` / `TraceStore.scan`. Nothing here prints.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from synth_cli.dataset.options import FilterOptions
from synth_cli.store.reader import TraceStore
from synth_cli.store.sql import COST_PRECISION, achievements_sql, session_figures_cte

#: order in which session filters are tried; a dropped session is counted under the first that fails.
FILTER_ORDER = ("experiment", "since", "until", "where", "min_reward", "max_reward", "min_achievements",
                "max_cost", "max_tokens")
#: rows per page of a remote scan at most; pages are bounded by their bytes first (reader.SCAN_PAGE_BYTES*).
CALL_PAGE_SIZE = 1000
#: above this many kept sessions the scan filters in Python instead of `session_id IN (…)`.
MAX_IN_LIST = 500


@dataclass(slots=True)
class SessionRow:
    """One session's figures; those no filter of the query tests (achievements, cost, tokens,
    models) are not computed and read 0 / None."""

    session_id: str
    created_at: str | None
    experiment_id: str | None
    total_reward: float
    achievements: int
    cost_usd: float
    tokens: int
    calls: int
    models: str | None
    dropped_by: str | None


def json_path(key: str) -> str:
    """`task.split` → `$."task"."split"` (each segment quoted, so any key works)."""
    segments = key.split(".")
    return "$" + "".join('."' + s.replace('"', '""') + '"' for s in segments)


def session_query(store: TraceStore, opts: FilterOptions, *, fallback: bool = False, shard: bool = False
                  ) -> tuple[str, list[Any]]:
    """The one-pass session query (see module doc) and its parameters.

    `shard`: only the sessions whose ids the connection's `temp.shard` table holds (a worker's share).
    """
    schema = store.schema
    has_messages = schema.has("messages", "session_id")
    calls_col = "COALESCE(msg.messages, 0)" if fallback and has_messages else "COALESCE(ev.record_events, 0)"
    has_experiments = schema.has("experiments", "name")
    exp_join = "LEFT JOIN experiments x ON x.experiment_id = s.experiment_id" if has_experiments else ""
    exp_name = "x.name" if has_experiments else "NULL"
    s_exp = "s.experiment_id" if schema.has("session_traces", "experiment_id") else "NULL"
    s_meta = "s.metadata" if schema.has("session_traces", "metadata") else "NULL"
    s_created = "s.created_at" if schema.has("session_traces", "created_at") else "NULL"
    # The session figures have one definition (store.sql); the exact cost costs a JSON parse
    # of every call record, so it is read only when --max-cost needs it.
    # LLM calls are not needed here (the scan counts the records it parses): without them the
    # query reads no blob at all unless --max-cost asks for the exact cost.
    # Only the figures the filter reads are computed (each costs a lookup of every event row):
    # the reward (the stats' histogram), the record count (where a session's rows end), and
    # the achievements, tokens, cost and models only when a filter tests them.
    only = {"reward", "record_events"}
    if opts.min_achievements is not None:
        only.add("last_env_id")
    if opts.max_tokens is not None:
        only.add("total_tokens")
    if opts.max_cost is not None:
        only.add("cost_usd")
    if fallback and opts.models:
        only.add("models")
    in_shard = "{alias}.session_id IN (SELECT session_id FROM temp.shard)" if shard else ""
    figures = session_figures_cte(schema, exact_cost=opts.max_cost is not None, llm_calls=False, only=only,
                                  session_filter=in_shard)
    shard_where = "WHERE " + in_shard.format(alias="s") if shard else ""
    achievements = achievements_sql(schema, "le") if "last_env_id" in only else "0"
    last_env = "LEFT JOIN events le ON le.id = ev.last_env_id" if "last_env_id" in only else ""
    msg_join = "LEFT JOIN msg ON msg.session_id = s.session_id" if "msg." in calls_col else ""

    params: list[Any] = []
    checks: list[tuple[str, str]] = []
    if opts.experiments:
        marks = ", ".join("?" for _ in opts.experiments)
        checks.append(("experiment", f"(b.experiment_id IN ({marks}) OR b.experiment_name IN ({marks}))"))
        params.extend(opts.experiments)
        params.extend(opts.experiments)
    if opts.since is not None:
        checks.append(("since", "julianday(b.created_at) >= julianday(?)"))
        params.append(opts.since.isoformat(sep=" "))
    if opts.until is not None:
        checks.append(("until", "julianday(b.created_at) <= julianday(?)"))
        params.append(opts.until.isoformat(sep=" "))
    if opts.where:
        conds = []
        for key, value in opts.where:
            path = json_path(key)
            conds.append(
                "(CASE WHEN json_valid(b.metadata) THEN (CASE json_type(b.metadata, ?) "
                "WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' WHEN 'null' THEN 'null' "
                "ELSE CAST(json_extract(b.metadata, ?) AS TEXT) END) END) = ?")
            params.extend([path, path, value])
        checks.append(("where", " AND ".join(conds)))
    if opts.min_reward is not None:
        checks.append(("min_reward", "b.total_reward >= ?"))
        params.append(opts.min_reward)
    if opts.max_reward is not None:
        checks.append(("max_reward", "b.total_reward <= ?"))
        params.append(opts.max_reward)
    if opts.min_achievements is not None:
        checks.append(("min_achievements", "b.achievements >= ?"))
        params.append(opts.min_achievements)
    if opts.max_cost is not None:
        checks.append(("max_cost", f"ROUND(b.cost_usd, {COST_PRECISION}) <= ?"))
        params.append(opts.max_cost)
    if opts.max_tokens is not None:
        checks.append(("max_tokens", "b.tokens <= ?"))
        params.append(opts.max_tokens)
    order = {name: i for i, name in enumerate(FILTER_ORDER)}
    checks.sort(key=lambda c: order[c[0]])
    if checks:
        whens = " ".join(f"WHEN NOT COALESCE(({cond}), 0) THEN '{name}'" for name, cond in checks)
        dropped = f"CASE {whens} ELSE NULL END"
    else:
        dropped = "NULL"

    sql = f"""
WITH {figures},
b AS (
  SELECT s.session_id AS session_id, {s_created} AS created_at, {s_exp} AS experiment_id,
         {exp_name} AS experiment_name, {s_meta} AS metadata,
         COALESCE(ev.reward, 0) AS total_reward, COALESCE(ev.cost_usd, 0) AS cost_usd,
         COALESCE(ev.total_tokens, 0) AS tokens, {calls_col} AS calls, ev.models AS models,
         {achievements} AS achievements
  FROM session_traces s
  LEFT JOIN ev ON ev.session_id = s.session_id
  {last_env}
  {msg_join}
  {exp_join}
  {shard_where}
)
SELECT b.session_id, b.created_at, b.experiment_id, b.total_reward, b.achievements, b.cost_usd, b.tokens,
       b.calls, b.models, {dropped} AS dropped_by
FROM b ORDER BY b.session_id"""
    return sql, params


def select_sessions(store: TraceStore, opts: FilterOptions, *, fallback: bool = False,
                    shard: list[str] | None = None) -> Iterator[SessionRow]:
    """Every session's figures and the filter that drops it, in session id order.

    `shard` (a local store of a worker's own, `reopen()`): only these sessions, through a
    temporary table of their ids (SQLite then looks up their events by the session index).
    """
    if shard is not None:
        _fill_shard(store, shard)
    sql, params = session_query(store, opts, fallback=fallback, shard=shard is not None)
    for r in store.rows(sql, params):
        yield SessionRow(
            session_id=r[0], created_at=r[1], experiment_id=r[2], total_reward=float(r[3] or 0),
            achievements=int(r[4] or 0), cost_usd=float(r[5] or 0), tokens=int(r[6] or 0), calls=int(r[7] or 0),
            models=r[8], dropped_by=r[9])


def _fill_shard(store: TraceStore, session_ids: Any) -> None:
    """`temp.shard`: these session ids, on this (a worker's own) connection."""
    import sqlite3

    try:
        store.conn.execute("CREATE TEMP TABLE IF NOT EXISTS shard (session_id TEXT PRIMARY KEY) WITHOUT ROWID")  # type: ignore[attr-defined]
        store.conn.execute("DELETE FROM temp.shard")  # type: ignore[attr-defined]
        store.conn.executemany("INSERT OR IGNORE INTO temp.shard VALUES (?)",  # type: ignore[attr-defined]
                               ((sid,) for sid in session_ids))
    except sqlite3.DatabaseError as exc:
        from synth_cli.store.locate import _sqlite_error

        raise _sqlite_error(store.path, exc) from exc  # type: ignore[attr-defined]


def session_ids(store: TraceStore) -> list[str]:
    """Every session's id, in the order of :func:`select_sessions` (how workers share the sessions out)."""
    return [r[0] for r in store.rows("SELECT session_id FROM session_traces ORDER BY session_id")]


def db_sizes(store: TraceStore) -> tuple[int, int]:
    """(sessions, `cais` events) of the DB, by its indexes (no event row read); the events are at
    least as many as hold call records, the rows a filter reads."""
    sessions = store.scalar("SELECT COUNT(*) FROM session_traces")
    calls = store.scalar("SELECT COUNT(*) FROM events WHERE event_type = 'cais'")
    return int(sessions or 0), int(calls or 0)


def scan_calls(store: TraceStore, session_ids: list[str] | None = None) -> Iterator[Any]:
    """Rows (id, session_id, call_records) of every `cais` event with records, in id order.

    With `session_ids` (few sessions kept) the scan reads only their events.
    """
    sql = ("SELECT id, session_id, call_records FROM events "
           "WHERE event_type = 'cais' AND call_records IS NOT NULL")
    params: list[Any] = []
    if session_ids is not None:
        sql += f" AND session_id IN ({', '.join('?' for _ in session_ids)})"
        params.extend(session_ids)
    return store.scan(sql, params, key="id", page_size=CALL_PAGE_SIZE)


def scan_calls_of(store: TraceStore, session_ids: Any) -> Iterator[Any]:
    """`scan_calls` for a worker process: rows (id, session_id, call_records) of these sessions only,
    in id order, read through a client or connection of the worker's own (`store.reopen()`).

    A local store gets a temporary table of the ids; a libSQL server gets them as one JSON
    parameter of every keyset page (`json_each`: no temporary table on a read connection).
    Either way the session test is `+session_id` (no index), so SQLite walks the events in id
    order and skips the others' rows without reading their blobs; nothing is sorted.
    """
    if store.kind == "libsql":
        return _scan_calls_of_remote(store, session_ids)
    return _scan_calls_of_local(store, session_ids)


def _scan_calls_of_local(store: TraceStore, session_ids: Any) -> Iterator[Any]:
    import sqlite3

    own = store.reopen()  # type: ignore[attr-defined]
    try:
        _fill_shard(own, session_ids)
        own.conn.row_factory = None
        yield from own.rows("SELECT id, session_id, call_records FROM events "
                            "WHERE event_type = 'cais' AND call_records IS NOT NULL "
                            "AND +session_id IN (SELECT session_id FROM temp.shard) ORDER BY id")
    except sqlite3.DatabaseError as exc:
        from synth_cli.store.locate import _sqlite_error

        raise _sqlite_error(store.path, exc) from exc  # type: ignore[attr-defined]
    finally:
        own.close()


def _scan_calls_of_remote(store: TraceStore, session_ids: Any) -> Iterator[Any]:
    ids = list(session_ids)
    sql = "SELECT id, session_id, call_records FROM events WHERE event_type = 'cais' AND call_records IS NOT NULL"
    if all(type(sid) in (str, int) for sid in ids):  # what JSON holds exactly (any number of them)
        from synth_cli import _json

        sql += " AND +session_id IN (SELECT value FROM json_each(?))"
        params: list[Any] = [_json.dumps(ids)]
    else:  # odd ids (blobs, floats): as parameters of their own
        sql += f" AND +session_id IN ({', '.join('?' for _ in ids)})"
        params = ids
    own = store.reopen()  # type: ignore[attr-defined]
    try:
        yield from own.scan(sql, params, key="id", page_size=CALL_PAGE_SIZE)
    finally:
        own.close()


def scan_messages(store: TraceStore, session_ids: list[str] | None = None) -> Iterator[Any]:
    """Rows (id, session_id, message_type, content, step) of the `messages` table, in id order.

    `step` orders a session's messages by timestep (`step_index`, else `turn_number`).
    """
    schema = store.schema
    if schema.has("session_timesteps", "id"):
        step_cols = [c for c in ("step_index", "turn_number") if schema.has("session_timesteps", c)]
        step = f"COALESCE({', '.join('t.' + c for c in step_cols)}, 0)" if step_cols else "0"
        if len(step_cols) == 1:
            step = f"COALESCE(t.{step_cols[0]}, 0)"
        join = "LEFT JOIN session_timesteps t ON t.id = m.timestep_id"
    else:
        step, join = "0", ""
    sql = (f"SELECT m.id AS id, m.session_id AS session_id, m.message_type AS message_type, "
           f"m.content AS content, {step} AS step FROM messages m {join}")
    params: list[Any] = []
    if session_ids is not None:
        sql += f" WHERE m.session_id IN ({', '.join('?' for _ in session_ids)})"
        params.extend(session_ids)
    return store.scan(sql, params, key="id")


__all__ = ["FILTER_ORDER", "SessionRow", "db_sizes", "json_path", "scan_calls", "scan_calls_of", "scan_messages",
           "select_sessions", "session_ids", "session_query"]
