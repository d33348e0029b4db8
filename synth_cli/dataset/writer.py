"""Atomic output files: written to a temp file in the same directory, renamed into place.

Until :meth:`AtomicFiles.commit` the real paths are untouched: an exception, Ctrl-C
(KeyboardInterrupt) or SIGTERM (the `filter` command turns it into
KeyboardInterrupt) removes the temp files and leaves any existing output as it was.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from synth_cli.errors import DatasetError

BUFFER_SIZE = 1 << 20


class AtomicFile:
    """One output file; `write` bytes, then `commit` (fsync + os.replace) or `abort`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.bytes = 0
        self.lines = 0
        self._fh: BinaryIO | None = None
        self._tmp: Path | None = None
        parent = self.path.parent
        if self.path.is_dir():
            raise DatasetError(f"{self.path}: is a directory", hint="give --output a file name, e.g. train.jsonl")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=parent)
        except OSError as exc:
            raise DatasetError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc
        self._tmp = Path(tmp)
        self._fh = os.fdopen(fd, "wb", buffering=BUFFER_SIZE)
        self.write = self._fh.write  # bytes in, no per-line bookkeeping on the hot path

    def commit(self) -> None:
        if self._fh is None or self._tmp is None:
            return
        try:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
            try:  # keep the permissions a plain open() would give, not mkstemp's 0600
                umask = os.umask(0)
                os.umask(umask)
                os.chmod(self._tmp, 0o666 & ~umask)
            except OSError:
                pass
            os.replace(self._tmp, self.path)
            self._tmp = None
        except OSError as exc:
            self.abort()
            raise DatasetError(f"{self.path}: cannot write ({exc.strerror or exc})") from exc

    def abort(self) -> None:
        if self._fh is not None:
            try:
                self._fh.close()
            except OSError:
                pass
            self._fh = None
        if self._tmp is not None:
            try:
                self._tmp.unlink()
            except OSError:
                pass
            self._tmp = None


class AtomicFiles:
    """Several outputs committed together (`with` aborts them all on any exception)."""

    def __init__(self) -> None:
        self.files: list[AtomicFile] = []

    def open(self, path: str | os.PathLike) -> AtomicFile:
        f = AtomicFile(path)
        self.files.append(f)
        return f

    def commit(self) -> None:
        for f in self.files:
            f.commit()

    def abort(self) -> None:
        for f in self.files:
            f.abort()

    def __enter__(self) -> "AtomicFiles":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()


def val_path(output: str | os.PathLike) -> Path:
    """`train.jsonl` → `train.val.jsonl` (the validation split next to the output)."""
    p = Path(output)
    return p.with_name(f"{p.stem}.val.jsonl")


__all__ = ["AtomicFile", "AtomicFiles", "val_path"]
