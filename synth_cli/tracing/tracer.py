"""`SessionTracer`: write sessions, timesteps, events, messages and experiments to a trace DB.

The DB has the published `tracing_v3` schema (see :mod:`synth_cli.store.schema`),
so anything that reads traces of the published `synth-ai` package reads ours.

```python
tracer = SessionTracer("traces.db")            # a file, a sqld-layout dir or a sqlite:/// URL
tracer.create_experiment("exp_1", "baseline")
with tracer.session(metadata={"task": "demo"}, experiment_id="exp_1") as session_id:
    with tracer.timestep("step_0", turn_number=0):
        tracer.record_message("hello", message_type="user")
        tracer.record_llm_call(record, system_instance_id="agent")
        tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))
tracer.close()
```

A session is buffered in memory and written in one transaction when it ends
(also when its `with` block raises: what was recorded is kept). Targets:

* a file path: created with its parent directories when new;
* an existing directory in sqld layout (`X.db` holding `dbs/<name>/data`), or an empty
  directory / a new one with `layout="sqld"`: the DB is `X.db/dbs/default/data`;
* `sqlite:///relative/path`, `sqlite:////absolute/path`, `sqlite+aiosqlite:///…`;
* nothing: `$SYNTH_TRACES_DB`, else `./synth_ai.db/dbs/default/data`, where `synth-ai traces`
  looks by default.

A path that exists but is not SQLite, or a SQLite DB holding other tables but no
traces, is a :class:`~synth_cli.errors.TraceStoreError`; nothing is written to it.
The schema's migrations run here, when a DB is opened for writing. This module
never prints.
"""

from __future__ import annotations

import os
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from synth_cli.errors import TraceStoreError
from synth_cli.tracing.events import BaseEvent, LMCAISEvent, RuntimeEvent
from synth_cli.tracing.models import LLMCallRecord
from synth_cli.store.schema import EVENT_TYPES, MESSAGE_TYPES, MIGRATIONS_TABLE

SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_URL_PREFIXES = ("sqlite+aiosqlite:///", "sqlite:///")
REMOTE_SCHEMES = ("http://", "https://", "ws://", "wss://", "libsql://")
BUSY_TIMEOUT_S = 30.0
DEFAULT_TARGET = "synth_ai.db"

_EVENT_COLUMNS = (
    "session_id", "timestep_id", "event_type", "system_instance_id", "event_time", "message_time",
    "created_at", "model_name", "provider", "input_tokens", "output_tokens", "total_tokens", "cost_usd",
    "latency_ms", "span_id", "trace_id", "call_records", "reward", "terminated", "truncated",
    "system_state_before", "system_state_after", "metadata", "event_metadata",
)
_MESSAGE_COLUMNS = (
    "session_id", "timestep_id", "message_type", "content", "timestamp", "event_time", "message_time",
    "metadata",
)


# --------------------------------------------------------------------------- helpers


