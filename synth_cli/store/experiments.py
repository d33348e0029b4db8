"""Experiments: the `experiments`, `recent` and `experiment ID` queries.

Never prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Sequence

from synth_cli.errors import TraceStoreError, UsageError
from synth_cli.store.reader import TraceStore
from synth_cli.timespan import before
from synth_cli.store.sql import (
    MAX_CANDIDATES,
    as_dt,
    as_int,
    as_usd,
    col,
    cutoff_sql_value,
    earliest,
    has,
    json_obj,
    latest,
    session_figures_cte,
)


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


#: the per-session figures an experiment's row sums (the others, e.g. the models' GROUP_CONCAT
#: DISTINCT, cost a third of the query on a big DB and are not shown)
_EXPERIMENT_FIGURES = frozenset({"events", "llm_calls", "input_tokens", "output_tokens", "total_tokens", "cost_usd",
                                 "first_event", "last_event"})


def experiments(store: TraceStore, *, limit: int | None = None, active_since: datetime | None = None
                ) -> tuple[list[ExperimentRow], int]:
    """Experiments with their sessions' figures, most recently active first; (rows, total before limit).

    Sessions without an experiment (or naming one missing from `experiments`) form their own
    rows. With `active_since`, only sessions created or with events at/after it count, and
    experiments without such sessions are left out (`recent`).
    """
    schema = store.schema
    has_exp_table = has(schema, "experiments", "experiment_id")
    s_exp = col(schema, "session_traces", "experiment_id", "s")
    s_created = col(schema, "session_traces", "created_at", "s")
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
        x_name = col(schema, "experiments", "name", "x")
        x_desc = col(schema, "experiments", "description", "x")
        x_created = col(schema, "experiments", "created_at", "x")
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
    sql = f"""WITH {session_figures_cte(schema, only=_EXPERIMENT_FIGURES)},
{sess}
SELECT *, COUNT(*) OVER () AS total_rows FROM ({body}) AS t
ORDER BY MAX(COALESCE(julianday(t.last_event), 0), COALESCE(julianday(t.last_session), 0),
             COALESCE(julianday(t.created_at), 0)) DESC, t.name, t.experiment_id"""
    if limit is not None:
        sql += " LIMIT ?"
        params.append(int(limit))
    rows: list[ExperimentRow] = []
    total = 0
    has_msgs = has(schema, "messages")
    for r in store.rows(sql, params):
        total = as_int(r["total_rows"])
        rows.append(ExperimentRow(
            experiment_id=r["experiment_id"], name=r["name"], description=r["description"],
            created_at=as_dt(r["created_at"]), sessions=as_int(r["sessions"]), events=as_int(r["events"]),
            messages=as_int(r["messages"]) if has_msgs else None,
            llm_calls=as_int(r["llm_calls"]) if schema.has_call_records else None,
            input_tokens=as_int(r["input_tokens"]), output_tokens=as_int(r["output_tokens"]),
            total_tokens=as_int(r["total_tokens"]), cost_usd=as_usd(r["cost_usd"] or 0.0),
            first_activity=earliest(r["first_session"], r["first_event"]),
            last_activity=latest(r["last_session"], r["last_event"]), db=store.label))
    return rows, total


def recent(store: TraceStore, hours: float, *, now: datetime | None = None) -> list[ExperimentRow]:
    """Experiments with sessions active in the last `hours` hours (figures of those sessions only)."""
    if hours <= 0:
        raise UsageError(f"--hours {hours:g}: must be greater than 0")
    now = now or datetime.now(timezone.utc).replace(tzinfo=None)
    rows, _ = experiments(store, active_since=before(now, hours * 3600))
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
        if has(schema, "experiments", "experiment_id"):
            name = col(schema, "experiments", "name")
            desc = col(schema, "experiments", "description")
            created = col(schema, "experiments", "created_at")
            sql = (f"SELECT experiment_id, {name} AS name, {desc} AS description, {created} AS created_at "
                   f"FROM experiments WHERE experiment_id = ? OR {name} = ? "
                   f"OR lower(substr(experiment_id, 1, length(?))) = lower(?) "
                   f"OR lower(substr({name}, 1, length(?))) = lower(?) ORDER BY experiment_id LIMIT 50")
            for r in store.rows(sql, [ident, ident, ident, ident, ident, ident]):
                info = {"experiment_id": r["experiment_id"], "name": r["name"], "description": r["description"],
                        "created_at": as_dt(r["created_at"]), "db": store.label}
                (exact if ident in (r["experiment_id"], r["name"]) else prefix).append((store, info))
        elif has(schema, "session_traces", "experiment_id"):
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
    s_exp = col(schema, "session_traces", "experiment_id", "s")
    if s_exp == "NULL":
        return []
    # `?1` everywhere: the experiment ID, bound once (NULL selects the sessions without one)
    in_exp = "{alias}.session_id IN (SELECT s.session_id FROM session_traces s WHERE s.experiment_id IS ?1)"
    s_created = col(schema, "session_traces", "created_at", "s")
    s_meta = col(schema, "session_traces", "metadata", "s")
    if has(schema, "session_timesteps", "session_id"):
        steps_cte = (",\nts AS (SELECT t.session_id AS session_id, COUNT(*) AS steps FROM session_timesteps t "
                     f"WHERE {in_exp.format(alias='t')} GROUP BY t.session_id)")
        steps_join = "LEFT JOIN ts ON ts.session_id = s.session_id"
        steps = "ts.steps"
    else:
        steps_cte, steps_join = "", ""
        steps = col(schema, "session_traces", "num_timesteps", "s")
    sql = f"""WITH {session_figures_cte(schema, session_filter=in_exp)}{steps_cte}
SELECT s.session_id AS session_id, {s_created} AS created_at, {s_meta} AS metadata, {steps} AS steps,
       ev.events AS events, msg.messages AS messages, ev.llm_calls AS llm_calls, ev.reward AS reward,
       ev.terminated AS terminated, ev.input_tokens AS input_tokens, ev.output_tokens AS output_tokens,
       ev.total_tokens AS total_tokens, ev.cost_usd AS cost_usd, ev.models AS models, ev.last_event AS last_event
FROM session_traces s LEFT JOIN ev ON ev.session_id = s.session_id
     LEFT JOIN msg ON msg.session_id = s.session_id {steps_join}
WHERE s.experiment_id IS ?1
ORDER BY julianday({s_created}), s.session_id"""
    params = [experiment_id]
    has_msgs = has(schema, "messages")
    out: list[SessionRow] = []
    for r in store.rows(sql, params):
        out.append(SessionRow(
            session_id=r["session_id"], created_at=as_dt(r["created_at"]), steps=as_int(r["steps"]),
            events=as_int(r["events"]), messages=as_int(r["messages"]) if has_msgs else None,
            llm_calls=as_int(r["llm_calls"]) if schema.has_call_records else None,
            reward=None if r["reward"] is None else float(r["reward"]),
            terminated=None if r["terminated"] is None else bool(r["terminated"]),
            input_tokens=as_int(r["input_tokens"]), output_tokens=as_int(r["output_tokens"]),
            total_tokens=as_int(r["total_tokens"]), cost_usd=as_usd(r["cost_usd"] or 0.0),
            models=sorted(m for m in (r["models"] or "").split(",") if m),
            metadata=json_obj(r["metadata"]), last_activity=latest(r["created_at"], r["last_event"])))
    return out
