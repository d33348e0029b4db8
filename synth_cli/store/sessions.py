"""One session step by step (`session ID`): resolution by prefix and the detail.

Never prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from synth_cli.errors import TraceStoreError, UsageError
from synth_cli.store.reader import TraceStore
from synth_cli.store.sql import (
    EVENT_TYPES,
    MAX_CANDIDATES,
    as_dt,
    as_usd,
    col,
    cost_usd_sql,
    has,
    json_obj,
    opt_int,
    tokens_sql,
)
from synth_cli.tracing.models import LLMCallRecord, parse_call_records, parse_datetime

#: rows of `events` per page when a session's events are streamed from a libSQL server
EVENT_PAGE_SIZE = 100


def find_sessions(store: TraceStore, prefix: str, *, limit: int = MAX_CANDIDATES + 1) -> list[str]:
    """Session IDs equal to `prefix` or starting with it (case-insensitive), exact match first."""
    rows = store.rows(
        "SELECT session_id FROM session_traces WHERE session_id = ? "
        "OR lower(substr(session_id, 1, length(?))) = lower(?) "
        "ORDER BY session_id = ? DESC, session_id LIMIT ?", [prefix, prefix, prefix, prefix, int(limit)])
    return [r[0] for r in rows]


def recent_sessions(store: TraceStore, limit: int = 3) -> list[str]:
    created = col(store.schema, "session_traces", "created_at")
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
                               "created_at": self.created_at, "event_time": _epoch_time(self.event_time),
                               "timestep_id": self.timestep_id}
        if self.event_type == "cais":
            out.update(model=self.model, provider=self.provider, input_tokens=self.input_tokens,
                       output_tokens=self.output_tokens, total_tokens=self.total_tokens,
                       cost_usd=as_usd(self.cost_usd), latency_ms=self.latency_ms,
                       call_records=None if self.calls is None else [_record_times(c.to_dict())
                                                                     for c in self.calls],
                       malformed_call_records=self.malformed_call_records)
        elif self.event_type == "environment":
            out.update(reward=self.reward, terminated=self.terminated, truncated=self.truncated,
                       state_after=self.state_after)
        out["metadata"] = self.metadata
        return out


#: the datetime fields of a call record and its parts (stored as `str(datetime)`)
_RECORD_TIMES = frozenset({"started_at", "completed_at", "received_at"})


def _record_times(value: Any) -> Any:
    """A call record's dict with its times as datetimes again, so that --json writes them like every time."""
    if isinstance(value, dict):
        return {k: (parse_datetime(v) if k in _RECORD_TIMES and isinstance(v, str) else _record_times(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [_record_times(v) for v in value]
    return value


def _epoch_time(value: Any) -> Any:
    """events.event_time is epoch seconds: a datetime, so that --json writes it like every time."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        from datetime import timezone

        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return value
    return value


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
            "cost_usd": as_usd(sum(e.cost_usd or 0.0 for e in cais)),
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
    s_exp = col(schema, "session_traces", "experiment_id", "s")
    exp_join = ""
    exp_name = "NULL"
    if s_exp != "NULL" and has(schema, "experiments", "name"):
        exp_join = "LEFT JOIN experiments x ON x.experiment_id = s.experiment_id"
        exp_name = "x.name"
    head = store.one(
        f"SELECT s.session_id AS session_id, {col(schema, 'session_traces', 'created_at', 's')} AS created_at, "
        f"{s_exp} AS experiment_id, {exp_name} AS experiment_name, "
        f"{col(schema, 'session_traces', 'metadata', 's')} AS metadata "
        f"FROM session_traces s {exp_join} WHERE s.session_id = ?", [session_id])
    if head is None:
        raise TraceStoreError(f"no session {session_id!r} in {store.label}")
    detail = SessionDetail(session_id=head["session_id"], db=store.label, created_at=as_dt(head["created_at"]),
                           experiment_id=head["experiment_id"], experiment_name=head["experiment_name"],
                           metadata=json_obj(head["metadata"]), call_records=schema.has_call_records)

    steps: dict[int | None, TimestepDetail] = {}
    if has(schema, "session_timesteps", "session_id"):
        def c(name: str) -> str:
            return col(schema, "session_timesteps", name)

        order = "step_index" if has(schema, "session_timesteps", "step_index") else "id"
        for r in store.rows(
                f"SELECT id, {c('step_id')} AS step_id, {c('step_index')} AS step_index, "
                f"{c('turn_number')} AS turn_number, {c('started_at')} AS started_at, "
                f"{c('completed_at')} AS completed_at, {c('step_metadata')} AS step_metadata "
                f"FROM session_timesteps WHERE session_id = ? ORDER BY {order}, id", [session_id]):
            steps[r["id"]] = TimestepDetail(
                id=r["id"], step_id=r["step_id"], step_index=opt_int(r["step_index"]),
                turn_number=opt_int(r["turn_number"]), started_at=as_dt(r["started_at"]),
                completed_at=as_dt(r["completed_at"]), metadata=json_obj(r["step_metadata"]))

    def step_for(timestep_id: Any) -> TimestepDetail:
        if timestep_id not in steps:  # events/messages outside any recorded timestep
            steps[timestep_id if timestep_id is not None else None] = TimestepDetail(
                id=None, step_id=None if timestep_id is None else f"timestep {timestep_id}", step_index=None,
                turn_number=None, started_at=None, completed_at=None, metadata=None)
        return steps[timestep_id]

    def e(name: str) -> str:
        return col(schema, "events", name, "e")

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
            id=r["id"], event_type=r["event_type"], system=r["system"], created_at=as_dt(r["created_at"]),
            event_time=r["event_time"], timestep_id=r["timestep_id"], metadata=json_obj(r["metadata"]))
        if ev.event_type == "cais":
            ev.model, ev.provider = r["model"], r["provider"]
            ev.input_tokens, ev.output_tokens = opt_int(r["input_tokens"]), opt_int(r["output_tokens"])
            ev.total_tokens = opt_int(r["total_tokens"])
            ev.cost_usd = None if r["cost_usd"] is None else float(r["cost_usd"])
            ev.latency_ms = opt_int(r["latency_ms"])
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
            ev.state_after = json_obj(r["state_after"])
        step_for(r["timestep_id"]).events.append(ev)

    if has(schema, "messages", "session_id"):
        def m(name: str) -> str:
            return col(schema, "messages", name)

        for r in store.rows(
                f"SELECT id, {m('timestep_id')} AS timestep_id, {m('message_type')} AS message_type, "
                f"{m('content')} AS content, {m('timestamp')} AS timestamp, {m('metadata')} AS metadata "
                f"FROM messages WHERE session_id = ? ORDER BY id", [session_id]):
            step_for(r["timestep_id"]).messages.append({
                "id": r["id"], "type": r["message_type"], "content": json_obj(r["content"])
                if _looks_like_json(r["content"]) else r["content"],
                "timestamp": as_dt(r["timestamp"]), "metadata": json_obj(r["metadata"])})

    ordered = [s for k, s in steps.items() if k is not None and s.id is not None]
    extra = [s for k, s in steps.items() if k is None or s.id is None]
    detail.timesteps = ordered + extra
    return detail


def _looks_like_json(text: Any) -> bool:
    return isinstance(text, str) and text[:1] in ("{", "[")
