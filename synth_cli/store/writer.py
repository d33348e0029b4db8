"""The write path of trace DBs: what `SessionTracer`, the proxy and `traces merge` write through.

The interface (small on purpose; a new backend implements the five primitives at the end)::

    writer = open_writer(target)          # dispatches on the target, creates the schema, replays the spool
    writer.label                          # the target as shown to users (credentials stripped)
    writer.has_session(session_id)        # -> bool
    writer.has_experiment(experiment_id)  # -> bool
    writer.write_experiment(row)          # upsert one experiment (EXPERIMENT_COLUMNS), its own transaction
    writer.write(batch)                   # one SessionBatch, ONE transaction; -> False when skipped
    writer.close()

Targets (parsed by :mod:`synth_cli.store.locate`, the same ones the readers take): a file
path (created with its parent directories), a sqld-layout directory, `sqlite:///` URLs, and
libSQL servers (`http(s)://`, `ws(s)://`, `libsql://`), which `open_writer` hands to
`synth_cli.store.remote_writer.RemoteTraceWriter(url, busy_timeout=...)` when that module
exists (a clear `TraceStoreError` otherwise).

**A unit is a** :class:`SessionBatch`: a session's header, its totals after the unit, and the
timesteps, events and messages of the unit, as plain tuples in the column orders below (JSON
columns already serialised, timestamps already formatted). Nothing on the write path converts
rows through objects. `write` is idempotent by session id:

* a whole session (`partial=False`) is skipped when the session already exists;
* a unit of a session written step by step (`partial=True`, the tracer's durable mode): the
  first unit creates the session row, each unit raises its counts in the same transaction, and
  a unit whose totals the stored row already reaches was written by an earlier attempt and is
  skipped. Units of one session must be written in order.

Events and messages name their timestep by `step_id` (None: outside any timestep); the writer
resolves it to `session_timesteps.id` inside the transaction. `batch.experiment`, when set, is
inserted if absent in the same transaction (a copied session brings its experiment along).

**Schema.** `ensure_schema` creates the migrations table and applies pending migrations
(:mod:`synth_cli.store.schema`) inside one `BEGIN IMMEDIATE` transaction, re-checking what is
applied after taking the lock, so any number of processes may open a new DB at once.

**Faults.** Backends raise :class:`WriteError`; `transient=True` means retrying may succeed
(SQLite busy/locked, a network error), `integrity=True` that the rows are refused (a
constraint). :func:`deliver` retries transient failures with backoff, then spools the batch
(at once for other failures, e.g. a read-only DB) to a :class:`Spool` next to the DB
(`<db file>.spool/`, one JSON file per batch); `open_writer` writes what is spooled there
before anything else.
Nothing here prints: what the caller should tell the user comes back as warning strings.

**A new backend** subclasses :class:`TraceWriter` and implements `_begin()`, `_commit()`,
`_rollback()`, `_query(sql, params) -> list[tuple]` and `_run_many(sql, rows)`, raising
:class:`WriteError` (with `transient`) for failures, plus `close()` and a `spool_dir`; the SQL
of every operation above, migrations included, is shared from here.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from synth_cli.errors import TraceStoreError
from synth_cli.store.locate import check_writable_file, resolve_write_target
from synth_cli.store.schema import MIGRATIONS, MIGRATIONS_TABLE

BUSY_TIMEOUT_S = 30.0
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0)
SPOOL_SUFFIX = ".spool"

#: `experiments` columns of an experiment row.
EXPERIMENT_COLUMNS = ("experiment_id", "name", "description", "created_at", "updated_at", "configuration",
                      "metadata")
#: `session_timesteps` columns of a step row (`session_id` and `id` are the writer's).
STEP_COLUMNS = ("step_id", "step_index", "turn_number", "started_at", "completed_at", "num_events",
                "num_messages", "step_metadata")
#: `events` columns of an event row (after `session_id` and `timestep_id`, which the writer fills).
EVENT_COLUMNS = (
    "event_type", "system_instance_id", "event_time", "message_time", "created_at", "model_name", "provider",
    "input_tokens", "output_tokens", "total_tokens", "cost_usd", "latency_ms", "span_id", "trace_id",
    "call_records", "reward", "terminated", "truncated", "system_state_before", "system_state_after",
    "metadata", "event_metadata",
)
#: where `call_records` stands in an event row (EVENT_COLUMNS)
CALL_RECORDS_AT = EVENT_COLUMNS.index("call_records")
#: `messages` columns of a message row (after `session_id` and `timestep_id`).
MESSAGE_COLUMNS = ("message_type", "content", "timestamp", "event_time", "message_time", "metadata")

_INSERT_SESSION = ("INSERT INTO session_traces (session_id, created_at, num_timesteps, num_events, num_messages,"
                   " metadata, experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?)")
_UPDATE_COUNTS = ("UPDATE session_traces SET num_timesteps = ?, num_events = ?, num_messages = ?"
                  " WHERE session_id = ?")
_INSERT_STEP = (f"INSERT INTO session_timesteps (session_id, {', '.join(STEP_COLUMNS)}) "
                f"VALUES ({', '.join('?' * (len(STEP_COLUMNS) + 1))})")
_INSERT_EVENT = (f"INSERT INTO events (session_id, timestep_id, {', '.join(EVENT_COLUMNS)}) "
                 f"VALUES ({', '.join('?' * (len(EVENT_COLUMNS) + 2))})")
_INSERT_MESSAGE = (f"INSERT INTO messages (session_id, timestep_id, {', '.join(MESSAGE_COLUMNS)}) "
                   f"VALUES ({', '.join('?' * (len(MESSAGE_COLUMNS) + 2))})")
_INSERT_EXPERIMENT_IF_ABSENT = (f"INSERT OR IGNORE INTO experiments ({', '.join(EXPERIMENT_COLUMNS)}) "
                                f"VALUES ({', '.join('?' * len(EXPERIMENT_COLUMNS))})")
_UPSERT_EXPERIMENT = (
    "INSERT INTO experiments (experiment_id, name, description, created_at, updated_at, configuration, metadata)"
    " VALUES (?, ?, ?, ?, ?, COALESCE(?, '{}'), ?)"
    " ON CONFLICT(experiment_id) DO UPDATE SET name = excluded.name, updated_at = excluded.updated_at,"
    " description = COALESCE(excluded.description, experiments.description),"
    " configuration = COALESCE(?, experiments.configuration),"
    " metadata = COALESCE(excluded.metadata, experiments.metadata)")


class WriteError(TraceStoreError):
    """A write that failed: `transient` when a retry may succeed (busy/locked DB, network);
    `integrity` when the rows themselves are refused (a constraint), so spooling them is pointless."""

    def __init__(self, message: str, *, transient: bool = False, integrity: bool = False, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.transient = transient
        self.integrity = integrity


class TraceWriteWarning(UserWarning):
    """A write the caller should tell the user about (a session spooled, a spool replayed)."""


_SURROGATE = re.compile("[\ud800-\udfff]")


def _unencodable(exc: BaseException) -> bool:
    """A failure to encode a lone surrogate: sqlite3's UnicodeEncodeError, orjson's (a TypeError)."""
    return isinstance(exc, UnicodeEncodeError) or (isinstance(exc, TypeError) and "surrogates" in str(exc))


def _surrogate_note(label: str, batch: "SessionBatch", count: int) -> str:
    return (f"{label}: session {batch.session_id}: {count} character(s) that UTF-8 cannot hold "
            f"(lone surrogates) written as U+FFFD")


@dataclass
class SessionBatch:
    """One unit of writing: a session (or, `partial`, the next part of one). See the module docstring."""

    session_id: str
    created_at: str
    metadata: str | None
    experiment_id: str | None
    num_timesteps: int            # the session's totals once this batch is written
    num_events: int
    num_messages: int
    steps: list[tuple] = field(default_factory=list)                       # STEP_COLUMNS
    events: list[tuple[str | None, tuple]] = field(default_factory=list)    # (step_id, EVENT_COLUMNS)
    messages: list[tuple[str | None, tuple]] = field(default_factory=list)  # (step_id, MESSAGE_COLUMNS)
    partial: bool = False
    experiment: tuple | None = None  # EXPERIMENT_COLUMNS, inserted if absent
    #: per event (parallel to `events`): (llm_calls, cost_usd) of its call records as the writer
    #: of the batch knows them, or None; None as a whole: unknown for all. An event with call
    #: records and no figures here gets them from its JSON, in SQL (see `_write_figures`).
    figures: list[tuple[int, float | int | None] | None] | None = None

    def event_figures(self) -> list[tuple[int, float | int | None] | None] | None:
        """`figures` when it has one entry per event; else None (every event's from its JSON)."""
        figures = self.figures
        return figures if figures is not None and len(figures) == len(self.events) else None

    def encodable(self) -> tuple["SessionBatch", int]:
        """This batch with every lone surrogate (text UTF-8 cannot hold, e.g. `"\\ud800"` decoded by a
        lenient JSON parser) replaced by U+FFFD, and how many were replaced. Used only after a write
        failed on one: the rest of the session is kept rather than lost."""
        count = 0

        def clean(value: Any) -> Any:
            nonlocal count
            if isinstance(value, str):
                fixed, n = _SURROGATE.subn("\ufffd", value)
                count += n
                return fixed
            if isinstance(value, tuple):
                return tuple(clean(v) for v in value)
            if isinstance(value, list):
                return [clean(v) for v in value]
            return value

        fixed = replace(self, session_id=clean(self.session_id), created_at=clean(self.created_at),
                        metadata=clean(self.metadata), experiment_id=clean(self.experiment_id),
                        steps=clean(self.steps), events=clean(self.events), messages=clean(self.messages),
                        experiment=clean(self.experiment))
        return fixed, count

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "session_id": self.session_id, "created_at": self.created_at,
                "metadata": self.metadata, "experiment_id": self.experiment_id,
                "num_timesteps": self.num_timesteps, "num_events": self.num_events,
                "num_messages": self.num_messages, "steps": self.steps, "events": self.events,
                "messages": self.messages, "partial": self.partial, "experiment": self.experiment,
                "figures": self.figures}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "SessionBatch":
        if not isinstance(data, dict) or data.get("version") != 1:
            raise ValueError("not a spooled session batch (version 1)")
        return cls(
            session_id=data["session_id"], created_at=data["created_at"], metadata=data["metadata"],
            experiment_id=data["experiment_id"], num_timesteps=data["num_timesteps"],
            num_events=data["num_events"], num_messages=data["num_messages"],
            steps=[tuple(s) for s in data["steps"]],
            events=[(sid, tuple(row)) for sid, row in data["events"]],
            messages=[(sid, tuple(row)) for sid, row in data["messages"]],
            partial=bool(data["partial"]),
            experiment=tuple(data["experiment"]) if data.get("experiment") else None,
            figures=_figures_from_json(data.get("figures"), len(data["events"])))


