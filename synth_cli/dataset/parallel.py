"""`filter --workers N`: the session query and the call-record scan of one DB split over N worker
processes.

For a local file each worker, forked from the parent, takes every N-th session (in session id
order), runs the session query for those sessions only (:func:`synth_cli.store.selection.select_sessions`
with a shard) and reports what it counted (sessions scanned, kept, dropped, rewards); so the
query runs on every core and no worker waits for the others' sessions. When the parent has
already selected (a libSQL server, a --val-fraction split that needs every kept session first,
or several DBs), the workers take every N-th kept session instead. A worker reads the rows of
its sessions through a connection (or libSQL client) of its own
(:func:`synth_cli.store.selection.scan_calls_of`), parses and converts them, validates, scrubs
and serialises each example (`Sink.prepare`), writes the lines to spool files and sends what the
parent needs of each example in batches, each tagged with the id of the row that produced it.
A session lives in one worker, so everything kept per session (tool-call history, the open
conversation, the redactor's memory) is what the single process keeps.

The parent merges the workers' streams by that tag, which restores the single-process order
exactly, and de-duplicates, splits, counts and writes (`Sink.accept_run`: consecutive lines of
one worker go out as one range): the output bytes are those of `--workers 1`. The counters each
worker kept are added up at the end; the lists that name the first few cases (invalid examples,
malformed rows) are merged by the same tag. Used without `--limit` and `--strict` (whose stopping
point depends on the global order), for local files and libSQL servers. Nothing here prints.
"""

from __future__ import annotations

import bisect
import itertools
import os
import pickle
import signal
from typing import Any, Iterator

from synth_cli.errors import DatasetError, SynthError, TraceStoreError

#: prepared examples (at most) and bytes of lines (about) per message from a worker.
BATCH = 256
BATCH_BYTES = 512 << 10
#: bytes of lines per spool file of a worker (deleted by the parent once read).
SEGMENT = 32 << 20
#: without an explicit --workers, fewer call-record events than this are read by one process.
AUTO_MIN_ROWS = 2000
#: the tags of sessions finished after the scan (sessions mode): above every row id, in session order.
_END = 1 << 64


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
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # forked with it blocked (run_parallel)
    out = os.fdopen(fd, "wb", buffering=1 << 20)

    def send(message: Any) -> None:
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little"))
        out.write(data)
        out.flush()

    try:
        if kept is None:  # no session query yet: this worker selects its own share of the sessions
            mine = _select_share(index, count, store, opts, send)
        else:
            mine = {sid: s for sid, s in kept.items() if s.order % count == index}
        stats = build.FilterStats(mode=opts.mode)
        sink = _WorkerSink(opts, stats, send, os.path.join(spool, f"w{index}-"))
        stats.invalid_examples = _Keyed(sink)  # type: ignore[assignment]
        stats.malformed_sessions = _Keyed(sink)  # type: ignore[assignment]

        def tagged() -> Iterator[Any]:
            for row in scan_calls_of(store, mine):
                sink.key = row[0]
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


def _select_share(index: int, count: int, store: Any, opts: Any, send: Any) -> dict:
    """Worker `index`'s share of the sessions (every `count`-th in id order), selected by the session
    query for these sessions only; what the parent's stats need of it is sent as ("selected", …)."""
    from synth_cli.dataset import build
    from synth_cli.store.selection import session_ids

    own = store.reopen()
    try:
        share = session_ids(own)[index::count]
        order = {sid: index + i * count for i, sid in enumerate(share)}  # the place among all sessions
        picked = build.FilterStats(mode=opts.mode)
        mine = build.select_kept(own, opts, picked, False, shard=share, order=order)
    finally:
        own.close()
    send(("selected", picked.sessions_scanned, picked.sessions_kept, picked.dropped_by, picked.rewards,
          picked.rewards_kept, sum(s.remaining for s in mine.values())))
    return mine


class _WorkerSink:
    """A worker's end of `Sink`: prepares examples and sends them, tagged, in batches."""

    def __new__(cls, opts: Any, stats: Any, send: Any, prefix: str):
        from synth_cli.dataset import build

        class WorkerSink(build.Sink):
            def __init__(self) -> None:
                super().__init__(opts, stats, None, None)
                self.key = 0
                # the batch, a column per field (a few C-level lists pickle and unpickle much faster
                # than a tuple per example): tags, line sizes, digests end to end, token estimates,
                # messages << 2 | is_val << 1 | has tool calls, models (one str object per name)
                self.keys: list[int] = []
                self.sizes: list[int] = []
                self.digests = bytearray()
                self.tokens: list[int] = []
                self.flags: list[int] = []
                self.models: list = []
                self.names: dict = {}
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
                self.key = _END + session.order

            def accept(self, ready: tuple) -> None:
                """A prepared example goes to the spool and the batch (the parent accepts it)."""
                line = ready[0]
                write = self.file.write
                if type(line) is tuple:  # (the history's bytes, the rest): Sink.prepare_call
                    write(line[0])
                    write(line[1])
                    size = len(line[0]) + len(line[1]) + 1
                else:
                    write(line)
                    size = len(line) + 1
                write(b"\n")  # the lines of a batch lie end to end, as the output has them
                _, digest, tokens, is_val, messages, tools, model = ready
                self.keys.append(self.key)
                self.sizes.append(size)
                self.digests += digest
                self.tokens.append(tokens)
                self.flags.append(messages << 2 | (2 if is_val else 0) | (1 if tools else 0))
                self.models.append(self.names.setdefault(model, model))
                self.size += size
                if self.size >= BATCH_BYTES or len(self.keys) >= BATCH:
                    self.flush()

            def flush(self) -> None:
                calls = self.stats.calls_scanned
                self.file.flush()
                self.send(("batch", self.rows, calls - self.calls_sent, self.segment, self.offset, self.size,
                           (self.keys, self.sizes, bytes(self.digests), self.tokens, self.flags, self.models)))
                self.offset += self.size
                if self.offset >= SEGMENT:
                    self.file.close()
                    self.segment += 1
                    self.offset = 0
                    self.file = open(f"{prefix}{self.segment}", "wb", buffering=1 << 20)  # noqa: SIM115 - closed by the worker when done
                self.keys, self.sizes, self.digests, self.tokens, self.flags, self.models = [], [], bytearray(), [], [], []
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


