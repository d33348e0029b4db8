"""`filter --workers N`: the call-record scan of one DB split over N worker processes.

The parent has run the session query (:func:`synth_cli.store.selection.select_sessions`);
each worker, forked from it, reads the rows of every N-th kept session through a
connection (or libSQL client) of its own (:func:`synth_cli.store.selection.scan_calls_of`), parses and
converts them, validates, scrubs and serialises each example (`Sink.prepare`), and
sends the prepared examples back in batches, each tagged with the id of the row that
produced it. A session lives in one worker, so everything kept per session (tool-call
history, the open conversation, the redactor's memory) is what the single process keeps.

The parent merges the workers' streams by that tag, which restores the single-process
order exactly, and de-duplicates, splits, counts and writes (`Sink.accept`): the output
bytes are those of `--workers 1`. The counters each worker kept are added up at the end;
the lists that name the first few cases (invalid examples, malformed rows) are merged by
the same tag. Used without `--limit` and `--strict` (whose stopping point depends on the
global order), for local files and libSQL servers. Nothing here prints.
"""

from __future__ import annotations

import heapq
import os
import pickle
from typing import Any, Iterator

from synth_cli.errors import DatasetError, SynthError, TraceStoreError

#: prepared examples (at most) and bytes of lines (about) per message from a worker.
BATCH = 256
BATCH_BYTES = 512 << 10
#: bytes of lines per spool file of a worker (deleted by the parent once read).
SEGMENT = 32 << 20
#: without an explicit --workers, fewer call-record events than this are read by one process.
AUTO_MIN_ROWS = 2000
_END = float("inf")


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Keyed(list):
    """A stats list whose items remember the tag (row id) they were added at; `in` looks at the items."""

    def __init__(self, sink: Any):
        super().__init__()
        self.sink = sink

    def append(self, item: Any) -> None:
        super().append((self.sink.key, item))

    def __contains__(self, item: Any) -> bool:
        return any(i == item for _, i in list.__iter__(self))


