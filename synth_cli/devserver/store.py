"""The simulator's state: one SQLite database (WAL) and one blob directory under the data dir.

Layout of ``DATA_DIR``::

    state.db        files, jobs, events, checkpoints, predictions, ledger, idempotency keys
    files/<id>      uploaded file contents
    tmp/            uploads in progress (moved into files/ once complete)
    serve.lock      held by the running server (one server per data dir)

Every mutation runs in a ``BEGIN IMMEDIATE`` transaction, so the HTTP handlers and the job
runner thread never lose each other's updates; each thread has its own connection.
Objects are returned in the shapes of OpenAI's API (see ``*_object`` helpers).
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import string
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

SCHEMA_VERSION = 2
ORGANIZATION_ID = "org-synth-local"
_ALPHABET = string.ascii_letters + string.digits

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    purpose TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    sha256 TEXT NOT NULL,
    report TEXT
);
CREATE INDEX IF NOT EXISTS files_owner ON files(owner, seq);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    model TEXT NOT NULL,
    training_file TEXT NOT NULL,
    validation_file TEXT,
    suffix TEXT,
    seed INTEGER NOT NULL,
    metadata TEXT,
    request_form TEXT NOT NULL,
    n_epochs INTEGER NOT NULL,
    batch_size INTEGER NOT NULL,
    learning_rate_multiplier REAL NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    finished_at INTEGER,
    estimated_finish INTEGER,
    fine_tuned_model TEXT,
    trained_tokens INTEGER,
    error TEXT,
    n_examples INTEGER NOT NULL,
    example_tokens INTEGER NOT NULL,
    total_steps INTEGER NOT NULL,
    step INTEGER NOT NULL DEFAULT 0,
    next_at REAL NOT NULL,
    samples TEXT NOT NULL,
    result_files TEXT
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs(owner, seq);
CREATE INDEX IF NOT EXISTS jobs_active ON jobs(status, next_at);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    body TEXT
);
CREATE INDEX IF NOT EXISTS events_job ON events(job_id, seq);
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    step_number INTEGER NOT NULL,
    fine_tuned_model_checkpoint TEXT NOT NULL,
    metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS checkpoints_job ON checkpoints(job_id, seq);
CREATE TABLE IF NOT EXISTS predictions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    job_id TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    sample_index INTEGER NOT NULL,
    prompt TEXT NOT NULL,
    ground_truth TEXT NOT NULL,
    prediction TEXT NOT NULL,
    exact_match INTEGER NOT NULL,
    char_error_rate REAL NOT NULL,
    length_ratio REAL NOT NULL,
    word_overlap REAL NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_ms INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_job ON predictions(job_id, epoch, sample_index);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    owner TEXT NOT NULL,
    job_id TEXT NOT NULL,
    model TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('tokens', 'gpu')),
    quantity REAL NOT NULL,
    amount_cents INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (job_id, kind)
);
CREATE INDEX IF NOT EXISTS ledger_owner ON ledger(owner, created_at);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    route TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    state TEXT NOT NULL,
    status_code INTEGER,
    body BLOB,
    created_at REAL NOT NULL,
    instance TEXT,
    PRIMARY KEY (owner, key, route)
);
"""


#: The API objects rendered by SQLite itself (`json_object`), so list endpoints neither decode the
#: stored JSON columns nor build a dict per row: each row comes back as its final JSON text.
_HP_JSON = ("json_object('n_epochs', n_epochs, 'batch_size', batch_size, "
            "'learning_rate_multiplier', learning_rate_multiplier)")
JOB_JSON = (
    "json_object('object', 'fine_tuning.job', 'id', id, 'model', model, 'created_at', created_at, "
    "'finished_at', finished_at, 'fine_tuned_model', fine_tuned_model, "
    f"'organization_id', '{ORGANIZATION_ID}', 'result_files', json(COALESCE(result_files, '[]')), "
    "'status', status, 'validation_file', validation_file, 'training_file', training_file, "
    f"'hyperparameters', {_HP_JSON}, "
    f"'method', json_object('type', 'supervised', 'supervised', json_object('hyperparameters', {_HP_JSON})), "
    "'trained_tokens', trained_tokens, 'error', json(error), 'seed', seed, 'estimated_finish', estimated_finish, "
    "'integrations', json('[]'), 'metadata', json(metadata), 'user_provided_suffix', suffix)")
