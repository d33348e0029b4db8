"""What kind of file a path names, for refusing non-regular files at once.

Reading a FIFO blocks until a writer appears (for ever, if none does) and a device such
as /dev/zero never ends: every input file the CLI reads (trace DBs, datasets to validate
or upload) is checked with :func:`non_regular_kind` first. Nothing here prints.
"""

from __future__ import annotations

import os
import stat


def non_regular_kind(path: str | os.PathLike) -> str | None:
    """None for a regular file, a directory or a path that does not exist; else what it is ("a FIFO"…)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # the open that follows says what is wrong
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"  # pragma: no cover - doors, whiteouts
