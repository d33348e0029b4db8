"""Output files of `filter`, written so that no input destroys data.

* **Atomic.** A regular output is written to a temp file in its directory and renamed
  into place by :meth:`AtomicFiles.commit`. Until then the real path is untouched: an
  exception, Ctrl-C, SIGTERM (the `filter` command turns it into KeyboardInterrupt),
  a full disk or a file-size limit removes the temp files and leaves an existing
  output as it was.
* **Pairs commit together** (train + val). Both temp files are complete and fsynced,
  then a commit journal `.NAME.synth-commit` (next to the first output) lists the
  renames; SIGINT, SIGTERM and SIGHUP are deferred while the renames run; the journal goes
  once the directory is fsynced. An interrupt therefore never splits the pair. A
  process killed outright (SIGKILL, power loss) between the two renames leaves the
  journal: the next run to the same output finishes the renames first (both files
  new), then writes its own.
* **Temp files** are named `.NAME.<pid>.<random>.synth-tmp`. Opening an output removes
  the temp files of that output whose process is gone (a SIGKILLed run's leftovers);
  files of a live process and every other file are left alone.
* **Refused targets**: a directory; a block device or socket; any trace DB being read
  or its `-wal`, `-shm` and `-journal` files, compared by resolved path and by inode
  (hard links too); a missing parent directory unless `parents=True` (`--parents`).
* **Symlinks**: the link's target is written (as `cp` does) and the link stays. A file with
  several hard links is replaced by a new file: its other names keep the old content.
* **Modes**: an existing file keeps its permission bits (and owner, when allowed);
  a new one gets `0666 & ~umask`, like a plain `open()`.
* **Character devices and FIFOs** (`/dev/null`, `/dev/stdout`, `>(gzip > x.gz)`) are
  written through, not atomically: what was written before a failure stays written.
  A FIFO nobody reads is an error at once instead of a hang. A validation split next
  to such an output is refused (there is no directory to put it in).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import secrets
import signal
import stat
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

from synth_cli.errors import DatasetError

BUFFER_SIZE = 1 << 20
#: seconds between two syncs of an output being written (see _Syncer)
SYNC_EVERY = 0.5
TEMP_SUFFIX = ".synth-tmp"
JOURNAL_SUFFIX = ".synth-commit"
#: the files next to a SQLite DB that belong to it.
DB_SIDECARS = ("", "-wal", "-shm", "-journal")
#: errnos of a failed write (an OSError with another errno inside the block is not about the output).
_WRITE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EPIPE, errno.EIO, getattr(errno, "EDQUOT", errno.ENOSPC)}
_HELD_SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s)


# --------------------------------------------------------------------------- protected paths


class Protected:
    """Files an output must never be: trace DBs and their sidecars, and the other inputs of the
    run (`filter --config FILE`), by resolved path and by inode."""

    HINT = "choose another --output; overwriting it would destroy recorded sessions"

    def __init__(self, db_files: Iterable[str | os.PathLike] = ()):
        self.paths: dict[str, str] = {}
        self.inodes: dict[tuple[int, int], str] = {}
        self.hints: dict[str, str] = {}
        for db in db_files:
            self.add(db)

    def add_input(self, path: str | os.PathLike, what: str, hint: str) -> None:
        """Another file the run reads (`what`: "the --config file being read"), refused as an output."""
        name = os.fspath(path)
        self.paths[os.path.realpath(name)] = what
        self.hints[what] = hint
        try:
            st = os.stat(name)
        except OSError:
            return
        self.inodes[(st.st_dev, st.st_ino)] = what

    def add(self, db: str | os.PathLike) -> None:
        given = os.fspath(db)
        # SQLite names the sidecars after the resolved file: a DB read through a symlink has them there
        for base in dict.fromkeys((given, os.path.realpath(given))):
            self._add(base, given)

    def _add(self, base: str, given: str) -> None:
        for suffix in DB_SIDECARS:
            name = base + suffix
            what = ("the trace DB being read" if not suffix
                    else f"the {suffix} file of the trace DB being read ({given})")
            self.paths[os.path.realpath(name)] = what
            try:
                st = os.stat(name)
            except OSError:
                continue
            self.inodes[(st.st_dev, st.st_ino)] = what

    def check(self, path: Path) -> None:
        what = self.paths.get(os.path.realpath(path))
        if what is None:
            try:
                st = os.stat(path)
            except OSError:
                st = None
            if st is not None:
                what = self.inodes.get((st.st_dev, st.st_ino))
        if what is not None:
            raise DatasetError(f"refusing to write {path}: it is {what}", hint=self.hints.get(what, self.HINT))


# --------------------------------------------------------------------------- temp files and journals


def _key(name: str) -> str:
    """The output's name as it appears in its temp/journal names (long names shortened, still unique)."""
    if len(name) <= 120:
        return name
    return f"{name[:80]}~{hashlib.sha1(name.encode('utf-8', 'surrogateescape')).hexdigest()[:16]}"