EVENT_JSON = ("json_object('object', 'fine_tuning.job.event', 'id', id, 'created_at', created_at, 'level', level, "
              "'message', message, 'data', json(data), 'type', type)")


#: columns of `jobs` whose change never shows in the API object (the runner's position).
_RUNNER_COLUMNS = ("step", "next_at")
_JOB_COLUMNS = ("id", "owner", "model", "training_file", "validation_file", "suffix", "seed", "metadata", "request_form",
                "n_epochs", "batch_size", "learning_rate_multiplier", "status", "created_at", "finished_at",
                "estimated_finish", "fine_tuned_model", "trained_tokens", "error", "n_examples", "example_tokens",
                "total_steps", "samples", "result_files")

#: Read models kept by SQLite: each job's and each event's API object as JSON text, rendered by
#: the triggers below from the one definition above, so reads never decode columns or build a
#: dict per row. `job_objects` is its own small table (the jobs rows carry the training samples,
#: which a read of any column after them would walk through).
DERIVED = f"""
CREATE TABLE IF NOT EXISTS job_objects (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS job_objects_owner ON job_objects(owner, seq);
CREATE TRIGGER IF NOT EXISTS jobs_object_insert AFTER INSERT ON jobs BEGIN
    INSERT OR REPLACE INTO job_objects (seq, id, owner, body)
        SELECT seq, id, owner, {JOB_JSON} FROM jobs WHERE seq = new.seq;
END;
CREATE TRIGGER IF NOT EXISTS jobs_object_update AFTER UPDATE OF {', '.join(_JOB_COLUMNS)} ON jobs BEGIN
    UPDATE job_objects SET body = (SELECT {JOB_JSON} FROM jobs WHERE seq = new.seq) WHERE seq = new.seq;
END;
CREATE TRIGGER IF NOT EXISTS jobs_object_delete AFTER DELETE ON jobs BEGIN
    DELETE FROM job_objects WHERE seq = old.seq;
END;
CREATE TRIGGER IF NOT EXISTS events_object_insert AFTER INSERT ON events BEGIN
    UPDATE events SET body = {EVENT_JSON} WHERE seq = new.seq;
END;
"""


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def now() -> int:
    return int(time.time())


def _loads(text: str | None, default: Any = None) -> Any:
    if text is None:
        return default
    return json.loads(text)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


class StoreLocked(RuntimeError):
    """Another server holds the data dir."""


