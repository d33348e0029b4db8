"""`TraceStore`: read-only access to a trace database, local or remote.

Targets accepted by :meth:`TraceStore.open` (parsed in :mod:`synth_cli.store.locate`):

* a SQLite file (`traces.db`, or the sqld layout file `X.db/dbs/default/data`);
* a directory in sqld layout (`X.db`, `X.db/dbs`, `X.db/dbs/<name>`);
* `sqlite:///path` and `sqlite+aiosqlite:///path` URLs (the published package's forms);
* a libSQL server: `http://`, `https://`, `ws://`, `wss://`, `libsql://` (token from
  `LIBSQL_AUTH_TOKEN` or `TURSO_AUTH_TOKEN`).

Local files are opened with `mode=ro`: a path that does not exist is an error and
nothing is ever created. Large reads go through :meth:`TraceStore.scan`, which
streams from SQLite and pages by key (keyset pagination) against a server.
This module never prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import quote

from synth_cli.errors import TraceStoreError
from synth_cli.store.locate import (
    _check_sqlite_header,
    _sqlite_error,
    is_remote,
    resolve_local_path,
)

REQUIRED_TABLES = ("session_traces", "events")
DEFAULT_PAGE_SIZE = 500
#: A remote scan sizes its pages to about this many bytes of answer (see RemoteTraceStore.scan):
#: in JSON, whose parse briefly takes ~13x an answer's size...
SCAN_PAGE_BYTES = 1 << 20
#: ... and in Protobuf, parsed in place (fewer, larger pages: sqld's CPU per page is mostly per request).
SCAN_PAGE_BYTES_PROTOBUF = 4 << 20
#: ... starting with at most this many rows, before the row size is known.
FIRST_PAGE_ROWS = 64


@dataclass
class Schema:
    """What a trace DB holds: its tables and columns, and which tracing_v3 generation it is."""

    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def tables(self) -> set[str]:
        return set(self.columns)

    def has(self, table: str, column: str | None = None) -> bool:
        cols = self.columns.get(table)
        if cols is None:
            return False
        return column is None or column in cols

    @property
    def has_call_records(self) -> bool:
        """The current tracing_v3 schema stores LLMCallRecords in `events.call_records`."""
        return self.has("events", "call_records")

    @property
    def is_trace_db(self) -> bool:
        return all(t in self.columns for t in REQUIRED_TABLES)


class TraceStore:
    """A read-only trace database. Use :meth:`open`; close it (or use `with`)."""

    kind = "sqlite"

    def __init__(self, target: str, label: str):
        self.target = target
        self.label = label
        self._schema: Schema | None = None
        self.warnings: list[str] = []

    # -- construction ------------------------------------------------------------------
    @staticmethod
    def open(target: str | os.PathLike, *, check_schema: bool = True) -> "TraceStore":
        text = os.fspath(target)
        if is_remote(text):
            store: TraceStore = RemoteTraceStore(text)
        else:
            store = SQLiteTraceStore(resolve_local_path(text), text)
        try:
            if check_schema and not store.schema.is_trace_db:
                missing = ", ".join(t for t in REQUIRED_TABLES if t not in store.schema.tables)
                raise TraceStoreError(f"{store.label}: not a synth-ai trace database (no {missing} table)",
                                      hint="point --db at a DB written by the synth-ai tracer")
        except BaseException:
            store.close()
            raise
        return store

    def __enter__(self) -> "TraceStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- schema -----------------------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        if self._schema is None:
            columns: dict[str, tuple[str, ...]] = {}
            tables = [r[0] for r in self.rows(
                "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]
            for table in tables:
                quoted = table.replace('"', '""')  # a table named with a quote is still one identifier
                columns[table] = tuple(r[1] for r in self.rows(f'PRAGMA table_info("{quoted}")'))
            self._schema = Schema(columns)
        return self._schema

    # -- reading (implemented by subclasses) ---------------------------------------------------
    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        """Rows of a query whose result is small (aggregates); rows index by position and name."""
        raise NotImplementedError

    def scan(self, sql: str, params: Sequence[Any] = (), *, key: str, page_size: int = DEFAULT_PAGE_SIZE
             ) -> Iterator[Any]:
        """Stream a large result ordered by `key`, a unique column of the result (e.g. an event id)."""
        raise NotImplementedError

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        for row in self.rows(sql, params):
            return row
        return None

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        row = self.one(sql, params)
        return None if row is None else row[0]

    def dicts(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return [row_to_dict(r) for r in self.rows(sql, params)]

    def size_bytes(self) -> int | None:
        try:
            page_count = self.scalar("PRAGMA page_count")
            page_size = self.scalar("PRAGMA page_size")
        except TraceStoreError:
            return None
        if page_count is None or page_size is None:
            return None
        return int(page_count) * int(page_size)

    def close(self) -> None:  # pragma: no cover - overridden
        pass


def row_to_dict(row: Any) -> dict[str, Any]:
    if hasattr(row, "keys"):
        return {k: row[k] for k in row.keys()}
    if hasattr(row, "asdict"):
        return row.asdict()
    return dict(row)


class SQLiteTraceStore(TraceStore):
    """A local SQLite file, opened read-only."""

    kind = "sqlite"

    def __init__(self, path: Path, target: str | None = None):
        super().__init__(target or str(path), str(path))
        self.path = path
        #: what a reader should be told (e.g. a WAL that could not be read); the store never prints
        self.warnings: list[str] = []
        self._snapshot: Path | None = None
        _check_sqlite_header(path)
        used: list[str] = []
        self.conn, self._snapshot = _connect_ro(path, self.warnings, used)
        #: the URI the connection reads (the file, its private snapshot, or the file as immutable)
        self.uri = used[-1]

    def reopen(self) -> "SQLiteTraceStore":
        """A new store reading the same file (or snapshot) as this one, on a connection of its own:
        for a worker process, which must not use a connection made before it was forked."""
        other = object.__new__(SQLiteTraceStore)
        TraceStore.__init__(other, self.target, self.label)
        other.path, other.warnings, other._snapshot, other.uri = self.path, [], None, self.uri
        other._schema = self._schema
        other.conn = _connect(self.uri)
        return other

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        import sqlite3

        try:
            cursor = self.conn.execute(sql, tuple(_bindable(p) for p in params))
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(self.path, exc) from exc
        try:
            yield from cursor
        except sqlite3.DatabaseError as exc:
            raise _sqlite_error(self.path, exc) from exc

    def scan(self, sql: str, params: Sequence[Any] = (), *, key: str, page_size: int = DEFAULT_PAGE_SIZE
             ) -> Iterator[Any]:
        # One streaming cursor: SQLite hands rows over as they are read, memory stays flat.
        return self.rows(f"SELECT * FROM ({sql}) ORDER BY {key}", params)

    def size_bytes(self) -> int | None:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.path.getsize(str(self.path) + suffix)
            except OSError:
                pass
        return total

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None
        snapshot = getattr(self, "_snapshot", None)
        if snapshot is not None:
            _remove_tree(snapshot)
            self._snapshot = None


def _bindable(value: Any) -> Any:
    """A parameter SQLite can bind: a str with lone surrogates (a non-UTF-8 command-line argument)
    becomes valid text (U+FFFD for each such byte), which then simply matches nothing stored."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return value