def _figures_from_json(value: Any, events: int) -> list | None:
    """Spooled figures, when they are what `SessionBatch.figures` holds; else None (recomputed)."""
    if not isinstance(value, list) or len(value) != events:
        return None
    out: list[tuple[int, float | int | None] | None] = []
    for fig in value:
        if fig is None:
            out.append(None)
        elif (isinstance(fig, list) and len(fig) == 2 and type(fig[0]) is int
              and (fig[1] is None or type(fig[1]) in (int, float))):
            out.append((fig[0], fig[1]))
        else:
            return None
    return out


# --------------------------------------------------------------------------- the interface


class TraceWriter:
    """A trace DB open for writing. Subclasses provide the five primitives; the SQL lives here."""

    kind = "?"
    label = ""
    spool_dir: Path | None = None

    # -- primitives (per backend) ------------------------------------------------------------
    def _begin(self) -> None:
        """Start a write transaction that holds the write lock (SQLite: `BEGIN IMMEDIATE`)."""
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """Run one statement, return its rows as tuples (an empty list for statements without rows)."""
        raise NotImplementedError

    def _run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        """Run one statement for each parameter row."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> "TraceWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------------------
    def _transaction(self, body: Callable[[], Any]) -> Any:
        self._begin()
        try:
            result = body()
        except BaseException:
            try:
                self._rollback()
            except Exception:  # noqa: BLE001 - the first error is the one to report
                pass
            raise
        self._commit()
        return result

    # -- schema ------------------------------------------------------------------------------------
    def _tables(self) -> set[str]:
        return {r[0] for r in self._query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def _pending_migrations(self, tables: set[str]) -> list[str]:
        names = [fn.__name__ for fn in MIGRATIONS]
        if MIGRATIONS_TABLE not in tables:
            return names
        done = {r[0] for r in self._query(f"SELECT name FROM {MIGRATIONS_TABLE}")}
        return [n for n in names if n not in done]

    def ensure_schema(self) -> list[str]:
        """Create the schema / apply pending migrations (safe for many processes); the names applied.

        A DB that holds tables but no traces is refused (nothing written). The fast path (a
        current DB) only reads; otherwise everything happens under one write lock, re-checked.
        """
        tables = self._tables()
        self._refuse_foreign(tables)
        self._prepare(tables)
        if not self._pending_migrations(tables):
            return []
        return self._transaction(self._migrate_locked)

    def _prepare(self, tables: set[str]) -> None:
        """Backend set-up once the target is known to be a trace DB (or empty); SQLite: WAL mode."""

    def _refuse_foreign(self, tables: set[str]) -> None:
        if tables and "session_traces" not in tables and MIGRATIONS_TABLE not in tables:
            raise TraceStoreError(f"{self.label}: a SQLite database without trace tables; refusing to add them",
                                  hint="point the tracer at a new path or an existing trace DB")

    def _migrate_locked(self) -> list[str]:
        from synth_cli.store import schema

        tables = self._tables()  # again: another process may have migrated while we waited for the lock
        self._refuse_foreign(tables)
        self._query(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (name TEXT PRIMARY KEY, applied_at TEXT)")
        pending = set(self._pending_migrations(tables | {MIGRATIONS_TABLE}))
        return schema.apply_migrations(self._query, pending)

    # -- reads ---------------------------------------------------------------------------------------
    def has_session(self, session_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM session_traces WHERE session_id = ?", (session_id,)))

    def has_experiment(self, experiment_id: str) -> bool:
        return bool(self._query("SELECT 1 FROM experiments WHERE experiment_id = ?", (experiment_id,)))

    # -- writes ----------------------------------------------------------------------------------------
    def _check_experiment(self, experiment_id: str) -> None:
        """Before a new session row naming `experiment_id`: refuse it when the backend does not (the
        local writer checks its foreign keys itself, see `SQLiteTraceWriter`). Default: the server does."""

    def write_experiment(self, row: Sequence[Any]) -> None:
        """Upsert one experiment: a new row, or the name, updated_at and each non-NULL field updated."""
        row = tuple(row)
        if len(row) != len(EXPERIMENT_COLUMNS):
            raise ValueError(f"an experiment row has {len(EXPERIMENT_COLUMNS)} columns, not {len(row)}")
        self._transaction(lambda: self._query(_UPSERT_EXPERIMENT, (*row, row[5])))

    def write(self, batch: SessionBatch) -> bool:
        """Write `batch` in one transaction; False when it was already written (skipped)."""
        return self._transaction(lambda: self._write_locked(batch))

    def _write_locked(self, b: SessionBatch) -> bool:
        sid = b.session_id
        stored = self._query("SELECT num_timesteps, num_events, num_messages FROM session_traces"
                             " WHERE session_id = ?", (sid,))
        counts = (b.num_timesteps, b.num_events, b.num_messages)
        if b.experiment is not None:
            self._query(_INSERT_EXPERIMENT_IF_ABSENT, b.experiment)
        if stored:
            if not b.partial:
                return False
            have = tuple(int(v or 0) for v in stored[0])
            if all(h >= c for h, c in zip(have, counts, strict=True)):
                return False
            self._query(_UPDATE_COUNTS, (*counts, sid))
        else:
            if b.experiment_id is not None:
                self._check_experiment(b.experiment_id)
            self._query(_INSERT_SESSION, (sid, b.created_at, *counts, b.metadata, b.experiment_id))
        if b.steps:
            self._run_many(_INSERT_STEP, [(sid, *step) for step in b.steps])
        step_ids = {s for s, _ in b.events if s is not None} | {s for s, _ in b.messages if s is not None}
        rowids: dict[str, int] = {}
        if step_ids:
            rowids = {r[0]: r[1] for r in self._query(
                "SELECT step_id, id FROM session_timesteps WHERE session_id = ?", (sid,))}
            missing = step_ids - rowids.keys()
            if missing:
                raise WriteError(f"{self.label}: session {sid}: rows name unknown timesteps "
                                 f"({', '.join(sorted(missing)[:3])})")
        if b.events:
            before = self._query("SELECT max(id) FROM events")[0][0]
            self._run_many(_INSERT_EVENT, [(sid, rowids[s] if s is not None else None, *row)
                                           for s, row in b.events])
            self._write_figures(b, before)
        if b.messages:
            self._run_many(_INSERT_MESSAGE, [(sid, rowids[s] if s is not None else None, *row)
                                             for s, row in b.messages])
        return True

    def _write_figures(self, b: SessionBatch, before: int | None) -> None:
        """The per-event figures (`synth_cli.store.sql.FIGURES_TABLE`) of the events just inserted.

        Under the write lock, each inserted row took the next id after the largest (`before`), so
        the batch's events are ids before+1, before+2, ... in order; that is checked, and when it
        does not hold, or an event came without figures (rows copied from another DB, records
        given as dicts), the figures are computed from the stored JSON by the readers' own SQL.
        """
        from synth_cli.store.sql import FIGURES_TABLE, insert_figures_from_json_sql, insert_figures_sql

        start = (before or 0) + 1
        known = b.event_figures()
        rows = []
        if known is not None:
            last = self._query("SELECT max(id), count(*) FROM events WHERE id >= ?", (start,))[0]
            if last[0] == start + len(b.events) - 1 and last[1] == len(b.events):
                rows = [(start + i, fig[0], fig[1]) for i, fig in enumerate(known)
                        if fig is not None and b.events[i][1][CALL_RECORDS_AT] is not None]
        if rows:
            self._run_many(insert_figures_sql(), rows)
        if len(rows) < sum(1 for _, row in b.events if row[CALL_RECORDS_AT] is not None):
            self._query(insert_figures_from_json_sql(
                "e.id >= ? AND e.session_id = ? AND typeof(e.call_records) <> 'null' "
                f"AND NOT EXISTS (SELECT 1 FROM {FIGURES_TABLE} f WHERE f.event_id = e.id)"), (start, b.session_id))


# --------------------------------------------------------------------------- local SQLite


class SQLiteTraceWriter(TraceWriter):
    """A local SQLite file (created when new), in WAL mode, one connection in autocommit mode."""

    kind = "sqlite"

    def __init__(self, path: Path, *, busy_timeout: float = BUSY_TIMEOUT_S):
        import sqlite3

        self.path = path
        self.label = str(path)
        self.busy_timeout = busy_timeout
        self.spool_dir = path.with_name(path.name + SPOOL_SUFFIX)
        check_writable_file(path)
        if not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise TraceStoreError(f"{path.parent}: cannot create directory ({exc.strerror or exc})") from exc
        try:
            self._conn = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None,
                                         check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _check_experiment(self, experiment_id: str) -> None:
        """The one foreign key a batch can break (its session's experiment; its timesteps, events and
        messages name the session and timesteps written in the same transaction, resolved there).
        Checked here, once per session, instead of by `PRAGMA foreign_keys = ON`, which checked
        every row (about 2 us per call record on the tracer's hot path) and refused exactly this."""
        if not self._query("SELECT 1 FROM experiments WHERE experiment_id = ?", (experiment_id,)):
            raise WriteError(f"{self.label}: write refused (FOREIGN KEY constraint failed)", integrity=True)

    def _prepare(self, tables: set[str]) -> None:
        """A new DB goes to WAL mode (persistent in the file; a published DB keeps its journal mode).

        Switching needs a moment alone with the file, so it is retried until the busy timeout.
        """
        if "session_traces" in tables:
            return
        deadline = time.monotonic() + self.busy_timeout
        delay = 0.01
        while True:
            try:
                mode = self._query("PRAGMA journal_mode")[0][0]
                if str(mode).lower() != "wal":
                    self._query("PRAGMA journal_mode = WAL")
                return
            except WriteError as exc:
                if not exc.transient or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _error(self, exc: Exception) -> WriteError:
        import sqlite3

        text = str(exc)
        lowered = text.lower()
        if isinstance(exc, sqlite3.IntegrityError):
            return WriteError(f"{self.label}: write refused ({text})", integrity=True)
        if "locked" in lowered or "busy" in lowered:
            return WriteError(f"{self.label}: database is locked (another writer held it past "
                              f"{self.busy_timeout:g} s)", transient=True)
        if "not a database" in text or "malformed" in text:
            return WriteError(f"{self.label}: corrupt SQLite database ({text})")
        return WriteError(f"{self.label}: write failed ({text})")

    def _begin(self) -> None:
        self._query("BEGIN IMMEDIATE")

    def _commit(self) -> None:
        self._query("COMMIT")

    def _rollback(self) -> None:
        conn = self._db()
        if conn.in_transaction:
            conn.execute("ROLLBACK")

    def _db(self):
        if self._conn is None:
            raise TraceStoreError(f"{self.label}: the writer is closed")
        return self._conn

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        import sqlite3

        try:
            return self._db().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        import sqlite3

        try:
            self._db().executemany(sql, rows)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        conn, self._conn = getattr(self, "_conn", None), None
        if conn is not None:
            conn.close()


# --------------------------------------------------------------------------- faults


class Spool:
    """Batches that could not be written, one JSON file each in `directory`, written in name order."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    def save(self, batch: SessionBatch, seq: int = 0) -> Path:
        """Store `batch` durably (temp file, fsync, rename); the path. Raises OSError when it cannot."""
        from synth_cli import _json

        self.directory.mkdir(parents=True, exist_ok=True)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in batch.session_id)[:80]
        name = f"{time.time_ns():020d}-{os.getpid()}-{seq:05d}-{safe}.json"
        final = self.directory / name
        tmp = self.directory / f".{name}.tmp"
        try:
            data = _json.dumps(batch.to_json())
        except TypeError as exc:  # a lone surrogate JSON cannot hold: kept as U+FFFD rather than lost
            if not _unencodable(exc):
                raise
            data = _json.dumps(batch.encodable()[0].to_json())
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        return final

    def pending(self) -> list[Path]:
        try:
            return sorted(p for p in self.directory.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except (FileNotFoundError, NotADirectoryError):
            return []

    def replay(self, writer: TraceWriter) -> tuple[list[str], list[str]]:
        """Write every spooled batch (idempotent: others may replay the same spool); (session ids, warnings)."""
        from synth_cli import _json

        written: list[str] = []
        warnings: list[str] = []
        for path in self.pending():
            try:
                batch = SessionBatch.from_json(_json.loads(path.read_bytes()))
            except FileNotFoundError:
                continue  # another process replayed it
            except (ValueError, TypeError, KeyError, OSError) as exc:
                warnings.append(f"{path}: unreadable spooled session left in place ({exc})")
                continue
            try:
                writer.write(batch)
            except WriteError as exc:
                warnings.append(f"{path}: spooled session {batch.session_id} still not written ({exc.message})")
                if exc.transient:
                    break
                continue
            written.append(batch.session_id)
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        try:
            self.directory.rmdir()
        except OSError:
            pass
        return written, warnings


@dataclass
class Delivery:
    """What happened to a batch: written, skipped (already there) or spooled (with the spool file)."""

    status: str
    attempts: int
    spool_path: Path | None = None
    warning: str | None = None


def deliver(writer: TraceWriter, batch: SessionBatch, *, delays: Sequence[float] = RETRY_DELAYS_S,
            spool: bool = True, seq: int = 0, sleep: Callable[[float], None] = time.sleep) -> Delivery:
    """Write `batch`, retrying transient failures after each of `delays`; then spool it (nothing lost).

    A failure that is not transient (a read-only DB, a full disk, a server refusing the
    request) is spooled at once; one the rows cause (a constraint: `integrity`) is raised, as
    is any failure when the batch cannot be spooled (or `spool` is False).
    """
    attempts = 0
    last: WriteError | None = None
    note: str | None = None
    for delay in (*delays, None):
        attempts += 1
        try:
            try:
                written = writer.write(batch)
            except (UnicodeEncodeError, TypeError) as exc:
                # text the DB cannot hold (a lone surrogate): write it as U+FFFD, once, rather than lose the session
                if note is not None or not _unencodable(exc):
                    raise
                batch, count = batch.encodable()
                if not count:
                    raise
                note = _surrogate_note(writer.label, batch, count)
                written = writer.write(batch)
            return Delivery("written" if written else "skipped", attempts, warning=note)
        except WriteError as exc:
            if exc.integrity:
                raise
            last = exc
            if not exc.transient:
                break
        if delay is not None:
            sleep(delay)
    assert last is not None
    if not spool or writer.spool_dir is None:
        raise last
    try:
        path = Spool(writer.spool_dir).save(batch, seq)
    except OSError as exc:
        raise WriteError(f"{last.message}; session {batch.session_id} could not be spooled either "
                         f"({exc.strerror or exc})") from exc
    warning = (f"{writer.label}: session {batch.session_id} not written ({last.message}); "
               f"kept in {path}, written on the next open" + (f"; {note.split(': ', 2)[-1]}" if note else ""))
    return Delivery("spooled", attempts, path, warning)


__all__ = [
    "BUSY_TIMEOUT_S", "CALL_RECORDS_AT", "EVENT_COLUMNS", "EXPERIMENT_COLUMNS", "MESSAGE_COLUMNS", "STEP_COLUMNS", "Delivery",
    "SQLiteTraceWriter", "SessionBatch", "Spool", "TraceWriteWarning", "TraceWriter", "WriteError", "deliver", "resolve_write_target",  # re-exported from locate
]