class Store:
    """Thread-safe access to the state DB (one connection per thread)."""

    def __init__(self, data_dir: str | os.PathLike):
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.tmp_dir = self.data_dir / "tmp"
        self.db_path = self.data_dir / "state.db"
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._lock_fh = None
        #: this process's run of the server: a pending idempotency record of another run is dead.
        self.instance = secrets.token_hex(8)
        for directory in (self.data_dir, self.files_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        conn = self.conn()
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"{self.db_path} was written by a newer synth-ai (schema {version})")
        conn.executescript(SCHEMA)
        self._add_missing_columns(conn)
        self._derive(conn)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @staticmethod
    def _derive(conn: sqlite3.Connection) -> None:
        """Install the read models' triggers as DERIVED defines them now, and when that definition
        differs from the one the data dir was last rendered with (or it never was), drop the old
        triggers and render every job and event again, so a changed definition never leaves stale
        objects behind."""
        import hashlib

        digest = hashlib.sha256(DERIVED.encode()).hexdigest()
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        row = conn.execute("SELECT value FROM meta WHERE key = 'derived'").fetchone()
        if row is not None and row[0] == digest:
            return
        drops = "".join(f'DROP TRIGGER IF EXISTS "{name}";\n' for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall())
        script = (f"BEGIN IMMEDIATE;\n{drops}{DERIVED}\n"
                  f"INSERT OR REPLACE INTO job_objects (seq, id, owner, body) SELECT seq, id, owner, {JOB_JSON} FROM jobs;\n"
                  f"UPDATE events SET body = {EVENT_JSON};\n"
                  f"INSERT OR REPLACE INTO meta (key, value) VALUES ('derived', '{digest}');\nCOMMIT;")
        try:
            conn.executescript(script)  # one transaction: all of it or nothing
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    #: columns added after a table was first released: (table, column, SQL type). A data dir
    #: written by an older `serve` gets them on start; their rows read as NULL.
    ADDED_COLUMNS = (("jobs", "result_files", "TEXT"), ("events", "body", "TEXT"), ("idempotency", "instance", "TEXT"))

    @classmethod
    def _add_missing_columns(cls, conn: sqlite3.Connection) -> None:
        for table, column, kind in cls.ADDED_COLUMNS:
            have = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")

    # -- plumbing ---------------------------------------------------------------------
    def lock(self) -> None:
        """Hold `serve.lock` for the life of the process (one server per data dir)."""
        path = self.data_dir / "serve.lock"
        fh = open(path, "a+")  # noqa: SIM115 - held until close()
        try:
            import fcntl

            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                fh.close()
                raise StoreLocked(f"another `synth-ai serve` is using {self.data_dir}") from exc
        except ImportError:  # pragma: no cover - Windows: no advisory lock
            pass
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._lock_fh = fh
        for leftover in self.tmp_dir.iterdir():  # uploads cut off by the last stop
            try:
                leftover.unlink()
            except OSError:
                pass

    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False, timeout=30.0)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                try:
                    conn.close()
                except sqlite3.Error:  # pragma: no cover
                    pass
            self._connections.clear()
        self._local = threading.local()
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def blob_path(self, file_id: str) -> Path:
        return self.files_dir / file_id

    # -- files ----------------------------------------------------------------------------
    def insert_file(self, owner: str, file_id: str, filename: str, purpose: str, size: int, sha256: str,
                    expires_at: int | None, claim: tuple[str, str, str] | None = None) -> sqlite3.Row:
        """Insert the file's row; its API object is recorded as the answer to `claim` in the same transaction."""
        from synth_cli._json import dumps_bytes

        with self.tx() as c:
            c.execute("INSERT INTO files (id, owner, filename, purpose, bytes, created_at, expires_at, sha256) "
                      "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (file_id, owner, filename, purpose, size, now(), expires_at,
                                                           sha256))
            row = c.execute("SELECT * FROM files WHERE id = ?", (file_id,)).fetchone()
            self.idempotency_done(c, claim, 200, dumps_bytes(file_object(row)))
            return row

    def get_file(self, owner: str, file_id: str) -> sqlite3.Row | None:
        return self.conn().execute("SELECT * FROM files WHERE id = ? AND owner = ?", (file_id, owner)).fetchone()

    def list_files(self, owner: str, *, purpose: str | None, limit: int, order: str,
                   after: str | None) -> tuple[list[sqlite3.Row], bool]:
        sql = "SELECT * FROM files WHERE owner = ?"
        params: list[Any] = [owner]
        if purpose:
            sql += " AND purpose = ?"
            params.append(purpose)
        if after:
            anchor = self.conn().execute("SELECT seq FROM files WHERE id = ? AND owner = ?", (after, owner)).fetchone()
            if anchor is not None:
                sql += " AND seq < ?" if order == "desc" else " AND seq > ?"
                params.append(anchor["seq"])
        sql += f" ORDER BY seq {'DESC' if order == 'desc' else 'ASC'} LIMIT ?"
        params.append(limit + 1)
        rows = self.conn().execute(sql, params).fetchall()
        return rows[:limit], len(rows) > limit

    def set_file_report(self, file_id: str, report: dict[str, Any]) -> None:
        with self.tx() as c:
            c.execute("UPDATE files SET report = ? WHERE id = ?", (_dumps(report), file_id))

    def delete_file(self, owner: str, file_id: str) -> bool:
        with self.tx() as c:
            deleted = c.execute("DELETE FROM files WHERE id = ? AND owner = ?", (file_id, owner)).rowcount
        if deleted:
            try:
                self.blob_path(file_id).unlink()
            except FileNotFoundError:
                pass
        return bool(deleted)

    # -- jobs -----------------------------------------------------------------------------
    def insert_job(self, job: dict[str, Any], events: list[tuple[str, str, str, dict]],
                   claim: tuple[str, str, str] | None = None) -> str:
        """Insert the job and its first events; returns its API object (JSON text), which is also
        recorded, in the same transaction, as the answer to the idempotency `claim` when given."""
        columns = list(job)
        with self.tx() as c:
            c.execute(f"INSERT INTO jobs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                      [job[k] for k in columns])
            for level, message, kind, data in events:
                self.add_event(c, job["id"], message, level=level, kind=kind, data=data)
            body: str = self.job_json(job["owner"], job["id"], c)  # type: ignore[assignment]
            self.idempotency_done(c, claim, 200, body.encode("utf-8"))
            return body

    def job_exists(self, owner: str, job_id: str) -> bool:
        return self.conn().execute("SELECT 1 FROM jobs WHERE id = ? AND owner = ?", (job_id, owner)).fetchone() is not None

    def job_json(self, owner: str, job_id: str, conn: sqlite3.Connection | None = None) -> str | None:
        """The job's API object as JSON text (None: no such job of this owner)."""
        row = (conn or self.conn()).execute("SELECT body FROM job_objects WHERE id = ? AND owner = ?",
                                            (job_id, owner)).fetchone()
        return row[0] if row is not None else None

    def list_jobs(self, owner: str, *, after: str | None, limit: int,
                  metadata: dict[str, str] | None = None) -> tuple[list[bytes], bool]:
        """Newest first, each job's API object as JSON (UTF-8 bytes); (page, has_more)."""
        sql = "SELECT CAST(body AS BLOB) FROM job_objects WHERE owner = ?"
        params: list[Any] = [owner]
        if after:
            anchor = self.conn().execute("SELECT seq FROM job_objects WHERE id = ? AND owner = ?",
                                         (after, owner)).fetchone()
            if anchor is not None:
                sql += " AND seq < ?"
                params.append(anchor[0])
        for key, value in (metadata or {}).items():
            sql += " AND json_extract(body, ?) = ?"
            params += ["$.metadata." + json.dumps(key), value]
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit + 1)
        rows = [r[0] for r in self.conn().execute(sql, params)]
        return rows[:limit], len(rows) > limit

    def due_jobs(self, at: float) -> list[str]:
        rows = self.conn().execute(
            "SELECT id FROM jobs WHERE status IN ('validating_files', 'queued', 'running') AND next_at <= ? "
            "ORDER BY next_at", (at,)).fetchall()
        return [r["id"] for r in rows]

    def next_due(self) -> float | None:
        """When the next action of an active job is due (None: no active job)."""
        row = self.conn().execute("SELECT MIN(next_at) FROM jobs WHERE status IN "
                                  "('validating_files', 'queued', 'running')").fetchone()
        return row[0] if row is not None else None

    def reschedule_active(self, at: float) -> int:
        """After a restart: active jobs continue from where they were, not in a burst of missed steps."""
        with self.tx() as c:
            return c.execute("UPDATE jobs SET next_at = ? WHERE status IN ('validating_files', 'queued', 'running') "
                             "AND next_at < ?", (at, at)).rowcount

    # -- events -----------------------------------------------------------------------------
    @staticmethod
    def add_event(c: sqlite3.Connection, job_id: str, message: str, *, level: str = "info", kind: str = "message",
                  data: dict[str, Any] | None = None, created_at: int | None = None) -> str:
        event_id = new_id("ftevent-")
        c.execute("INSERT INTO events (id, job_id, created_at, level, message, type, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                  (event_id, job_id, created_at or now(), level, message, kind, _dumps(data or {})))
        return event_id

    def list_events(self, job_id: str, *, after: str | None, limit: int) -> tuple[list[bytes], bool]:
        """Newest first, like OpenAI, each event's API object as JSON (UTF-8 bytes); `after` = an event id:
        the events older than it."""
        sql = "SELECT CAST(body AS BLOB) FROM events WHERE job_id = ?"
        params: list[Any] = [job_id]
        if after:
            anchor = self.conn().execute("SELECT seq FROM events WHERE id = ? AND job_id = ?",
                                         (after, job_id)).fetchone()
            if anchor is None:
                return [], False
            sql += " AND seq < ?"
            params.append(anchor["seq"])
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit + 1)
        rows = [r[0] for r in self.conn().execute(sql, params)]
        return rows[:limit], len(rows) > limit

    def owned_events_page(self, owner: str, job_id: str, limit: int) -> tuple[list[bytes], bool] | None:
        """The first page of :meth:`list_events` for a job of this owner, in one query (the job's
        ownership checked in it); None when it finds nothing: no such job of this owner, or (never
        in practice: a job's creation writes its first event) a job without events."""
        rows = [r[0] for r in self.conn().execute(
            "SELECT CAST(body AS BLOB) FROM events WHERE job_id = ?1 AND EXISTS "
            "(SELECT 1 FROM jobs WHERE id = ?1 AND owner = ?2) ORDER BY seq DESC LIMIT ?3",
            (job_id, owner, limit + 1))]
        if not rows:
            return None
        return rows[:limit], len(rows) > limit

    # -- checkpoints ------------------------------------------------------------------------
    def list_checkpoints(self, job_id: str, *, after: str | None, limit: int) -> tuple[list[sqlite3.Row], bool]:
        """Newest first; `after` = a checkpoint id: the checkpoints older than it."""
        sql = "SELECT * FROM checkpoints WHERE job_id = ?"
        params: list[Any] = [job_id]
        if after:
            anchor = self.conn().execute("SELECT seq FROM checkpoints WHERE id = ? AND job_id = ?",
                                         (after, job_id)).fetchone()
            if anchor is None:
                return [], False
            sql += " AND seq < ?"
            params.append(anchor["seq"])
        sql += " ORDER BY seq DESC LIMIT ?"
        params.append(limit + 1)
        rows = self.conn().execute(sql, params).fetchall()
        return rows[:limit], len(rows) > limit

    # -- predictions ------------------------------------------------------------------------
    def list_predictions(self, job_id: str, *, epoch: int | None, limit: int, offset: int) -> tuple[list[sqlite3.Row], int]:
        where = "job_id = ?" + (" AND epoch = ?" if epoch is not None else "")
        params: list[Any] = [job_id] + ([epoch] if epoch is not None else [])
        total = self.conn().execute(f"SELECT COUNT(*) FROM predictions WHERE {where}", params).fetchone()[0]
        rows = self.conn().execute(f"SELECT * FROM predictions WHERE {where} ORDER BY epoch, sample_index, seq "
                                   "LIMIT ? OFFSET ?", [*params, limit, offset]).fetchall()
        return rows, int(total)

    def prediction_epochs(self, job_id: str) -> list[sqlite3.Row]:
        return self.conn().execute(
            "SELECT epoch, COUNT(*) AS prediction_count, MAX(step) AS latest_step FROM predictions "
            "WHERE job_id = ? GROUP BY epoch ORDER BY epoch", (job_id,)).fetchall()

    def all_predictions(self, job_id: str) -> list[sqlite3.Row]:
        return self.conn().execute("SELECT * FROM predictions WHERE job_id = ? ORDER BY epoch, sample_index",
                                   (job_id,)).fetchall()

    # -- ledger -------------------------------------------------------------------------------
    def spent_cents(self, owner: str, since: int | None = None) -> dict[str, int]:
        sql = ("SELECT kind, COALESCE(SUM(amount_cents), 0) AS cents FROM ledger WHERE owner = ?"
               + (" AND created_at >= ?" if since is not None else "") + " GROUP BY kind")
        rows = self.conn().execute(sql, (owner,) if since is None else (owner, since)).fetchall()
        by_kind = {r["kind"]: int(r["cents"]) for r in rows}
        return {"tokens": by_kind.get("tokens", 0), "gpu": by_kind.get("gpu", 0)}

    def usage_by_model(self, owner: str, models: list[str], since: int) -> dict[str, dict[str, int]]:
        out: dict[str, dict[str, int]] = {}
        for model in models:
            row = self.conn().execute(
                "SELECT COUNT(DISTINCT job_id) AS requests, "
                "COALESCE(SUM(CASE WHEN kind = 'tokens' THEN quantity END), 0) AS tokens, "
                "COALESCE(SUM(amount_cents), 0) AS cents FROM ledger WHERE owner = ? AND model = ? AND created_at >= ?",
                (owner, model, since)).fetchone()
            out[model] = {"requests": int(row["requests"]), "input_tokens": int(row["tokens"]),
                          "output_tokens": 0, "spend_cents": int(row["cents"])}
        return out

    # -- idempotency ----------------------------------------------------------------------------
    def idempotency_begin(self, owner: str, key: str, route: str, fingerprint: str) -> sqlite3.Row | None:
        """Claim (owner, key, route). Returns the existing row when there is one (done, or in flight in
        this run of the server).

        A pending record left by an earlier run (the server stopped or crashed while handling the
        request) is taken over: the work it guarded commits its result together with the record
        (see :meth:`idempotency_done`), so a pending record means nothing was committed and the
        request can safely run again. One job per key, never zero, never two.
        """
        with self.tx() as c:
            c.execute("DELETE FROM idempotency WHERE created_at < ?", (time.time() - 24 * 3600,))
            row = c.execute("SELECT * FROM idempotency WHERE owner = ? AND key = ? AND route = ?",
                            (owner, key, route)).fetchone()
            if row is not None and row["state"] == "pending" and row["instance"] != self.instance:
                c.execute("DELETE FROM idempotency WHERE owner = ? AND key = ? AND route = ?", (owner, key, route))
                row = None
            if row is not None:
                return row
            c.execute("INSERT INTO idempotency (owner, key, route, fingerprint, state, created_at, instance) "
                      "VALUES (?, ?, ?, ?, 'pending', ?, ?)", (owner, key, route, fingerprint, time.time(),
                                                              self.instance))
            return None

    @staticmethod
    def idempotency_done(c: sqlite3.Connection, claim: tuple[str, str, str] | None, status_code: int,
                         body: bytes) -> None:
        """Inside the transaction that commits a request's work: its answer, for replays."""
        if claim is not None:
            c.execute("UPDATE idempotency SET state = 'done', status_code = ?, body = ? "
                      "WHERE owner = ? AND key = ? AND route = ?", (status_code, body, *claim))

    def idempotency_finish(self, owner: str, key: str, route: str, status_code: int, body: bytes) -> None:
        with self.tx() as c:
            c.execute("UPDATE idempotency SET state = 'done', status_code = ?, body = ? "
                      "WHERE owner = ? AND key = ? AND route = ?", (status_code, body, owner, key, route))

    def idempotency_release(self, owner: str, key: str, route: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM idempotency WHERE owner = ? AND key = ? AND route = ? AND state = 'pending'",
                      (owner, key, route))