def _uri(path: Path, params: str = "mode=ro") -> str:
    # quote() of the bytes: a file name that is not UTF-8 stays the same file
    return f"file:{quote(os.fsencode(path.resolve()))}?{params}"


def _connect(uri: str):
    import sqlite3

    conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_ro(path: Path, warnings: list[str] | None = None, used: list[str] | None = None
                ) -> tuple[Any, Path | None]:
    """A read-only connection, and the private snapshot directory it reads from (if any).

    A WAL database in a directory we cannot write (a read-only mount, another user's
    directory) cannot get its `-shm` index, so SQLite refuses it. Reading the main file
    alone (`immutable=1`) would silently ignore the transactions committed in the `-wal`.
    Instead the DB and its WAL are copied into a private temporary directory and read
    there: every committed session is seen. When no WAL holds data, `immutable=1` reads
    the whole DB exactly. When the copy is impossible (no space, the DB changes while
    being copied, larger than SNAPSHOT_MAX_BYTES) the main file is read and `warnings`
    says that committed data may be missing.
    """
    import sqlite3

    if used is None:
        used = []
    try:
        used.append(_uri(path))
        return _connect(used[-1]), None
    except sqlite3.DatabaseError as exc:
        if not ("unable to open" in str(exc) or "readonly" in str(exc).lower()):
            raise _sqlite_error(path, exc) from exc
        first = exc
    wal = Path(f"{path}-wal")
    try:
        wal_size = wal.stat().st_size
    except OSError:
        wal_size = 0
    if wal_size > 0:
        snapshot, why = _snapshot(path, wal)
        if snapshot is not None:
            try:
                used.append(_uri(snapshot / path.name))
                return _connect(used[-1]), snapshot
            except sqlite3.DatabaseError as exc:
                _remove_tree(snapshot)
                why = f"the private copy cannot be read ({exc})"
        if warnings is not None:
            warnings.append(f"{path}: cannot read the transactions in {wal.name} (the directory cannot be "
                            f"written, and {why}); committed sessions may be missing")
    try:
        used.append(_uri(path, "mode=ro&immutable=1"))
        return _connect(used[-1]), None
    except sqlite3.DatabaseError:
        raise _sqlite_error(path, first) from first


