"""`SessionTracer`: write sessions, timesteps, events, messages and experiments to a trace DB.

The DB has the published `tracing_v3` schema (see :mod:`synth_cli.store.schema`),
so anything that reads traces of the published `synth-ai` package reads ours.

```python
tracer = SessionTracer("traces.db")            # a file, a sqld-layout dir, a sqlite:/// URL or a server
tracer.create_experiment("exp_1", "baseline")
with tracer.session(metadata={"task": "demo"}, experiment_id="exp_1") as session_id:
    with tracer.timestep("step_0", turn_number=0):
        tracer.record_message("hello", message_type="user")
        tracer.record_llm_call(record, system_instance_id="agent")
        tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))
tracer.close()
```

**When rows are written.** By default (`durable="session"`) a session is buffered in memory
and written in one transaction when it ends (also when its `with` block raises: what was
recorded is kept): the fastest mode, and readers never see half a session, but a process
killed with `kill -9` (or the OOM killer) loses the session in progress. With
`durable="timestep"` each timestep is written in its own transaction as it ends (with the
rows recorded outside any timestep since the last write), so a kill loses at most the step
in progress; the price is one transaction (one WAL commit) per step instead of per session,
and readers see a session grow while it runs (its counts are those of the steps written).

**Faults.** A write that fails because the DB is busy (locked past `busy_timeout`, default
30 s) is retried with backoff; if it still cannot be written, the session is spooled to
`<db file>.spool/` next to the DB and written by the next tracer that opens the DB. Each
such event is a warning string, appended to :attr:`SessionTracer.warnings`, passed to
`on_warning` when given, and issued as a :class:`TraceWriteWarning` (Python's `warnings`).

Targets (the readers' targets, parsed by :mod:`synth_cli.store.locate`):

* a file path: created with its parent directories when new;
* an existing directory in sqld layout (`X.db` holding `dbs/<name>/data`), or an empty
  directory / a new one with `layout="sqld"`: the DB is `X.db/dbs/default/data`;
* `sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite+aiosqlite:///…`;
* a libSQL server (`http(s)://`, `ws(s)://`, `libsql://`, token from `LIBSQL_AUTH_TOKEN` or
  `TURSO_AUTH_TOKEN`, or `?authToken=`), written by :mod:`synth_cli.store.remote_writer`;
* nothing: `$SYNTH_TRACES_DB`, else `./synth_ai.db/dbs/default/data`, where `synth-ai traces`
  looks by default.

A path that exists but is not SQLite, or a SQLite DB holding other tables but no
traces, is a :class:`~synth_cli.errors.TraceStoreError`; nothing is written to it.
All SQL is in :mod:`synth_cli.store.writer`, which creates or migrates the schema when the
DB is opened. This module never prints.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
import warnings as _warnings
from contextlib import ContextDecorator, contextmanager
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator, Sequence

from synth_cli._json import dumps as _fast_dumps
from synth_cli.errors import TraceStoreError
from synth_cli.store.schema import EVENT_TYPES, MESSAGE_TYPES
from synth_cli.store.writer import (
    BUSY_TIMEOUT_S,
    CALL_RECORDS_AT,
    SessionBatch,
    Spool,
    TraceWriteWarning,
    WriteError,
    deliver,
    resolve_write_target,
)
from synth_cli.store.writers import open_writer
from synth_cli.tracing.encode import encode_records, record_figures
from synth_cli.tracing.events import BaseEvent, EnvironmentEvent, LMCAISEvent, RuntimeEvent, usd_to_cents
from synth_cli.tracing.models import LLMCallRecord

DEFAULT_TARGET = "synth_ai.db"
DURABILITY = ("session", "timestep")


# --------------------------------------------------------------------------- helpers


_EPOCH = datetime(1970, 1, 1)


def utcnow() -> datetime:
    """Naive UTC, the form the published package stores: `datetime.now(timezone.utc)` without its
    tzinfo (the same microseconds, truncated from the same clock), in a third of the time."""
    return _EPOCH + timedelta(microseconds=time.time_ns() // 1000)


def _naive_utc(value: datetime | None) -> datetime:
    if value is None:
        return utcnow()
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _fmt_precise(value: datetime) -> str:
    """`DateTime` columns the published writer fills from Python: always with microseconds."""
    if value.__class__ is datetime and value.year >= 1000 and value.tzinfo is None:
        return value.isoformat(" ", "microseconds")  # the same text, several times faster
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _fmt_seconds(value: datetime) -> str:
    """Columns the published writer fills with SQL `CURRENT_TIMESTAMP`: whole seconds."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