# --------------------------------------------------------------------------- API objects


def file_object(row: sqlite3.Row) -> dict[str, Any]:
    obj = {"id": row["id"], "object": "file", "bytes": row["bytes"], "created_at": row["created_at"],
           "filename": row["filename"], "purpose": row["purpose"], "status": "processed"}
    if row["expires_at"] is not None:
        obj["expires_at"] = row["expires_at"]
    return obj


def checkpoint_object(row: sqlite3.Row) -> dict[str, Any]:
    return {"object": "fine_tuning.job.checkpoint", "id": row["id"], "created_at": row["created_at"],
            "fine_tuned_model_checkpoint": row["fine_tuned_model_checkpoint"], "fine_tuning_job_id": row["job_id"],
            "metrics": _loads(row["metrics"], {}), "step_number": row["step_number"]}


def prediction_object(row: sqlite3.Row) -> dict[str, Any]:
    return {"id": row["id"], "epoch": row["epoch"], "step": row["step"], "sample_index": row["sample_index"],
            "prompt": row["prompt"], "ground_truth": row["ground_truth"], "prediction": row["prediction"],
            "exact_match": bool(row["exact_match"]), "char_error_rate": row["char_error_rate"],
            "length_ratio": row["length_ratio"], "word_overlap": row["word_overlap"],
            "prompt_tokens": row["prompt_tokens"], "completion_tokens": row["completion_tokens"],
            "latency_ms": row["latency_ms"], "created_at": row["created_at"]}