def utcnow() -> datetime:
    """Naive UTC, the form the published package stores."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _naive_utc(value: datetime | None) -> datetime:
    if value is None:
        return utcnow()
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _fmt_precise(value: datetime) -> str:
    """`DateTime` columns the published writer fills from Python: always with microseconds."""
    return value.strftime("%Y-%m-%d %H:%M:%S.%f")


def _fmt_seconds(value: datetime) -> str:
    """Columns the published writer fills with SQL `CURRENT_TIMESTAMP`: whole seconds."""
    return value.strftime("%Y-%m-%d %H:%M:%S")


def _json(value: Any) -> str | None:
    """Compact JSON for a TEXT column (None stays NULL); odd keys/objects degrade to strings."""
    if value is None:
        return None
    from synth_cli import _json as fastjson

    try:
        return fastjson.dumps(value)
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


def resolve_write_target(target: str | os.PathLike, layout: str = "auto") -> Path:
    """The SQLite file a tracer writes for `target` (see the module docstring); creates nothing."""
    if layout not in ("auto", "file", "sqld"):
        raise ValueError(f"layout must be 'auto', 'file' or 'sqld', not {layout!r}")
    text = os.fspath(target)
    lowered = text.lower()
    if lowered.startswith(REMOTE_SCHEMES):
        raise TraceStoreError(f"{text}: SessionTracer writes local SQLite files, not libSQL servers",
                              hint="trace into a local file (sqld can serve its directory)")
    for prefix in SQLITE_URL_PREFIXES:
        if lowered.startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        if lowered.startswith("sqlite:"):
            raise TraceStoreError(f"{text}: unsupported SQLite URL",
                                  hint="use sqlite:///relative/path or sqlite:////absolute/path")
    if not text:
        raise TraceStoreError("empty trace DB path")
    path = Path(text).expanduser()
    if path.is_dir():
        return _sqld_data_file(path)
    if layout == "sqld" and not path.exists():
        return path / "dbs" / "default" / "data"
    return path


def _sqld_data_file(path: Path) -> Path:
    if (path / "data").is_file():  # X.db/dbs/<name>
        return path / "data"
    for base in (path / "dbs", path):
        if base.is_dir():
            found = sorted(p for p in base.glob("*/data") if p.is_file())
            if len(found) == 1:
                return found[0]
            if found:
                default = [p for p in found if p.parent.name == "default"]
                if default:
                    return default[0]
                names = ", ".join(p.parent.name for p in found)
                raise TraceStoreError(f"{path}: holds several databases ({names})",
                                      hint=f"name one, e.g. {found[0].parent}")
    if path.name == "dbs":
        return path / "default" / "data"
    if (path / "dbs").is_dir() or path.suffix == ".db" or not any(path.iterdir()):
        return path / "dbs" / "default" / "data"
    raise TraceStoreError(f"{path}: is a directory, not a trace database",
                          hint="name a DB file (e.g. traces.db) or a sqld-layout directory (X.db)")


def _open_for_writing(path: Path):
    """Connect to `path` (created when new), refuse non-trace files, apply pending migrations."""
    import sqlite3

    import sqlite_utils

    from synth_cli.store.schema import migrate

    if path.exists():
        if path.is_dir():
            raise TraceStoreError(f"{path}: is a directory, not a trace database")
        try:
            with open(path, "rb") as fh:
                header = fh.read(16)
        except OSError as exc:
            raise TraceStoreError(f"{path}: cannot read ({exc.strerror or exc})") from exc
        if header and header != SQLITE_MAGIC:
            raise TraceStoreError(f"{path}: not a SQLite database (corrupt or another file type)",
                                  hint="point the tracer at a new path or an existing trace DB")
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TraceStoreError(f"{path.parent}: cannot create directory ({exc.strerror or exc})") from exc
    conn = None
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_S, isolation_level=None,
                               check_same_thread=False)
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and "session_traces" not in tables and MIGRATIONS_TABLE not in tables:
            raise TraceStoreError(
                f"{path}: a SQLite database without trace tables; refusing to add them",
                hint="point the tracer at a new path or an existing trace DB")
        if "session_traces" not in tables:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(sqlite_utils.Database(conn))
        return conn
    except TraceStoreError:
        if conn is not None:
            conn.close()
        raise
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        text = str(exc)
        if "not a database" in text or "malformed" in text:
            raise TraceStoreError(f"{path}: corrupt SQLite database ({text})") from exc
        raise TraceStoreError(f"{path}: {text}") from exc


# --------------------------------------------------------------------------- buffers


@dataclass
class _Step:
    step_id: str
    step_index: int
    turn_number: int | None
    started_at: datetime
    metadata: dict[str, Any]
    completed_at: datetime | None = None
    num_events: int = 0
    num_messages: int = 0


@dataclass
class _Session:
    session_id: str
    created_at: datetime
    metadata: dict[str, Any]
    experiment_id: str | None
    steps: list[_Step] = field(default_factory=list)
    step_ids: set[str] = field(default_factory=set)
    events: list[tuple[str | None, tuple]] = field(default_factory=list)  # (step_id, row without FKs)
    messages: list[tuple[str | None, tuple]] = field(default_factory=list)


# --------------------------------------------------------------------------- the tracer


class SessionTracer:
    """Record agent sessions into a trace DB (sync). One active session at a time per tracer."""

    def __init__(self, target: str | os.PathLike | None = None, *, layout: str = "auto"):
        if target is None:  # $SYNTH_TRACES_DB, else ./synth_ai.db/dbs/default/data (where `traces` looks)
            target = os.environ.get("SYNTH_TRACES_DB") or DEFAULT_TARGET
            if target == DEFAULT_TARGET and layout == "auto":
                layout = "sqld"
        self.target = os.fspath(target)
        self.path = resolve_write_target(target, layout)
        self._conn = _open_for_writing(self.path)
        self._lock = threading.RLock()
        self._session: _Session | None = None
        self._step: _Step | None = None
        self.sessions_written = 0

    # -- lifecycle ------------------------------------------------------------------------
    def __enter__(self) -> "SessionTracer":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._conn is None

    def close(self) -> None:
        """Save a session still open (nothing recorded is dropped), then close the DB."""
        with self._lock:
            if self._conn is None:
                return
            try:
                if self._session is not None:
                    self.end_session()
            finally:
                conn, self._conn = self._conn, None
                conn.close()

    def _db(self):
        if self._conn is None:
            raise TraceStoreError(f"{self.path}: the tracer is closed")
        return self._conn

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
            self._write(
                "INSERT INTO experiments (experiment_id, name, description, created_at, updated_at, configuration,"
                " metadata) VALUES (:id, :name, :description, :now, :now, COALESCE(:configuration, '{}'), :metadata)"
                " ON CONFLICT(experiment_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at,"
                " description = COALESCE(:description, experiments.description),"
                " configuration = COALESCE(:configuration, experiments.configuration),"
                " metadata = COALESCE(:metadata, experiments.metadata)",
                {"id": experiment_id, "name": name, "description": description, "now": now,
                 "configuration": _json(configuration), "metadata": _json(metadata)})
        return experiment_id

    def _experiment_exists(self, experiment_id: str) -> bool:
        return self._db().execute("SELECT 1 FROM experiments WHERE experiment_id = ?",
                                  (experiment_id,)).fetchone() is not None

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
            conn = self._db()
            session_id = session_id or str(uuid.uuid4())
            if conn.execute("SELECT 1 FROM session_traces WHERE session_id = ?", (session_id,)).fetchone():
                raise TraceStoreError(f"{self.path}: session {session_id} already exists",
                                      hint="use a new session id (or none: one is generated)")
            if experiment_id is not None and not self._experiment_exists(experiment_id):
                raise TraceStoreError(f"{self.path}: no experiment {experiment_id}",
                                      hint="create it first with tracer.create_experiment(id, name)")
            self._session = _Session(session_id, _naive_utc(created_at), dict(metadata or {}), experiment_id)
            self._step = None
            return session_id

    def end_session(self) -> str:
        """Write the active session (one transaction) and return its id."""
        with self._lock:
            session = self._require_session()
            now = utcnow()
            for step in session.steps:
                if step.completed_at is None:
                    step.completed_at = now
            self._session = None
            self._step = None
            self._save(session)
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
            step = _Step(step_id, len(session.steps), turn_number, utcnow(), dict(metadata or {}))
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
                    raise ValueError(f"no timestep {step_id!r} in session {session.session_id}")
            if step is not None and step.completed_at is None:
                step.completed_at = utcnow()
            if step is self._step:
                self._step = None

    @contextmanager
    def timestep(self, step_id: str, turn_number: int | None = None,
                 metadata: dict[str, Any] | None = None) -> Iterator[str]:
        sid = self.start_timestep(step_id, turn_number, metadata)
        try:
            yield sid
        finally:
            if self._session is not None and sid in self._session.step_ids:
                self.end_timestep(sid)

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
            meta = dict(metadata or {})
            if step is not None:
                meta = {"step_id": step.step_id, **{k: v for k, v in meta.items() if k != "step_id"}}
                step.num_messages += 1
            now = utcnow()
            row = (message_type, content, _fmt_seconds(now),
                   float(event_time) if event_time is not None else now.replace(tzinfo=timezone.utc).timestamp(),
                   message_time, _json(meta))
            session.messages.append((step.step_id if step else None, row))

    def record_event(self, event: BaseEvent) -> BaseEvent:
        """Record an `LMCAISEvent`, `EnvironmentEvent` or `RuntimeEvent`; returns it."""
        if not isinstance(event, BaseEvent) or event.event_type not in EVENT_TYPES:
            raise TypeError(f"expected an LMCAISEvent, EnvironmentEvent or RuntimeEvent, got {type(event).__name__}")
        with self._lock:
            session = self._require_session()
            step = self._step
            meta = event.stored_metadata() if isinstance(event, RuntimeEvent) else dict(event.metadata or {})
            if step is not None:  # step_id first, as the published writer orders it
                meta = {"step_id": step.step_id, **{k: v for k, v in meta.items() if k != "step_id"}}
                step.num_events += 1
            time_record = event.time_record
            message_time = time_record.message_time
            if message_time is None and step is not None:
                message_time = step.turn_number
            cols = event.columns()
            call_records = None
            if isinstance(event, LMCAISEvent) and event.call_records:
                call_records = _json([_record_dict(r) for r in event.call_records])
            terminated = cols.get("terminated")
            truncated = cols.get("truncated")
            row = (
                event.event_type, event.system_instance_id or None, time_record.event_time, message_time,
                _fmt_seconds(utcnow()), cols.get("model_name"), cols.get("provider"), cols.get("input_tokens"),
                cols.get("output_tokens"), cols.get("total_tokens"), cols.get("cost_usd"), cols.get("latency_ms"),
                cols.get("span_id"), cols.get("trace_id"), call_records, cols.get("reward"),
                None if terminated is None else int(terminated), None if truncated is None else int(truncated),
                _json(cols.get("system_state_before")), _json(cols.get("system_state_after")), _json(meta),
                _json(event.event_metadata),
            )
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
        records = [record] if isinstance(record, (LLMCallRecord, dict)) else list(record)
        records = [LLMCallRecord.from_dict(r) if isinstance(r, dict) else r for r in records]
        for r in records:
            if not isinstance(r, LLMCallRecord):
                raise TypeError(f"expected LLMCallRecord, got {type(r).__name__}")
        event = LMCAISEvent.from_records(
            records, system_instance_id=system_instance_id, cost_usd=cost_usd, metadata=dict(metadata or {}),
            event_metadata=event_metadata, span_id=span_id, trace_id=trace_id,
            system_state_before=system_state_before, system_state_after=system_state_after,
            event_time=event_time, message_time=message_time)
        self.record_event(event)
        return event

    # -- writing --------------------------------------------------------------------------------
    def _write(self, sql: str, params: Sequence[Any] | dict[str, Any]) -> None:
        import sqlite3

        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(sql, params if isinstance(params, dict) else tuple(params))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise TraceStoreError(f"{self.path}: write failed ({exc})") from exc

    def _save(self, session: _Session) -> None:
        import sqlite3

        conn = self._db()
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO session_traces (session_id, created_at, num_timesteps, num_events, num_messages,"
                    " metadata, experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (session.session_id, _fmt_precise(session.created_at), len(session.steps),
                     len(session.events), len(session.messages), _json(session.metadata), session.experiment_id))
                step_rowids: dict[str, int] = {}
                for step in session.steps:
                    cursor = conn.execute(
                        "INSERT INTO session_timesteps (session_id, step_id, step_index, turn_number, started_at,"
                        " completed_at, num_events, num_messages, step_metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (session.session_id, step.step_id, step.step_index, step.turn_number,
                         _fmt_precise(step.started_at),
                         None if step.completed_at is None else _fmt_precise(step.completed_at),
                         step.num_events, step.num_messages, _json(step.metadata)))
                    step_rowids[step.step_id] = cursor.lastrowid
                if session.events:
                    conn.executemany(
                        f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})",
                        [(session.session_id, step_rowids.get(sid) if sid else None, *row)
                         for sid, row in session.events])
                if session.messages:
                    conn.executemany(
                        f"INSERT INTO messages ({', '.join(_MESSAGE_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(_MESSAGE_COLUMNS))})",
                        [(session.session_id, step_rowids.get(sid) if sid else None, *row)
                         for sid, row in session.messages])
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        except sqlite3.IntegrityError as exc:
            raise TraceStoreError(f"{self.path}: cannot save session {session.session_id} ({exc})") from exc
        except sqlite3.DatabaseError as exc:
            raise TraceStoreError(f"{self.path}: write failed for session {session.session_id} ({exc})") from exc


def _record_dict(record: Any) -> Any:
    if isinstance(record, LLMCallRecord):
        return record.to_dict()
    if isinstance(record, dict):
        return LLMCallRecord.from_dict(record).to_dict()
    raise TypeError(f"call_records holds a {type(record).__name__}, expected LLMCallRecord")


__all__ = ["SessionTracer", "resolve_write_target", "utcnow"]