def run_parallel(store: Any, opts: Any, stats: Any, sink: Any, kept: dict | None, workers: int) -> bool:
    """Scan `store` for `kept` with `workers` processes; the parent's `sink` accepts every example in order.

    `kept` None: no session query has run; each worker runs it for its own share of the sessions
    (so the query runs on every core, and each worker starts converting as soon as its share is
    known) and the parent adds up what it counted (sessions scanned, kept, dropped, rewards).
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
                # the child is forked with SIGTERM blocked, so the parent's handler (KeyboardInterrupt,
                # for the filter command) never runs in it before _work sets the default and unblocks
                held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
                try:
                    p.start()
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                    os.close(w)
                procs.append(p)
                reads.append(r)
        except OSError:  # no more processes or file descriptors: nothing accepted yet, one process then
            return False

        def stream(index: int, messages: Iterator[Any]) -> Iterator[Any]:
            """Worker `index`'s batches: (their columns, their lines end to end)."""
            segment, seg_fd = -1, -1
            message: Any = None
            try:
                for message in messages:
                    kind = message[0]
                    if kind == "batch":
                        _, rows, calls, seg, offset, total, columns = message
                        stats.calls_scanned += calls  # as they are read, for the progress line
                        sink.rows_seen(rows)
                        if not columns[0]:
                            continue
                        if seg != segment:
                            if seg_fd >= 0:
                                os.close(seg_fd)
                                os.unlink(os.path.join(spool, f"w{index}-{segment}"))
                            segment = seg
                            seg_fd = os.open(os.path.join(spool, f"w{index}-{segment}"), os.O_RDONLY)
                        yield columns, memoryview(os.pread(seg_fd, total, offset))
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

        inputs = [_messages(fd) for fd in reads]
        reads = []  # the streams own (and close) them now
        if kept is None:  # each worker's first message: its share of the sessions, selected
            for i, messages in enumerate(inputs):
                first = next(messages, None)
                if first is not None and first[0] == "selected":
                    _, scanned, kept_n, dropped_by, rewards, rewards_kept, rows = first
                    stats.sessions_scanned += scanned
                    stats.sessions_kept += kept_n
                    stats.dropped_by.update(dropped_by)
                    stats.rewards.update(rewards)
                    stats.rewards_kept.update(rewards_kept)
                    stats.rows_total += rows
                elif first is not None:  # an error: the stream reports it
                    inputs[i] = itertools.chain([first], messages)
            if sink.on_progress is not None:  # the total is known now: the bar can show it and an ETA
                sink.on_progress(stats)
        streams = [stream(i, messages) for i, messages in enumerate(inputs)]
        _merge(streams, sink)
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


def _merge(streams: list, sink: Any) -> None:
    """Accept the entries of every stream in tag order, a run at a time.

    Each stream yields batches `(columns, data)` sorted by tag (the row id; `columns[0]` are the
    tags), whose lines lie end to end in `data`. The stream with the smallest next tag gives
    every entry below the others' next tags in one `sink.accept_run` (the tags of two workers
    never tie), so consecutive lines of one worker are written as one range.
    """
    heads: list[list] = []  # per live stream: [columns, data, position, offset, stream]
    for it in streams:
        for columns, data in it:
            heads.append([columns, data, 0, 0, it])
            break
    accept_run = sink.accept_run
    bisect_left = bisect.bisect_left
    while heads:
        if len(heads) == 1:
            head = heads[0]
            bound = None
        else:
            heads.sort(key=lambda h: h[0][0][h[2]])
            head = heads[0]
            other = heads[1]
            bound = other[0][0][other[2]]
        columns, data, pos, offset, it = head
        keys = columns[0]
        end = len(keys)
        if bound is not None and keys[-1] > bound:
            end = bisect_left(keys, bound, pos, end)
        head[3] = accept_run(data, columns, pos, end, offset)
        head[2] = end
        if end == len(keys):
            for columns, data in it:
                head[:4] = [columns, data, 0, 0]
                break
            else:
                heads.remove(head)


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
