"""Where a trace DB is: target parsing (paths, sqld directories, `sqlite:///` URLs, libSQL
URLs), the sqld layout, the SQLite header check, SQLite error mapping, credential stripping
and DB discovery. Creates nothing, prints nothing."""

from __future__ import annotations

import os
from pathlib import Path

from synth_cli.errors import TraceStoreError

REMOTE_SCHEMES = ("http://", "https://", "ws://", "wss://", "libsql://")
SQLITE_URL_PREFIXES = ("sqlite+aiosqlite:///", "sqlite:///")
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def is_remote(target: str) -> bool:
    return target.lower().startswith(REMOTE_SCHEMES)


def _refuse_other_urls(text: str) -> None:
    """A URL of a scheme no store speaks (ftp://, s3://, postgres://...) is an error, not a path."""
    import re

    match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if match and not text.lower().startswith(SQLITE_URL_PREFIXES + REMOTE_SCHEMES):
        raise TraceStoreError(f"{text}: unsupported URL scheme {match.group(1)!r}",
                              hint="a trace DB is a path, a sqlite:/// URL, or a libSQL server "
                                   "(http(s)://, ws(s)://, libsql://)")


def resolve_local_path(target: str | os.PathLike) -> Path:
    """Turn a path, sqld directory or sqlite URL into the SQLite file to open (never creating one)."""
    text = os.fspath(target)
    _refuse_other_urls(text)
    for prefix in SQLITE_URL_PREFIXES:
        if text.lower().startswith(prefix):
            text = text[len(prefix):]
            break
    else:
        if text.lower().startswith("sqlite:"):
            raise TraceStoreError(f"{text}: unsupported SQLite URL",
                                  hint="use sqlite:///relative/path or sqlite:////absolute/path")
    path = Path(text).expanduser()
    if not path.exists():
        raise TraceStoreError(f"{path}: no such file or directory",
                              hint="check the path; `synth-ai traces` lists the DBs it can find")
    if path.is_dir():
        return _find_in_directory(path)
    check_regular_file(path, "a trace DB is a SQLite file")
    return path


def check_regular_file(path: Path, hint: str | None = None) -> None:
    """Refuse a FIFO, socket or device at once (reading one would block for ever or never end)."""
    from synth_cli.files import non_regular_kind

    kind = non_regular_kind(path)
    if kind is not None:
        raise TraceStoreError(f"{path}: is {kind}, not a regular file", hint=hint)


def _find_in_directory(path: Path) -> Path:
    candidates: list[Path] = []
    if (path / "data").is_file():  # X.db/dbs/<name>
        return path / "data"
    for base in (path / "dbs", path):  # X.db  or  X.db/dbs
        if base.is_dir():
            candidates.extend(sorted(p for p in base.glob("*/data") if p.is_file()))
        if candidates:
            break
    if not candidates:
        sqlite_files = sorted(p for p in path.glob("*.db") if p.is_file()) + sorted(path.glob("*.sqlite"))
        if len(sqlite_files) == 1:
            return sqlite_files[0]
        raise TraceStoreError(f"{path}: no trace database in this directory",
                              hint="expected a SQLite file or the sqld layout DIR/dbs/<name>/data")
    if len(candidates) == 1:
        return candidates[0]
    default = [c for c in candidates if c.parent.name == "default"]
    if default:
        return default[0]
    names = ", ".join(c.parent.name for c in candidates)
    raise TraceStoreError(f"{path}: holds several databases ({names})",
                          hint=f"name one, e.g. {candidates[0].parent}")


def sqld_data_file(path: Path, *, create: bool = False) -> Path:
    """The SQLite file of the sqld-layout directory `path` (`X.db`, `X.db/dbs`, `X.db/dbs/<name>`).

    With `create` (the write side), a directory that holds no DB yet gets the sqld layout's
    `dbs/default/data` when it is empty, a `dbs` directory or named `*.db`; any other
    directory is refused, so a tracer never turns a directory of other files into a DB.
    Creates nothing either way.
    """
    if not create:
        return _find_in_directory(path)
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


def resolve_write_target(target: str | os.PathLike, layout: str = "auto") -> Path:
    """The SQLite file written for a local `target` (path, sqld directory, sqlite:/// URL); creates nothing.

    `layout="sqld"` makes a path that does not exist yet a new sqld directory
    (`X.db/dbs/default/data`); `"file"` or `"auto"` make it a file.
    """
    if layout not in ("auto", "file", "sqld"):
        raise ValueError(f"layout must be 'auto', 'file' or 'sqld', not {layout!r}")
    text = os.fspath(target)
    lowered = text.lower()
    if lowered.startswith(REMOTE_SCHEMES):
        raise TraceStoreError(f"{text}: a libSQL server, not a local file")
    _refuse_other_urls(text)
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
        return sqld_data_file(path, create=True)
    if layout == "sqld" and not path.exists():
        return path / "dbs" / "default" / "data"
    return path