def _work(index: int, count: int, store: Any, opts: Any, kept: dict, fd: int, spool: str) -> None:
    """One worker: convert the sessions whose `order % count == index`.

    The lines go to spool files of its own in `spool` (segments of ~SEGMENT bytes, which the
    parent deletes once read); what the parent needs to place and count them goes to `fd` as
    small pickled messages. So a worker never waits for the parent to take its output.
    """
    import signal

    from synth_cli.dataset import build
    from synth_cli.store.selection import scan_calls_of

    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent ends a worker it no longer needs
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    out = os.fdopen(fd, "wb", buffering=1 << 20)

    def send(message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little"))
        out.write(data)
        out.flush()

    try:
        mine = {sid: s for sid, s in kept.items() if s.order % count == index}
        stats = build.FilterStats(mode=opts.mode)
        sink = _WorkerSink(opts, stats, send, os.path.join(spool, f"w{index}-"))
        stats.invalid_examples = _Keyed(sink)  # type: ignore[assignment]
        stats.malformed_sessions = _Keyed(sink)  # type: ignore[assignment]

        def tagged() -> Iterator[Any]:
            for row in scan_calls_of(store, mine):
                sink.key = (row[0], 0)
                yield row

        build.convert_calls(store, opts, stats, sink, mine, rows=tagged())
        sink.flush()
        sink.file.close()
        if sink.redactor is not None:
            stats.redaction = {"examples": sink.redactor.examples, "counts": dict(sink.redactor.counts)}
        stats.invalid_examples = list(list.__iter__(stats.invalid_examples))  # type: ignore[assignment]
        stats.malformed_sessions = list(list.__iter__(stats.malformed_sessions))  # type: ignore[assignment]
        send(("done", stats))
    except SynthError as exc:
        send(("error", "store" if isinstance(exc, TraceStoreError) else "dataset", exc.message, exc.hint))
    except BaseException as exc:  # noqa: BLE001 - reported by the parent, which decides
        send(("error", "crash", f"{type(exc).__name__}: {exc}", None))
    finally:
        try:
            out.flush()
            out.close()
        except OSError:
            pass


class _WorkerSink:
    """A worker's end of `Sink`: prepares examples and sends them, tagged, in batches."""

    def __new__(cls, opts: Any, stats: Any, send: Any, prefix: str):
        from synth_cli.dataset import build

        class WorkerSink(build.Sink):
            def __init__(self) -> None:
                super().__init__(opts, stats, None, None)
                self.key: tuple = (0, 0)
                self.batch: list = []
                self.rows = 0
                self.calls_sent = 0
                self.size = 0
                self.send = send
                self.segment = 0
                self.offset = 0  # in the segment, where the batch being made starts
                self.file = open(f"{prefix}{self.segment}", "wb", buffering=1 << 20)  # noqa: SIM115 - closed by the worker when done

            def tick(self) -> None:
                self.rows += 1

            def at_end(self, session: Any) -> None:
                self.key = (_END, session.order)

            def accept(self, ready: tuple) -> None:
                """A prepared example goes to the spool and the batch (the parent accepts it)."""
                line = ready[0]
                if type(line) is tuple:  # (the history's bytes, the rest): Sink.prepare_call
                    self.file.write(line[0])
                    self.file.write(line[1])
                    size = len(line[0]) + len(line[1])
                else:
                    self.file.write(line)
                    size = len(line)
                self.batch.append((self.key, (size, *ready[1:])))
                self.size += size
                if self.size >= BATCH_BYTES or len(self.batch) >= BATCH:
                    self.flush()

            def flush(self) -> None:
                calls = self.stats.calls_scanned
                self.file.flush()
                self.send(("batch", self.rows, calls - self.calls_sent, self.segment, self.offset, self.batch))
                self.offset += self.size
                if self.offset >= SEGMENT:
                    self.file.close()
                    self.segment += 1
                    self.offset = 0
                    self.file = open(f"{prefix}{self.segment}", "wb", buffering=1 << 20)  # noqa: SIM115 - closed by the worker when done
                self.batch = []
                self.rows = 0
                self.size = 0
                self.calls_sent = calls

        return WorkerSink()


def _widen(fd: int) -> None:
    """A pipe of up to 1 MiB (Linux), so a worker hands over a batch without waiting for the parent
    to be scheduled once per 64 KiB: on a busy machine each such wait is a time slice."""
    try:
        import fcntl

        size = 1 << 20
        try:
            with open("/proc/sys/fs/pipe-max-size") as fh:
                size = min(size, int(fh.read()))
        except (OSError, ValueError):
            pass
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), size)
    except (ImportError, OSError, ValueError):
        pass


def _messages(fd: int) -> Iterator[Any]:
    with os.fdopen(fd, "rb", buffering=1 << 20) as fh:
        while True:
            head = fh.read(8)
            if len(head) < 8:
                return
            size = int.from_bytes(head, "little")
            yield pickle.loads(fh.read(size))