def _temp_pattern(name: str) -> re.Pattern[str]:
    return re.compile(r"^\." + re.escape(_key(name)) + r"\.(\d+)\.[0-9a-f]{8}" + re.escape(TEMP_SUFFIX) + "$")


def _journal_path(target: Path) -> Path:
    return target.with_name(f".{_key(target.name)}{JOURNAL_SUFFIX}")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (another user's counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, we may not signal it
        return True
    return True


def remove_stale_temps(directory: Path, name: str) -> list[Path]:
    """Remove `directory/.NAME.<pid>.<random>.synth-tmp` files whose process is gone; returns them."""
    pattern = _temp_pattern(name)
    removed = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        match = pattern.match(entry.name)
        if match is None or int(match.group(1)) == os.getpid() or pid_alive(int(match.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def recover_journal(target: Path) -> list[Path]:
    """Finish the renames of a commit whose process died between them; returns the files it completed."""
    journal = _journal_path(target)
    try:
        with open(journal, "rb") as fh:
            data = json.loads(fh.read())
        pid = int(data["pid"])
        renames = [(str(a), str(b)) for a, b in data["renames"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # not ours or unreadable: leave it alone
    if pid != os.getpid() and pid_alive(pid):
        return []  # that commit is still running
    done = []
    directories = {journal.parent}
    for tmp_name, final_name in renames:
        tmp, final = Path(tmp_name), Path(final_name)
        if not tmp.is_absolute():  # names relative to the journal's directory
            tmp, final = journal.parent / tmp, journal.parent / final
        # only our own kind: a temp file of that very output, next to it
        if tmp.parent != final.parent or not _temp_pattern(final.name).match(tmp.name):
            return done
        if tmp.exists():
            try:
                os.replace(tmp, final)
                done.append(final)
            except OSError:
                return done
        directories.add(final.parent)
    for directory in directories:
        _fsync_dir(directory)
    try:
        journal.unlink()
    except OSError:
        pass
    return done


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def _signals_held() -> Iterator[None]:
    """SIGINT/SIGTERM/SIGHUP wait until the block is done, then take effect as they would have.

    Python runs signal handlers in the main thread whichever thread the signal reaches, so
    the handlers are swapped for one that only notes the signal (masking the signal in this
    thread would not stop another thread from receiving it). Off the main thread handlers
    cannot be swapped, and none runs there either.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous: dict[int, Any] = {}
    for signum in _HELD_SIGNALS:
        try:
            handler = signal.getsignal(signum)
            if handler is None:  # installed outside Python: not ours to swap
                continue
            signal.signal(signum, lambda s, frame: pending.append(s))
            previous[signum] = handler
        except (ValueError, OSError):  # pragma: no cover
            continue
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending:
            handler = previous.get(signum)
            if callable(handler):
                handler(signum, None)  # e.g. KeyboardInterrupt, now that the commit is whole
            elif handler == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def write_error(path: Path, exc: OSError, *, atomic: bool = True) -> DatasetError:
    """One line for a failed write: what happened, and that the old output is intact."""
    kept = "; nothing written, the existing file is unchanged" if atomic else ""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        return DatasetError(f"{path}: {reason} while writing{kept}")
    if exc.errno == errno.EFBIG:
        return DatasetError(f"{path}: file too large (a file size limit) while writing{kept}")
    if exc.errno == errno.EPIPE:
        return DatasetError(f"{path}: the reader closed the pipe while writing")
    return DatasetError(f"{path}: cannot write ({exc.strerror or exc}){kept}")


# --------------------------------------------------------------------------- one output


def _stat(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise DatasetError(f"{path}: a parent of this path is not a directory") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot write ({exc.strerror or exc})") from exc


class AtomicFile:
    """One output file; `write` bytes, then `commit` (via :class:`AtomicFiles`) or `abort`."""

    def __init__(self, path: str | os.PathLike, *, parents: bool = False,
                 protected: Protected | None = None, through_ok: bool = True):
        self.path = Path(path)
        self.bytes = 0
        self.lines = 0
        self.through = False  # a device or FIFO: written in place, no temp file
        self.recovered: list[Path] = []
        self.removed_temps: list[Path] = []
        self._fh: BinaryIO | None = None
        self._tmp: Path | None = None
        if protected is not None:
            protected.check(self.path)
        st = _stat(self.path)
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise DatasetError(f"{self.path}: is a directory", hint="give --output a file name, e.g. train.jsonl")
        if st is not None and not stat.S_ISREG(st.st_mode):
            self._open_through(st, through_ok)
            self.target = self.path
            return
        # a regular file, or nothing yet; a symlink (dangling too) writes its target, like cp
        self.target = Path(os.path.realpath(self.path))
        parent = self.target.parent
        if not parent.is_dir():
            if parent.exists() or parent.is_symlink():
                raise DatasetError(f"{self.path}: {parent} is not a directory")
            if not parents:
                raise DatasetError(f"{self.path}: the directory {parent} does not exist",
                                   hint="create it first, or pass --parents to create it")
            try:
                parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DatasetError(f"{parent}: cannot create the directory ({exc.strerror or exc})") from exc
        if protected is not None:
            protected.check(self.target)
        self.recovered = recover_journal(self.target)
        self.removed_temps = remove_stale_temps(parent, self.target.name)
        if st is not None:
            self._mode = stat.S_IMODE(st.st_mode)
            self._owner: tuple[int, int] | None = (st.st_uid, st.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            self._mode = 0o666 & ~umask
            self._owner = None
        tmp = parent / f".{_key(self.target.name)}.{os.getpid()}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise DatasetError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc
        self._tmp = tmp
        self._fh = os.fdopen(fd, "wb", buffering=BUFFER_SIZE)
        self.write = self._fh.write  # bytes in, no per-line bookkeeping on the hot path
        self._syncer: _Syncer | None = _Syncer(fd)

    def _open_through(self, st: os.stat_result, through_ok: bool) -> None:
        mode = st.st_mode
        if stat.S_ISBLK(mode):
            raise DatasetError(f"refusing to write {self.path}: it is a block device",
                               hint="--output takes a file (character devices and FIFOs are written through)")
        if stat.S_ISSOCK(mode):
            raise DatasetError(f"{self.path}: is a socket, not a file", hint="--output takes a file")
        if not through_ok:
            raise DatasetError(f"{self.path}: a validation split needs a regular file as --output",
                               hint="write to a file, or drop --val-fraction")
        fifo = stat.S_ISFIFO(mode)
        flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0) | (os.O_NONBLOCK if fifo else 0)
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise DatasetError(f"{self.path}: no process is reading this FIFO",
                                   hint="start the reader first (e.g. `gzip < FIFO > x.gz &`)") from None
            raise DatasetError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc
        if fifo:
            os.set_blocking(fd, True)
        self.through = True
        self._fh = os.fdopen(fd, "wb", buffering=BUFFER_SIZE)
        self.write = self._fh.write

    def _stop_syncer(self) -> None:
        syncer, self._syncer = getattr(self, "_syncer", None), None
        if syncer is not None:
            syncer.stop()

    def finish(self) -> None:
        """Everything on disk (flush, fsync, mode); the rename is the caller's."""
        if self._fh is None:
            return
        self._stop_syncer()
        fh, self._fh = self._fh, None
        try:
            fh.flush()
            if not self.through:
                os.fsync(fh.fileno())
        except OSError as exc:
            _close_quietly(fh)
            raise write_error(self.path, exc, atomic=not self.through) from exc
        try:
            fh.close()
        except OSError as exc:
            raise write_error(self.path, exc, atomic=not self.through) from exc
        if self._tmp is not None:
            if self._owner is not None:
                try:
                    os.chown(self._tmp, *self._owner)
                except OSError:
                    pass  # not ours to give away: the file becomes ours, as with cp
            try:
                os.chmod(self._tmp, self._mode)
            except OSError:
                pass

    def commit(self) -> None:
        """Finish and rename this one file into place."""
        AtomicFiles.commit_files([self])

    def abort(self) -> None:
        self._stop_syncer()
        if self._fh is not None:
            _close_quietly(self._fh)
            self._fh = None
        if self._tmp is not None:
            try:
                self._tmp.unlink()
            except OSError:
                pass
            self._tmp = None


class _Syncer:
    """Writes a temp output's data to disk while it is being written (`fdatasync` every
    SYNC_EVERY seconds, in a thread that waits on the disk, not the CPU), so the fsync before
    the rename finds little left: an 858 MB output took 0.25 s to fsync at the end, when
    nothing else runs. A small output is finished before the first sync. The thread is
    stopped before the file is closed, so it never touches another file's descriptor; a
    failing sync ends it quietly (`finish` fsyncs and reports)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name="synth-output-sync", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(SYNC_EVERY):
            try:
                os.fdatasync(self.fd)
            except OSError:
                return

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def _close_quietly(fh: BinaryIO) -> None:
    try:
        fh.close()
    except OSError:
        pass


class AtomicFiles:
    """Several outputs committed together (`with` aborts them all on any exception).

    OSErrors raised while writing (disk full, file too large, a closed pipe) leave the
    block as one :class:`DatasetError` naming the output.
    """

    def __init__(self, *, parents: bool = False, protected: Protected | None = None) -> None:
        self.files: list[AtomicFile] = []
        self.parents = parents
        self.protected = protected

    def open(self, path: str | os.PathLike, *, through_ok: bool = True) -> AtomicFile:
        f = AtomicFile(path, parents=self.parents, protected=self.protected, through_ok=through_ok)
        self.files.append(f)
        return f

    @property
    def notices(self) -> list[str]:
        """What opening the outputs repaired (an interrupted commit, stale temp files)."""
        out = []
        for f in self.files:
            if f.recovered:
                out.append(f"finished an earlier run's interrupted write of {', '.join(map(str, f.recovered))}")
            if f.removed_temps:
                out.append(f"removed {len(f.removed_temps)} temp file(s) left by an earlier, killed run "
                           f"next to {f.path}")
        return out

    def commit(self) -> None:
        self.commit_files(self.files)

    @staticmethod
    def commit_files(files: list[AtomicFile]) -> None:
        try:
            for f in files:
                f.finish()
        except BaseException:
            for f in files:
                f.abort()
            raise
        staged = [f for f in files if f._tmp is not None]
        if not staged:
            return
        journal = _journal_path(staged[0].target) if len(staged) > 1 else None
        try:
            with _signals_held():
                if journal is not None:
                    _write_journal(journal, staged)
                for i, f in enumerate(staged):
                    try:
                        os.replace(f._tmp, f.target)
                    except OSError as exc:
                        if i > 0:  # the journal stays: the next run to this output finishes the pair
                            raise DatasetError(f"{f.path}: cannot rename into place ({exc.strerror or exc}) "
                                               f"after {staged[0].path} was updated",
                                               hint="run the same command again to finish the pair") from exc
                        if journal is not None:  # nothing renamed yet: nothing changed
                            _unlink_quietly(journal)
                        for g in staged:
                            g.abort()
                        raise write_error(f.path, exc) from exc
                    f._tmp = None
                for directory in {f.target.parent for f in staged}:
                    _fsync_dir(directory)
                if journal is not None:
                    _unlink_quietly(journal)
        except OSError as exc:  # the journal could not be written: nothing renamed
            for f in staged:
                f.abort()
            raise write_error(staged[0].path, exc) from exc

    def abort(self) -> None:
        for f in self.files:
            f.abort()

    def __enter__(self) -> AtomicFiles:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
            if isinstance(exc, OSError) and exc.errno in _WRITE_ERRNOS:
                through = any(f.through for f in self.files)
                names = " and ".join(str(f.path) for f in self.files) or "the output"
                raise write_error(Path(names), exc, atomic=not through) from exc


def _write_journal(journal: Path, staged: list[AtomicFile]) -> None:
    # absolute paths: a symlinked output can put the train and val files in different directories
    data = {"pid": os.getpid(),
            "renames": [[os.fspath(f._tmp), os.fspath(f.target)] for f in staged if f._tmp is not None]}
    fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        os.write(fd, json.dumps(data).encode("utf-8", "surrogateescape"))
        os.fsync(fd)
    finally:
        os.close(fd)
    _fsync_dir(journal.parent)


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def val_path(output: str | os.PathLike) -> Path:
    """`train.jsonl` → `train.val.jsonl` (the validation split next to the output)."""
    p = Path(output)
    return p.with_name(f"{p.stem}.val.jsonl")


__all__ = ["AtomicFile", "AtomicFiles", "Protected", "pid_alive", "recover_journal", "remove_stale_temps",
           "val_path", "write_error"]


def write_small_file(path: str | os.PathLike, data: bytes) -> Path:
    """Write a small file (e.g. a manifest) atomically: temp file, fsync, rename, as the outputs are."""
    out = AtomicFile(path)
    if out.through:
        out.abort()
        raise DatasetError(f"{path}: not a regular file")
    try:
        out.write(data)
        out.lines = data.count(b"\n")
        out.bytes = len(data)
        out.commit()
    except BaseException:
        out.abort()
        raise
    return out.path