def check_writable_file(path: Path) -> None:
    """Refuse, before anything is written, what is not (or cannot become) a trace DB file.

    A missing path or an empty file is fine (it becomes one); a directory, a device/FIFO/
    socket, or a file that does not start with the SQLite header is a TraceStoreError.
    """
    if not path.exists():
        return
    if path.is_dir():
        raise TraceStoreError(f"{path}: is a directory, not a trace database")
    if not path.is_file():
        raise TraceStoreError(f"{path}: not a regular file (a device, FIFO or socket)",
                              hint="point the tracer at a DB file")
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except OSError as exc:
        raise TraceStoreError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if header and header != SQLITE_MAGIC:
        raise TraceStoreError(f"{path}: not a SQLite database (corrupt or another file type)",
                              hint="point the tracer at a new path or an existing trace DB")


def _check_sqlite_header(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            header = fh.read(16)
    except IsADirectoryError:  # pragma: no cover - resolved earlier
        raise TraceStoreError(f"{path}: is a directory") from None
    except OSError as exc:
        raise TraceStoreError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if not header:
        raise TraceStoreError(f"{path}: empty file, not a trace database")
    if header != SQLITE_MAGIC:
        raise TraceStoreError(f"{path}: not a SQLite database (corrupt or another file type)")


def _sqlite_error(path: Path, exc: Exception) -> TraceStoreError:
    text = str(exc)
    if "not a database" in text or "malformed" in text:
        return TraceStoreError(f"{path}: corrupt SQLite database ({text})")
    return TraceStoreError(f"{path}: {text}")


def strip_credentials(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    try:
        parts = urlsplit(url)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:  # not a valid URL (opening it says so): drop user info and query all the same
        import re

        return re.sub(r"^([a-z0-9+.-]+://)[^/@]*@", r"\1", url.split("?")[0], flags=re.I)
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _network_reason(exc: BaseException) -> str | None:
    """A plain reason ("connection refused", "unknown host"…) from the OSError behind a client error."""
    import errno
    import socket

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for candidate in (current, getattr(current, "os_error", None)):  # some clients keep it in .os_error
            if isinstance(candidate, socket.gaierror):
                return "unknown host"
            if isinstance(candidate, (TimeoutError, socket.timeout)):
                return "timed out"
            if isinstance(candidate, OSError) and candidate.errno in (errno.ECONNREFUSED, errno.ECONNRESET,
                                                                        errno.EHOSTUNREACH, errno.ENETUNREACH):
                return {errno.ECONNREFUSED: "connection refused", errno.ECONNRESET: "connection reset",
                        errno.EHOSTUNREACH: "host unreachable", errno.ENETUNREACH: "network unreachable"
                        }[candidate.errno]
        current = current.__cause__ or current.__context__
    return None


def find_dbs(root: str | os.PathLike) -> list[Path]:
    """Trace DBs under `root` (not recursive beyond the sqld layout), sorted by path.

    * `root/<name>/data`: the sqld layout's `X.db/dbs/<name>/data` when root is `X.db/dbs`;
    * `root/dbs/<name>/data` and `root/<X.db>/dbs/<name>/data`: root is `X.db` or holds several;
    * `root/*.db|*.sqlite|*.sqlite3` files that start with the SQLite header.

    A root that does not exist raises TraceStoreError; nothing is created.
    """
    base = Path(root).expanduser()
    if not base.exists():
        raise TraceStoreError(f"{base}: no such directory",
                              hint="pass --root DIR (a directory of trace DBs) or --db PATH")
    if not base.is_dir():
        raise TraceStoreError(f"{base}: not a directory", hint=f"to read one DB, use --db {base}")
    found: list[Path] = []
    for pattern in ("*/data", "dbs/*/data", "*/dbs/*/data"):
        found.extend(p for p in base.glob(pattern) if p.is_file())
    for child in base.iterdir():
        if child.is_file() and child.suffix.lower() in SQLITE_SUFFIXES and _has_sqlite_header(child):
            found.append(child)
    unique = {p.resolve(): p for p in found}
    return sorted(unique.values(), key=lambda p: str(p))


def _has_sqlite_header(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False



def target_key(target: str | os.PathLike) -> str:
    """Identity of a target for de-duplication (resolved path, or the URL as given)."""
    text = os.fspath(target)
    if is_remote(text):
        return text.rstrip("/")
    try:
        return str(resolve_local_path(text).resolve())
    except TraceStoreError:
        return text