_STAMP: tuple[int, str] = (0, "1970-01-01 00:00:00")  # the second 0 formatted: a hit is never wrong


def _stamp(now: float) -> str:
    """`_fmt_seconds` of the unix time `now` (UTC), formatted once per second."""
    global _STAMP
    cached = _STAMP
    second = int(now)
    if cached[0] != second:
        cached = _STAMP = (second, time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(second)))
    return cached[1]


def _precise_now() -> str:
    """`_fmt_precise(utcnow())`: the same clock reading and text, its date and time formatted once
    per second (`_stamp`, the UTC calendar of the same second), in under half the time."""
    seconds, micros = divmod(time.time_ns() // 1000, 1_000_000)
    return f"{_stamp(seconds)}.{micros:06d}"


def _json(value: Any) -> str | None:
    """Compact JSON for a TEXT column (None stays NULL); odd keys/objects degrade to strings."""
    if value is None:
        return None
    try:
        return _fast_dumps(value)
    except TypeError:
        import json

        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_fallback)


def _fallback(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    if isinstance(obj, datetime):
        return str(obj)
    return str(obj)


# --------------------------------------------------------------------------- buffers


class _Step:
    __slots__ = ("step_id", "step_index", "turn_number", "started_at", "metadata", "completed_at",
                 "num_events", "num_messages", "meta_json")

    def __init__(self, step_id: str, step_index: int, turn_number: int | None, started_at: str,
                 metadata: dict[str, Any]):
        self.step_id = step_id
        self.step_index = step_index
        self.turn_number = turn_number
        self.started_at = started_at  # `_fmt_precise` text, as completed_at (None while the step is open)
        self.metadata = metadata
        self.completed_at: str | None = None
        self.num_events = 0
        self.num_messages = 0
        self.meta_json = _json({"step_id": step_id})  # the metadata of a row recorded in it with none

    def row(self) -> tuple:  # STEP_COLUMNS
        return (self.step_id, self.step_index, self.turn_number, self.started_at, self.completed_at,
                self.num_events, self.num_messages, "{}" if not self.metadata else _json(self.metadata))


class _Session:
    """A session being recorded; `steps/events/messages` hold what is not written yet."""

    def __init__(self, session_id: str, created_at: datetime, metadata: dict[str, Any],
                 experiment_id: str | None):
        self.session_id = session_id
        self.created_at = created_at
        self.metadata = metadata
        self.experiment_id = experiment_id
        self.steps: list[_Step] = []
        self.step_ids: set[str] = set()
        self.events: list[tuple[str | None, tuple]] = []    # (step_id, EVENT_COLUMNS row)
        self.messages: list[tuple[str | None, tuple]] = []  # (step_id, MESSAGE_COLUMNS row)
        self.written = (0, 0, 0)   # timesteps, events, messages already written (durable mode)
        self.units = 0             # batches handed to the writer (durable mode)
        self.spooled = False       # once a unit is spooled, the rest follow it there (order)
        self.json_cache: dict = {}  # the JSON of plain text messages seen in this session (tracing.encode)
        self.figures: dict[int, tuple] = {}  # index in `events` -> (llm_calls, cost_usd) of its call records

    def batch(self, partial: bool) -> SessionBatch:
        steps, events, messages = self.written
        return SessionBatch(
            self.session_id, _fmt_precise(self.created_at), _json(self.metadata), self.experiment_id,
            steps + len(self.steps), events + len(self.events), messages + len(self.messages),
            [s.row() for s in self.steps], self.events, self.messages, partial=partial,
            figures=[self.figures.get(i) for i in range(len(self.events))] if self.figures else None)


# --------------------------------------------------------------------------- the tracer


class SessionTracer:
    """Record agent sessions into a trace DB (sync). One active session at a time per tracer.

    `durable`: `"session"` (default: one transaction per session) or `"timestep"` (one per
    timestep, a kill loses at most the step in progress); see the module docstring.
    `busy_timeout`: seconds a write waits for another writer's lock before it is retried
    (default 30, or `$SYNTH_TRACES_BUSY_TIMEOUT`). `on_warning`: called with each warning
    (a session spooled, a spooled session replayed or not).
    """

    def __init__(self, target: str | os.PathLike | None = None, *, layout: str = "auto",
                 durable: str = "session", busy_timeout: float | None = None,
                 on_warning: Callable[[str], Any] | None = None):
        if durable not in DURABILITY:
            raise ValueError(f"durable must be 'session' or 'timestep', not {durable!r}")
        if target is None:  # $SYNTH_TRACES_DB, else ./synth_ai.db/dbs/default/data (where `traces` looks)
            target = os.environ.get("SYNTH_TRACES_DB") or DEFAULT_TARGET
            if target == DEFAULT_TARGET and layout == "auto":
                layout = "sqld"
        if busy_timeout is None:
            busy_timeout = _env_timeout()
        self.target = os.fspath(target)
        self.durable = durable
        self.on_warning = on_warning
        self.warnings: list[str] = []
        self._writer = open_writer(self.target, layout=layout, busy_timeout=busy_timeout)
        self.path = getattr(self._writer, "path", None)
        self.label = self._writer.label
        self._lock = threading.RLock()
        self._session: _Session | None = None
        self._step: _Step | None = None
        self.sessions_written = 0
        self.sessions_spooled = 0
        replayed = getattr(self._writer, "replayed", [])
        if replayed:
            self._warn(f"{self.label}: wrote {len(replayed)} spooled session"
                       f"{'' if len(replayed) == 1 else 's'} from {self._writer.spool_dir}")
        for text in getattr(self._writer, "warnings", []):
            self._warn(text)

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        if self.on_warning is not None:
            self.on_warning(text)
        _warnings.warn(text, TraceWriteWarning, stacklevel=3)

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "SessionTracer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._writer is None

    def close(self) -> None:
        """Save a session still open (nothing recorded is dropped), then close the DB."""
        with self._lock:
            if self._writer is None:
                return
            try:
                if self._session is not None:
                    self.end_session()
            finally:
                writer, self._writer = self._writer, None
                writer.close()

    def _db(self):
        if self._writer is None:
            raise TraceStoreError(f"{self.label}: the tracer is closed")
        return self._writer

    # -- experiments ------------------------------------------------------------------------
    def create_experiment(self, experiment_id: str | None, name: str, description: str | None = None,
                          configuration: dict[str, Any] | None = None,
                          metadata: dict[str, Any] | None = None) -> str:
        """Create an experiment, or update an existing one's name (and description, configuration,
        metadata when given); returns its id (generated as `exp_<12 hex>` when None)."""
        experiment_id = experiment_id or f"exp_{uuid.uuid4().hex[:12]}"
        if not name:
            raise ValueError("an experiment needs a name")
        now = _fmt_seconds(utcnow())
        with self._lock:
            self._db().write_experiment((experiment_id, name, description, now, now, _json(configuration),
                                         _json(metadata)))
        return experiment_id

    # -- sessions -----------------------------------------------------------------------------
    @property
    def current_session_id(self) -> str | None:
        return self._session.session_id if self._session else None

    @property
    def current_step_id(self) -> str | None:
        return self._step.step_id if self._step else None

    def start_session(self, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                      experiment_id: str | None = None, created_at: datetime | None = None) -> str:
        with self._lock:
            if self._session is not None:
                raise RuntimeError(f"session {self._session.session_id} is still active; end it first")
            writer = self._db()
            session_id = session_id or str(uuid.uuid4())
            if writer.has_session(session_id):
                raise TraceStoreError(f"{self.label}: session {session_id} already exists",
                                      hint="use a new session id (or none: one is generated)")
            if experiment_id is not None and not writer.has_experiment(experiment_id):
                raise TraceStoreError(f"{self.label}: no experiment {experiment_id}",
                                      hint="create it first with tracer.create_experiment(id, name)")
            self._session = _Session(session_id, _naive_utc(created_at), dict(metadata or {}), experiment_id)
            self._step = None
            return session_id

    def end_session(self) -> str:
        """Write the active session (one transaction; its last part in durable mode) and return its id."""
        with self._lock:
            session = self._require_session()
            now = _precise_now()
            for step in session.steps:
                if step.completed_at is None:
                    step.completed_at = now
            self._session = None
            self._step = None
            durable = self.durable == "timestep"
            if not durable or session.units == 0 or session.steps or session.events or session.messages:
                self._save(session, partial=durable)
            if session.spooled:
                self.sessions_spooled += 1
            else:
                self.sessions_written += 1
            return session.session_id

    @contextmanager
    def session(self, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                experiment_id: str | None = None, created_at: datetime | None = None) -> Iterator[str]:
        """A session written when the block ends, also when it raises (what was recorded is kept)."""
        sid = self.start_session(session_id, metadata, experiment_id, created_at)
        try:
            yield sid
        finally:
            if self._session is not None and self._session.session_id == sid:
                self.end_session()

    def _require_session(self) -> _Session:
        if self._session is None:
            raise RuntimeError("no active session; use `with tracer.session():` or tracer.start_session()")
        return self._session

    # -- timesteps ----------------------------------------------------------------------------
    def start_timestep(self, step_id: str, turn_number: int | None = None,
                       metadata: dict[str, Any] | None = None) -> str:
        with self._lock:
            session = self._require_session()
            if self._step is not None:
                raise RuntimeError(f"timestep {self._step.step_id} is still open; end it first")
            step_id = str(step_id)
            if step_id in session.step_ids:
                raise ValueError(f"timestep {step_id!r} already exists in session {session.session_id}")
            step = _Step(step_id, len(session.step_ids), turn_number, _precise_now(), dict(metadata or {}))
            session.steps.append(step)
            session.step_ids.add(step_id)
            self._step = step
            return step_id

    def end_timestep(self, step_id: str | None = None) -> None:
        with self._lock:
            session = self._require_session()
            step = self._step
            if step_id is not None and (step is None or step.step_id != step_id):
                step = next((s for s in session.steps if s.step_id == step_id), None)
                if step is None:
                    if step_id in session.step_ids:
                        return  # already ended and written (durable mode)
                    raise ValueError(f"no timestep {step_id!r} in session {session.session_id}")
            if step is not None and step.completed_at is None:
                step.completed_at = _precise_now()
            if step is self._step:
                self._step = None
            if self.durable == "timestep" and step is not None and self._step is None:
                self._save(session, partial=True)

    def timestep(self, step_id: str, turn_number: int | None = None,
                 metadata: dict[str, Any] | None = None) -> "_TimestepBlock":
        """`with tracer.timestep("step_0", turn_number=0) as step_id:` a timestep, ended when the block ends."""
        return _TimestepBlock(self, step_id, turn_number, metadata)

    # -- recording ----------------------------------------------------------------------------
    def record_message(self, content: Any, message_type: str = "user", *, event_time: float | None = None,
                       message_time: int | None = None, metadata: dict[str, Any] | None = None) -> None:
        """A message crossing a system boundary (user input, agent reply, tool result…)."""
        if message_type not in MESSAGE_TYPES:
            raise ValueError(f"message_type must be one of {', '.join(MESSAGE_TYPES)}, not {message_type!r}")
        if content is None:
            raise ValueError("message content is required")
        if not isinstance(content, str):
            content = _json(content)
        with self._lock:
            session = self._require_session()
            step = self._step
            if step is not None:
                step.num_messages += 1
                if metadata:
                    meta = _json({"step_id": step.step_id, **{k: v for k, v in metadata.items() if k != "step_id"}})
                else:
                    meta = step.meta_json
            else:
                meta = _json(dict(metadata or {}))
            now = time.time()
            row = (message_type, content, _stamp(now), float(event_time) if event_time is not None else now,
                   message_time, meta)
            session.messages.append((step.step_id if step else None, row))

    def record_event(self, event: BaseEvent) -> BaseEvent:
        """Record an `LMCAISEvent`, `EnvironmentEvent` or `RuntimeEvent`; returns it."""
        if not isinstance(event, BaseEvent) or event.event_type not in EVENT_TYPES:
            raise TypeError(f"expected an LMCAISEvent, EnvironmentEvent or RuntimeEvent, got {type(event).__name__}")
        with self._lock:
            session = self._require_session()
            step = self._step
            cls = event.__class__
            if cls is RuntimeEvent and step is not None and not event.metadata:  # stored_metadata(), inline
                step.num_events += 1
                meta_json = _json({"step_id": step.step_id, "actions": list(event.actions)})
            elif step is not None:  # step_id first, as the published writer orders it
                meta = event.stored_metadata() if isinstance(event, RuntimeEvent) else event.metadata
                step.num_events += 1
                if meta:
                    meta_json = _json({"step_id": step.step_id, **{k: v for k, v in meta.items() if k != "step_id"}})
                else:
                    meta_json = step.meta_json
            else:
                meta = event.stored_metadata() if isinstance(event, RuntimeEvent) else event.metadata
                meta_json = _json(dict(meta or {}))
            time_record = event.time_record
            message_time = time_record.message_time
            if message_time is None and step is not None:
                message_time = step.turn_number
            if cls is LMCAISEvent or cls is EnvironmentEvent or cls is RuntimeEvent:
                row = _event_row(event, cls, message_time, meta_json, session.json_cache)  # columns(), inline
            else:
                cols = event.columns()
                call_records = None
                if isinstance(event, LMCAISEvent) and event.call_records:
                    call_records = encode_records(event.call_records, _json, session.json_cache)
                terminated = cols.get("terminated")
                truncated = cols.get("truncated")
                row = (
                    event.event_type, event.system_instance_id or None, time_record.event_time, message_time,
                    _stamp(time.time()), cols.get("model_name"), cols.get("provider"), cols.get("input_tokens"),
                    cols.get("output_tokens"), cols.get("total_tokens"), cols.get("cost_usd"),
                    cols.get("latency_ms"), cols.get("span_id"), cols.get("trace_id"), call_records,
                    cols.get("reward"), None if terminated is None else int(terminated),
                    None if truncated is None else int(truncated), _json(cols.get("system_state_before")),
                    _json(cols.get("system_state_after")), meta_json, _json(event.event_metadata),
                )
            if row[CALL_RECORDS_AT] is not None:
                figures = record_figures(event.call_records)
                if figures is not None:
                    session.figures[len(session.events)] = figures
            session.events.append((step.step_id if step else None, row))
            return event

    def record_llm_call(self, record: LLMCallRecord | dict | Sequence[LLMCallRecord | dict], *,
                        system_instance_id: str = "llm", cost_usd: float | None = None,
                        metadata: dict[str, Any] | None = None, event_metadata: list[Any] | None = None,
                        span_id: str | None = None, trace_id: str | None = None,
                        system_state_before: dict[str, Any] | None = None,
                        system_state_after: dict[str, Any] | None = None,
                        event_time: float | None = None, message_time: int | None = None) -> LMCAISEvent:
        """A `cais` event for one call record (or several, e.g. retries).

        Model, provider, tokens, cost and latency columns are derived from the records
        (see :meth:`LMCAISEvent.from_records`); `cost_usd` (USD) overrides the summed
        record costs and is stored in cents.
        """
        if isinstance(record, LLMCallRecord):  # one record: the derivation of from_records, spelled out
            build, records = LMCAISEvent.for_call, record
        else:
            records = [record] if isinstance(record, dict) else list(record)
            records = [LLMCallRecord.from_dict(r) if isinstance(r, dict) else r for r in records]
            for r in records:
                if not isinstance(r, LLMCallRecord):
                    raise TypeError(f"expected LLMCallRecord, got {type(r).__name__}")
            build = LMCAISEvent.from_records
        event = build(
            records, system_instance_id=system_instance_id, cost_usd=cost_usd, metadata=dict(metadata or {}),
            event_metadata=event_metadata, span_id=span_id, trace_id=trace_id,
            system_state_before=system_state_before, system_state_after=system_state_after,
            event_time=event_time, message_time=message_time)
        self.record_event(event)
        return event

    # -- writing --------------------------------------------------------------------------------
    def _save(self, session: _Session, *, partial: bool) -> None:
        """Hand what `session` holds unwritten to the writer (retried, else spooled); then forget it."""
        writer = self._db()
        batch = session.batch(partial)
        session.units += 1
        if session.spooled:  # an earlier unit is in the spool: keep the order, spool this one too
            try:
                path = Spool(writer.spool_dir).save(batch, session.units)
            except OSError as exc:
                raise WriteError(f"{self.label}: session {session.session_id} could not be spooled "
                                 f"({exc.strerror or exc})") from exc
            self._warn(f"{self.label}: session {session.session_id}: step kept in {path}")
        else:
            delivery = deliver(writer, batch, seq=session.units)
            if delivery.status == "spooled":
                session.spooled = True
            if delivery.warning:
                self._warn(delivery.warning)
        session.written = (batch.num_timesteps, batch.num_events, batch.num_messages)
        session.steps = []
        session.events = []
        session.figures = {}
        session.messages = []


class _TimestepBlock(ContextDecorator):
    """What `SessionTracer.timestep()` returns: starts the step on entry, ends it on exit (also on
    an exception, which then propagates). A small class rather than `@contextmanager`: one is
    made per step, and a generator-based one costs several times more."""

    __slots__ = ("_tracer", "_args", "_sid")

    def __init__(self, tracer: "SessionTracer", step_id: str, turn_number: int | None,
                 metadata: dict[str, Any] | None):
        self._tracer = tracer
        self._args = (step_id, turn_number, metadata)
        self._sid: str | None = None

    def __enter__(self) -> str:
        self._sid = self._tracer.start_timestep(*self._args)
        return self._sid

    def __exit__(self, *exc: Any) -> None:
        tracer, sid = self._tracer, self._sid
        if tracer._step is not None and tracer._step.step_id == sid:
            tracer.end_timestep(sid)


class AsyncSessionTracer:
    """The same tracer for asyncio agents: every method of :class:`SessionTracer`, awaited.

    ```python
    async with AsyncSessionTracer("traces.db") as tracer:
        async with tracer.session(metadata={"task": "demo"}) as session_id:
            async with tracer.timestep("step_0", turn_number=0):
                await tracer.record_message("hello", message_type="user")
                await tracer.record_llm_call(record, system_instance_id="agent")
    ```

    Opening the DB, creating experiments, starting a session (it checks the id is new) and
    every write (a session's end; each timestep's end with `durable="timestep"`; closing) run
    in a thread of the tracer's own, one at a time and in order, so the event loop never
    waits on SQLite, a lock held by another writer or a retry's backoff. Recording calls only
    append to memory and run inline. Arguments are those of :class:`SessionTracer`.
    """

    def __init__(self, target: str | os.PathLike | None = None, **options: Any):
        self._target = target
        self._options = options
        self._tracer: SessionTracer | None = None
        self._executor = None

    # -- plumbing ------------------------------------------------------------------------------
    async def _off_loop(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import asyncio
        import functools

        if self._executor is None:
            from concurrent.futures import ThreadPoolExecutor

            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synth-tracer")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    @property
    def tracer(self) -> SessionTracer:
        """The underlying sync tracer (opened by `open()` / `async with`)."""
        if self._tracer is None:
            raise RuntimeError("the tracer is not open; use `async with AsyncSessionTracer(...)` or await open()")
        return self._tracer

    async def open(self) -> "AsyncSessionTracer":
        if self._tracer is None:
            self._tracer = await self._off_loop(SessionTracer, self._target, **self._options)
        return self

    async def close(self) -> None:
        """Save a session still open, close the DB, stop the writer thread."""
        if self._tracer is not None:
            await self._off_loop(self._tracer.close)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def __aenter__(self) -> "AsyncSessionTracer":
        return await self.open()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -- the sync tracer's state ---------------------------------------------------------------
    @property
    def current_session_id(self) -> str | None:
        return self.tracer.current_session_id

    @property
    def current_step_id(self) -> str | None:
        return self.tracer.current_step_id

    @property
    def warnings(self) -> list[str]:
        return self.tracer.warnings

    @property
    def path(self):
        return self.tracer.path

    @property
    def closed(self) -> bool:
        return self._tracer is None or self._tracer.closed

    # -- the API ---------------------------------------------------------------------------------
    async def create_experiment(self, *args: Any, **kwargs: Any) -> str:
        return await self._off_loop(self.tracer.create_experiment, *args, **kwargs)

    async def start_session(self, *args: Any, **kwargs: Any) -> str:
        return await self._off_loop(self.tracer.start_session, *args, **kwargs)

    async def end_session(self) -> str:
        return await self._off_loop(self.tracer.end_session)

    async def start_timestep(self, step_id: str, turn_number: int | None = None,
                             metadata: dict[str, Any] | None = None) -> str:
        return self.tracer.start_timestep(step_id, turn_number, metadata)

    async def end_timestep(self, step_id: str | None = None) -> None:
        if self.tracer.durable == "timestep":
            await self._off_loop(self.tracer.end_timestep, step_id)
        else:
            self.tracer.end_timestep(step_id)

    async def record_message(self, *args: Any, **kwargs: Any) -> None:
        self.tracer.record_message(*args, **kwargs)

    async def record_event(self, event: BaseEvent) -> BaseEvent:
        return self.tracer.record_event(event)

    async def record_llm_call(self, *args: Any, **kwargs: Any) -> LMCAISEvent:
        return self.tracer.record_llm_call(*args, **kwargs)

    def session(self, session_id: str | None = None, metadata: dict[str, Any] | None = None,
                experiment_id: str | None = None, created_at: datetime | None = None):
        """`async with tracer.session(...) as session_id:` written when the block ends, also when it raises."""
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def block():
            sid = await self.start_session(session_id, metadata, experiment_id, created_at)
            try:
                yield sid
            finally:
                if self.tracer.current_session_id == sid:
                    await self.end_session()

        return block()

    def timestep(self, step_id: str, turn_number: int | None = None, metadata: dict[str, Any] | None = None):
        """`async with tracer.timestep("step_0"):`, ended when the block ends (written then in durable mode)."""
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def block():
            sid = await self.start_timestep(step_id, turn_number, metadata)
            try:
                yield sid
            finally:
                if self.tracer.current_step_id == sid:
                    await self.end_timestep(sid)

        return block()


def _event_row(event: Any, cls: type, message_time: int | None, meta_json: str | None, cache: dict) -> tuple:
    """EVENT_COLUMNS of an exact LMCAISEvent / EnvironmentEvent / RuntimeEvent: what `columns()` gives, inline."""
    model_name = provider = input_tokens = output_tokens = total_tokens = cost = latency = span_id = None
    trace_id = call_records = reward = terminated = truncated = before = after = None
    if cls is LMCAISEvent:
        model_name = event.model_name or None
        provider = event.provider
        input_tokens = event.input_tokens
        output_tokens = event.output_tokens
        total_tokens = event.total_tokens
        cost = usd_to_cents(event.cost_usd)
        latency = event.latency_ms
        span_id = event.span_id
        trace_id = event.trace_id
        before = event.system_state_before
        after = event.system_state_after
        if event.call_records:
            call_records = encode_records(event.call_records, _json, cache)
    elif cls is EnvironmentEvent:
        reward = None if event.reward is None else float(event.reward)
        terminated = int(bool(event.terminated))
        truncated = int(bool(event.truncated))
        before = event.system_state_before
        after = event.system_state_after
    return (event.event_type, event.system_instance_id or None, event.time_record.event_time, message_time,
            _stamp(time.time()), model_name, provider, input_tokens, output_tokens, total_tokens, cost, latency,
            span_id, trace_id, call_records, reward, terminated, truncated,
            None if before is None else _json(before), None if after is None else _json(after), meta_json,
            None if event.event_metadata is None else _json(event.event_metadata))


def _env_timeout() -> float:
    if not os.environ.get("SYNTH_TRACES_BUSY_TIMEOUT", "").strip():
        return BUSY_TIMEOUT_S  # what env_number gives, without importing the config module (~1-9 ms)
    from synth_cli.config import env_number

    return env_number("SYNTH_TRACES_BUSY_TIMEOUT", BUSY_TIMEOUT_S, high=1e6, unit="seconds", error=TraceStoreError)


__all__ = ["AsyncSessionTracer", "SessionTracer", "TraceWriteWarning", "resolve_write_target", "utcnow"]
