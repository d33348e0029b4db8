"""`traces merge`: copy sessions from DBs written by separate workers into one DB or server.

Each source is read through :class:`~synth_cli.store.reader.TraceStore` (a file, a sqld
directory, a `sqlite:///` URL or a libSQL server); each session (its row, timesteps, events,
messages, and its experiment when the target lacks it) is written through
:func:`~synth_cli.store.writers.open_writer` as one :class:`~synth_cli.store.writer.SessionBatch`:
one transaction per session, so an interrupted merge leaves whole sessions only, and a
rerun copies what is missing. A session already in the target (by id) is skipped and
counted, so merging twice copies nothing the second time. Stored values are copied as
they are (JSON text, timestamps, cents); row ids are the target's own. The `systems`
tables and `embedding` columns are not copied (nothing writes them). A session still being
written in a source (durable mode) is copied as far as it got and skipped by later merges:
merge sessions that have ended.

Nothing here prints; progress goes to a callback.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from synth_cli.errors import TraceStoreError, UsageError
from synth_cli.store.writer import (
    EVENT_COLUMNS,
    EXPERIMENT_COLUMNS,
    MESSAGE_COLUMNS,
    STEP_COLUMNS,
    SessionBatch,
    TraceWriter,
    WriteError,
    deliver,
)


@dataclass
class SourceReport:
    source: str
    sessions: int = 0
    copied: int = 0
    skipped: int = 0
    events: int = 0
    messages: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "sessions": self.sessions, "copied": self.copied, "skipped": self.skipped,
                "events": self.events, "messages": self.messages}


@dataclass
class MergeReport:
    target: str
    dry_run: bool
    sources: list[SourceReport] = field(default_factory=list)

    @property
    def copied(self) -> int:
        return sum(s.copied for s in self.sources)

    @property
    def skipped(self) -> int:
        return sum(s.skipped for s in self.sources)

    @property
    def sessions(self) -> int:
        return sum(s.sessions for s in self.sources)

    def to_dict(self) -> dict[str, Any]:
        return {"target": self.target, "dry_run": self.dry_run, "sessions": self.sessions, "copied": self.copied,
                "skipped": self.skipped, "events": sum(s.events for s in self.sources),
                "messages": sum(s.messages for s in self.sources),
                "sources": [s.to_dict() for s in self.sources]}


#: progress(done, total, session_id, status) with status "copied" | "skipped" | "would copy"
Progress = Callable[[int, int, str, str], None]


def _columns(store: Any, table: str, wanted: Sequence[str]) -> str:
    """A select list of `wanted`, NULL for a column this (older) DB does not have."""
    have = set(store.schema.columns.get(table, ()))
    return ", ".join(c if c in have else f"NULL AS {c}" for c in wanted)


class _SourceReader:
    """Whole sessions out of one source DB, as SessionBatches."""

    def __init__(self, store: Any):
        self.store = store
        self.step_cols = _columns(store, "session_timesteps", ("id", *STEP_COLUMNS))
        self.event_cols = _columns(store, "events", ("timestep_id", *EVENT_COLUMNS))
        self.message_cols = _columns(store, "messages", ("timestep_id", *MESSAGE_COLUMNS))
        self.experiment_cols = _columns(store, "experiments", EXPERIMENT_COLUMNS)
        self.has_experiments = store.schema.has("experiments")
        self.has_steps = store.schema.has("session_timesteps")
        self.has_messages = store.schema.has("messages")

    def session_ids(self) -> list[str]:
        return [r[0] for r in self.store.rows("SELECT session_id FROM session_traces ORDER BY created_at, session_id")]

    def batch(self, session_id: str) -> SessionBatch:
        store = self.store
        row = store.one("SELECT session_id, created_at, num_timesteps, num_events, num_messages, metadata, experiment_id"
                        " FROM session_traces WHERE session_id = ?", (session_id,))
        if row is None:
            raise TraceStoreError(f"{store.label}: session {session_id} vanished while merging")
        steps = []
        step_ids: dict[Any, str] = {}
        if self.has_steps:
            for r in store.rows(f"SELECT {self.step_cols} FROM session_timesteps WHERE session_id = ? ORDER BY id",
                                (session_id,)):
                step_ids[r[0]] = r[1]
                steps.append(tuple(r[1:]))
        events = [(step_ids.get(r[0]), tuple(r[1:])) for r in store.rows(
            f"SELECT {self.event_cols} FROM events WHERE session_id = ? ORDER BY id", (session_id,))]
        messages = []
        if self.has_messages:
            messages = [(step_ids.get(r[0]), tuple(r[1:])) for r in store.rows(
                f"SELECT {self.message_cols} FROM messages WHERE session_id = ? ORDER BY id", (session_id,))]
        experiment = None
        if row[6] is not None and self.has_experiments:
            exp = store.one(f"SELECT {self.experiment_cols} FROM experiments WHERE experiment_id = ?", (row[6],))
            if exp is not None:
                experiment = tuple(exp)
        # the stored counts are copied as stored; the rows are all there is to copy
        return SessionBatch(row[0], row[1], row[5], row[6], row[2], row[3], row[4], steps, events, messages,
                            experiment=experiment)


def merge(sources: Sequence[str], into: str, *, dry_run: bool = False, layout: str = "auto",
          progress: Progress | None = None) -> MergeReport:
    """Copy every session of `sources` missing from `into`; see the module docstring."""
    from synth_cli.store.locate import strip_credentials, is_remote, target_key
    from synth_cli.store.reader import TraceStore

    if not sources:
        raise UsageError("name at least one source DB to merge")
    into_key = _write_key(into)
    seen: set[str] = set()
    for source in sources:
        key = target_key(source)
        if key == into_key:
            raise UsageError(f"{source}: is the merge target itself", hint="name a different --into")
        if key in seen:
            raise UsageError(f"{source}: named twice")
        seen.add(key)
    label = strip_credentials(into) if is_remote(os.fspath(into)) else os.fspath(into)
    report = MergeReport(label, dry_run)

    stores = []
    try:
        for source in sources:
            stores.append(TraceStore.open(source))
        readers = [_SourceReader(s) for s in stores]
        plans = [(reader, reader.session_ids()) for reader in readers]
        total = sum(len(ids) for _, ids in plans)
        writer, existing = _open_target(into, dry_run, layout)
        try:
            report.target = writer.label if writer is not None else report.target
            done = 0
            claimed: set[str] = set()
            for reader, ids in plans:
                src = SourceReport(reader.store.label, sessions=len(ids))
                report.sources.append(src)
                for session_id in ids:
                    done += 1
                    status = _merge_one(reader, writer, existing, claimed, session_id, src)
                    if progress is not None:
                        progress(done, total, session_id, status)
        finally:
            if writer is not None:
                writer.close()
    finally:
        for store in stores:
            store.close()
    return report


def _merge_one(reader: _SourceReader, writer: TraceWriter | None, existing: set[str] | None, claimed: set[str],
               session_id: str, src: SourceReport) -> str:
    if session_id in claimed or (existing is not None and session_id in existing) or (
            writer is not None and writer.has_session(session_id)):
        src.skipped += 1
        return "skipped"
    claimed.add(session_id)
    batch = reader.batch(session_id)
    if writer is None:  # dry run
        src.copied += 1
        src.events += len(batch.events)
        src.messages += len(batch.messages)
        return "would copy"
    try:
        delivery = deliver(writer, batch, spool=False)
    except WriteError as exc:
        raise TraceStoreError(f"{exc.message} (session {session_id} from {src.source}; sessions copied so far "
                              "stay, a rerun copies the rest)", hint=exc.hint) from exc
    if delivery.status == "skipped":  # another writer got it in first
        src.skipped += 1
        return "skipped"
    src.copied += 1
    src.events += len(batch.events)
    src.messages += len(batch.messages)
    return "copied"


def _write_key(target: str) -> str:
    """The identity of the merge target (a path that does not exist yet is fine)."""
    from pathlib import Path

    from synth_cli.store.locate import is_remote, resolve_write_target

    text = os.fspath(target)
    if is_remote(text):
        return text.rstrip("/")
    try:
        return str(resolve_write_target(text).resolve())
    except TraceStoreError:
        return str(Path(text).expanduser().resolve())


def _open_target(into: str, dry_run: bool, layout: str) -> tuple[TraceWriter | None, set[str] | None]:
    """The writer (None in a dry run) and, in a dry run, the session ids already in the target."""
    from synth_cli.store.locate import is_remote, resolve_write_target
    from synth_cli.store.reader import TraceStore
    from synth_cli.store.writers import open_writer

    if not dry_run:
        return open_writer(into, layout=layout), None
    text = os.fspath(into)
    if not is_remote(text):
        path = resolve_write_target(text, layout)
        if not path.exists() or path.stat().st_size == 0:
            return None, set()                       # a new target: everything would be copied
        from synth_cli.store.locate import check_writable_file

        check_writable_file(path)
    with TraceStore.open(text, check_schema=False) as store:
        if not store.schema.has("session_traces"):
            if store.schema.tables - {"sqlite_sequence"}:
                raise TraceStoreError(f"{store.label}: a SQLite database without trace tables; "
                                      "refusing to add them")
            return None, set()
        return None, {r[0] for r in store.rows("SELECT session_id FROM session_traces")}


__all__ = ["MergeReport", "SourceReport", "merge"]