def run_parallel(store: Any, opts: Any, stats: Any, sink: Any, kept: dict, workers: int) -> bool:
    """Scan `store` for `kept` with `workers` processes; the parent's `sink` accepts every example in order.

    False (nothing done) when the workers cannot be started: the caller then reads in one process.
    """
    import multiprocessing
    import shutil
    import tempfile

    ctx = multiprocessing.get_context("fork")
    try:
        spool = tempfile.mkdtemp(prefix="synth-filter-")
    except OSError:
        return False  # no temporary directory: the caller reads in one process
    procs = []
    reads: list[int] = []
    finals: list[Any] = []
    finished = False
    try:
        try:
            for i in range(workers):
                r, w = os.pipe()
                _widen(w)
                p = ctx.Process(target=_work, args=(i, workers, store, opts, kept, w, spool), daemon=True)
                try:
                    p.start()
                finally:
                    os.close(w)
                procs.append(p)
                reads.append(r)
        except OSError:  # no more processes or file descriptors: nothing accepted yet, one process then
            return False

        def stream(index: int, fd: int) -> Iterator[Any]:
            segment, seg_fd = -1, -1
            message: Any = None
            try:
                for message in _messages(fd):
                    kind = message[0]
                    if kind == "batch":
                        _, rows, calls, seg, offset, entries = message
                        stats.calls_scanned += calls  # as they are read, for the progress line
                        sink.rows_seen(rows)
                        if seg != segment:
                            if seg_fd >= 0:
                                os.close(seg_fd)
                                os.unlink(os.path.join(spool, f"w{index}-{segment}"))
                            segment = seg
                            seg_fd = os.open(os.path.join(spool, f"w{index}-{segment}"), os.O_RDONLY)
                        total = sum(e[1][0] for e in entries)
                        data = memoryview(os.pread(seg_fd, total, offset))
                        at = 0
                        for key, (size, *rest) in entries:
                            yield key, (data[at:at + size], *rest)
                            at += size
                    elif kind == "done":
                        finals.append(message[1])
                        return
                    else:
                        break
            finally:
                if seg_fd >= 0:
                    os.close(seg_fd)
            if message is not None and message[0] == "error":
                _, what, text, hint = message
                if what == "store":
                    raise TraceStoreError(text, hint=hint)
                if what == "dataset":
                    raise DatasetError(text, hint=hint)
                raise DatasetError(f"a filter worker failed ({text})", hint="retry with --workers 1")
            raise DatasetError("a filter worker ended without finishing", hint="retry with --workers 1")

        streams = [stream(i, fd) for i, fd in enumerate(reads)]
        reads = []  # the streams own (and close) them now
        accept = sink.accept
        for _key, ready in heapq.merge(*streams, key=lambda item: item[0]):
            accept(ready)
        finished = len(finals) == len(procs)
    finally:
        for fd in reads:
            os.close(fd)
        for p in procs:
            if not finished:
                p.terminate()
            p.join()
        shutil.rmtree(spool, ignore_errors=True)
    _merge_stats(stats, finals, sink)
    return True


def _merge_stats(stats: Any, finals: list, sink: Any) -> None:
    from synth_cli.dataset.build import INVALID_NAMED, MALFORMED_NAMED

    invalid, malformed = list(stats.invalid_examples), list(stats.malformed_sessions)
    invalid_tagged: list = []
    malformed_tagged: list = []
    for part in finals:
        stats.calls_used += part.calls_used
        stats.calls_dropped.update(part.calls_dropped)
        stats.empty_outputs += part.empty_outputs
        stats.invalid.update(part.invalid)
        for kind, n in part.skipped.items():
            stats.skipped[kind] = stats.skipped.get(kind, 0) + n
        stats.restored_tool_calls += part.restored_tool_calls
        stats.schema_versions.update(part.schema_versions)
        stats.split_conversations += part.split_conversations
        stats.malformed_rows += part.malformed_rows
        invalid_tagged.extend(part.invalid_examples)
        malformed_tagged.extend(part.malformed_sessions)
        if sink.redactor is not None and part.redaction.get("counts") is not None:
            sink.redactor.examples += part.redaction["examples"]
            sink.redactor.counts.update(part.redaction["counts"])
    invalid_tagged.sort(key=lambda t: t[0])
    malformed_tagged.sort(key=lambda t: t[0])
    for _, item in invalid_tagged:
        if len(invalid) >= INVALID_NAMED:
            break
        invalid.append(item)
    for _, sid in malformed_tagged:
        if len(malformed) >= MALFORMED_NAMED:
            break
        if sid not in malformed:
            malformed.append(sid)
    stats.invalid_examples = invalid
    stats.malformed_sessions = malformed


__all__ = ["AUTO_MIN_ROWS", "default_workers", "run_parallel"]
