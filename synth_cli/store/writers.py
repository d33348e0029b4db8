"""Opening a trace DB for writing: the one place that knows every writer.

`open_writer(target)` dispatches on the target (a local file or sqld directory:
:class:`synth_cli.store.writer.SQLiteTraceWriter`; a libSQL server:
:class:`synth_cli.store.remote_writer.RemoteTraceWriter`), creates or migrates the schema and
writes what an earlier run spooled. The writers import only :mod:`synth_cli.store.writer`
(the interface and the shared SQL), so nothing imports in a loop. Never prints.
"""

from __future__ import annotations

import os

from synth_cli.store.locate import is_remote, resolve_write_target
from synth_cli.store.writer import BUSY_TIMEOUT_S, SQLiteTraceWriter, Spool, TraceWriter


def open_writer(target: str | os.PathLike, *, layout: str = "auto", busy_timeout: float = BUSY_TIMEOUT_S,
                replay_spool: bool = True) -> TraceWriter:
    """Open `target` for writing: schema created or migrated, spooled batches written (see `replayed`)."""
    text = os.fspath(target)
    writer: TraceWriter
    if is_remote(text):
        from synth_cli.store.remote_writer import RemoteTraceWriter

        writer = RemoteTraceWriter(text, busy_timeout=busy_timeout)
    else:
        writer = SQLiteTraceWriter(resolve_write_target(text, layout), busy_timeout=busy_timeout)
    writer.replayed = []  # type: ignore[attr-defined]
    writer.warnings = []  # type: ignore[attr-defined]
    try:
        writer.ensure_schema()
        if replay_spool and writer.spool_dir is not None:
            spool = Spool(writer.spool_dir)
            writer.replayed, writer.warnings = spool.replay(writer)  # type: ignore[attr-defined]
    except BaseException:
        writer.close()
        raise
    return writer