#: the largest DB copied to read its WAL from a read-only directory (larger: read without the WAL, with a warning).
SNAPSHOT_MAX_BYTES = 4 << 30


def _snapshot(path: Path, wal: Path) -> tuple[Path | None, str]:
    """Copy `path` and its WAL into a new private directory; (directory, "") or (None, why not)."""
    import shutil
    import tempfile

    def state() -> tuple[Any, ...]:
        a, b = path.stat(), wal.stat()
        return a.st_size, a.st_mtime_ns, b.st_size, b.st_mtime_ns

    try:
        before = state()
    except OSError as exc:
        return None, f"cannot read it ({exc.strerror or exc})"
    if before[0] + before[2] > SNAPSHOT_MAX_BYTES:
        return None, f"at {(before[0] + before[2]) >> 20} MB it is too large to copy"
    directory = None
    try:
        directory = Path(tempfile.mkdtemp(prefix="synth-ai-snapshot-"))
        shutil.copyfile(path, directory / path.name)
        shutil.copyfile(wal, directory / wal.name)
        if state() != before:
            _remove_tree(directory)
            return None, "it changed while it was being copied"
        return directory, ""
    except OSError as exc:
        if directory is not None:
            _remove_tree(directory)
        return None, f"a private copy failed ({exc.strerror or exc})"


def _remove_tree(directory: Path) -> None:
    import shutil

    shutil.rmtree(directory, ignore_errors=True)


def _after(key: Any, last: Any) -> bool:
    """Whether a keyset page's first key comes after the previous page's last (SQLite's order: numbers
    before text before blobs; text and blobs compare as bytes, which Python's order of str agrees with)."""
    try:
        return key > last
    except TypeError:  # different storage classes
        rank = {int: 1, float: 1, bool: 1, str: 2, bytes: 3}
        return rank.get(type(key), 0) > rank.get(type(last), 0)


class RemoteTraceStore(TraceStore):
    """A libSQL server (sqld, Turso), read over Hrana-over-HTTP (:mod:`synth_cli.store.libsql`).

    :meth:`scan` pages by key and fetches the next page while the caller works on this one.
    """

    kind = "libsql"

    def __init__(self, url: str):
        from synth_cli.config import check_url, libsql_auth_token
        from synth_cli.store.libsql import parse_url

        check_url(url, "--db")
        server = parse_url(url)  # registers a ?authToken= as a secret before anything can print it
        super().__init__(url, server.label)
        self.url = url
        self._client = None
        self._token = server.url_token or libsql_auth_token()

    def reopen(self) -> "RemoteTraceStore":
        """A new store for the same server with a client of its own (made on first use): for a
        worker process, which must never use a connection made before it was forked."""
        other = object.__new__(RemoteTraceStore)
        TraceStore.__init__(other, self.target, self.label)
        other.url, other._token, other._client = self.url, self._token, None
        other._schema = self._schema
        return other

    @property
    def client(self):
        if self._client is None:
            from synth_cli.store.libsql import LibsqlClient

            self._client = LibsqlClient(self.url, self._token)
        return self._client

    @property
    def schema(self) -> Schema:
        """Every table's columns in one round trip (`pragma_table_info`), not one per table."""
        if self._schema is None:
            from synth_cli.store.libsql import LibsqlError

            try:
                rows = self.rows("SELECT m.name, p.name FROM sqlite_master m JOIN pragma_table_info(m.name) p "
                                 "WHERE m.type IN ('table', 'view') ORDER BY m.name, p.cid")
            except LibsqlError as exc:
                if exc.code == "NETWORK" or exc.status is not None:
                    raise
                return TraceStore.schema.fget(self)  # e.g. a view that no longer compiles: the same error as before
            columns: dict[str, list[str]] = {}
            for table, column in rows:
                columns.setdefault(table, []).append(column)
            self._schema = Schema({table: tuple(cols) for table, cols in columns.items()})
        return self._schema

    def _execute(self, sql: str, params: Sequence[Any] = ()):
        return self.client.execute(sql, list(params), read_only=True)

    def _read(self, sql: str, params: Sequence[Any] = ()):
        """A read in Hrana's Protobuf encoding (JSON on a server without it): values parsed in place."""
        return self.client.read(sql, list(params))

    def rows(self, sql: str, params: Sequence[Any] = ()) -> Iterator[Any]:
        # In Protobuf (see _read): the session query of a 12,000-session DB took the process to 78 MB
        # in JSON (orjson's dicts of every value), 30 MB this way, for the same CPU.
        return iter(self._read(sql, params).rows)

    def scan(self, sql: str, params: Sequence[Any] = (), *, key: str, page_size: int = DEFAULT_PAGE_SIZE
             ) -> Iterator[Any]:
        """Keyset pages of at most `page_size` rows and about SCAN_PAGE_BYTES (JSON: parsing an
        answer briefly takes ~13x its size) or SCAN_PAGE_BYTES_PROTOBUF each (rows of big blobs
        make shorter pages), the next page fetched while the caller works on this one."""
        first = f"SELECT * FROM ({sql}) ORDER BY {key} LIMIT ?"
        following = f"SELECT * FROM ({sql}) WHERE {key} > ? ORDER BY {key} LIMIT ?"

        def fetch(last: Any, limit: int) -> tuple[list[Any], int, int]:
            """(rows, the limit they were fetched with, the limit for the next page)."""
            from synth_cli.store.libsql import LibsqlError

            while True:
                try:
                    if last is None:
                        result = self._read(first, [*params, limit])
                    else:
                        result = self._read(following, [*params, last, limit])
                    break
                except LibsqlError as exc:
                    if exc.code != "RESPONSE_TOO_LARGE":
                        raise
                    if limit == 1:
                        raise LibsqlError(f"{exc} (one row of this query is larger than the server's limit)",
                                          code=exc.code, hint="raise sqld's --max-response-size") from exc
                    limit = max(1, limit // 2)
            rows = result.rows
            if rows and key not in result.columns:
                raise LibsqlError(f"{self.label}: the server answered a page without its {key!r} column",
                                  code="HRANA_PROTO_ERROR", hint="is this URL a libSQL server (sqld, Turso)?")
            if last is not None and rows and not _after(rows[0][key], last):
                raise LibsqlError(f"{self.label}: the server answered a page of rows that does not follow the "
                                  f"previous one ({key} {rows[0][key]!r} after {last!r})", code="HRANA_PROTO_ERROR",
                                  hint="is this URL a libSQL server (sqld, Turso)?")
            per_row = (getattr(result, "nbytes", 0) or 0) / max(1, len(rows))
            budget = SCAN_PAGE_BYTES_PROTOBUF if getattr(result, "encoding", "json") == "protobuf" else SCAN_PAGE_BYTES
            following_limit = page_size if per_row <= 0 else max(1, min(page_size, int(budget // per_row)))
            return rows, limit, following_limit

        rows, limit, next_limit = fetch(None, min(page_size, FIRST_PAGE_ROWS))
        if len(rows) < limit:  # one page: no second request, no thread
            yield from rows
            return
        from concurrent.futures import ThreadPoolExecutor

        # Client and server overlap: page N+1 is on its way while the caller converts page N.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="libsql-prefetch")
        pending = None
        try:
            while True:
                pending = pool.submit(fetch, rows[-1][key], next_limit) if len(rows) == limit else None
                yield from rows
                if pending is None:
                    return
                (rows, limit, next_limit), pending = pending.result(), None
                if not rows:
                    return
        finally:
            if pending is not None:
                pending.cancel()
            pool.shutdown(wait=True)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def open_stores(targets: Sequence[str]) -> list[TraceStore]:
    """Open several targets; on any failure, close what was opened and re-raise."""
    stores: list[TraceStore] = []
    try:
        for target in targets:
            stores.append(TraceStore.open(target))
    except BaseException:
        for store in stores:
            store.close()
        raise
    return stores
