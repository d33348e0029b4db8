"""The recording writer in a process of its own, so the second core builds and writes the
records while the first serves requests (`python -m synth_cli.proxy.worker`, started by the proxy).

Parent side, :class:`WriterProcess`, with the interface of :class:`.recorder.Recorder`: the
request path only appends the call to a list (never blocks: beyond `queue_size` calls not yet
taken by the writer, the call is dropped and counted); a feeder thread sends what gathered,
pickled, every few milliseconds down the child's stdin. The child, :func:`main`, runs a
:class:`.recorder.Recorder` (the same queue, writer thread, record builders and sink as in one
process) and reports on its stdout, as JSON lines: how many items its writer thread took (the
parent's queue size is sent minus taken), its counters and open sessions, and its warnings,
which the parent passes to `notify`.

Stopping: the parent sends a stop marker and closes the pipe; the child drains its queue,
writes every open session (or spools it), sends its last report and exits; the parent waits for
it. The child ignores SIGINT and SIGTERM (a Ctrl-C reaches the whole process group): only its
parent stops it, and when the parent dies the end of its stdin is a stop too, so nothing the
parent sent is lost. If the child dies, the parent warns, counts the calls it held as lost, and
records from then on in a writer thread of its own.
"""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, fields
from typing import Any

from synth_cli.proxy.recorder import DEFAULT_QUEUE_SIZE, Recorder, RequestPath, Stats
from synth_cli.proxy.sink import TraceSink

#: the feeder sends what gathered this often (one pickle and one pipe write per batch).
FEED_INTERVAL_S = 0.01
#: the child reports at most this often (and at least every REPORT_IDLE_S).
REPORT_INTERVAL_S = 0.02
REPORT_IDLE_S = 0.5
_HEADER = struct.Struct("<I")
_STOP = "stop"
#: counters kept by the parent (the request path), not taken from the child's reports.
PARENT_STATS = frozenset({"calls_seen", "calls_dropped", "events_dropped", "sessions_replayed"})


class WriterProcessError(RuntimeError):
    pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(stream, n: int) -> bytes | None:
    data = stream.read(n)
    return data if data is not None and len(data) == n else None


class WriterProcess(RequestPath):
    """The parent's end: what :class:`.server.ProxyApp` calls, like a :class:`.recorder.Recorder`."""

    def __init__(self, sink: TraceSink, db: str | None, spool: str, *, idle_timeout: float,
                 queue_size: int = DEFAULT_QUEUE_SIZE, notify: Callable[[str], None] | None = None):
        self.sink = sink  # the parent's own (it replayed the spool; the fallback writes through it)
        self.db = db
        self.spool = spool
        self.idle_timeout = idle_timeout
        self.queue_size = queue_size
        self.notify = notify or (lambda message: None)
        self.stats = Stats()
        self._pending: list[tuple] = []  # appended by the request path, taken by the feeder
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._sent = 0  # items handed to the child (or the fallback)
        self._taken = 0  # items the child's writer thread took (its last report)
        self._child_status: dict[str, Any] = {}
        self._proc: subprocess.Popen | None = None
        self._feeder: threading.Thread | None = None
        self._reader: threading.Thread | None = None
        self._fallback: Recorder | None = None
        self._stopping = False
        self._stopped = False
        self._dropped_warned = False

    # -- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        env = dict(os.environ)
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if os.path.basename(root) not in ("site-packages", "dist-packages"):
            # a checkout: the child imports this very one, whatever its working directory (an
            # installed package it finds by itself, and site-packages must not go before the stdlib)
            env["PYTHONPATH"] = os.pathsep.join([root, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                         if p]])
        config = {"db": self.db, "spool": self.spool, "idle_timeout": self.idle_timeout}
        frame = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "synth_cli.proxy.worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=None, env=env, close_fds=True)
            _write_all(self._proc.stdin.fileno(), _HEADER.pack(len(frame)) + frame)
        except OSError as exc:  # no process to be had: record in this one
            self.notify(f"cannot start the recording process ({exc.strerror or exc}): recording in the proxy's "
                        "own process")
            self._fallback = Recorder(self.sink, idle_timeout=self.idle_timeout, queue_size=self.queue_size,
                                      notify=self.notify, stats=self.stats)
            self._fallback.start()
            if self._proc is not None:
                self._proc.kill()
                self._proc.wait()
                self._proc = None
            return
        self._reader = threading.Thread(target=self._read_reports, name="synth-proxy-reports", daemon=True)
        self._reader.start()
        self._feeder = threading.Thread(target=self._feed, name="synth-proxy-feeder", daemon=True)
        self._feeder.start()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._fallback is None else None

    # -- the request path (event loop) ---------------------------------------------------------------
    def _put(self, item: tuple) -> bool:
        if self._stopping:
            return False
        fallback = self._fallback
        if fallback is not None:
            return fallback._put(item)
        with self._lock:
            if self._sent + len(self._pending) - self._taken >= self.queue_size:
                return False
            self._pending.append(item)
            first = len(self._pending) == 1
        if first:
            self._wake.set()
        return True

    def queued(self) -> int:
        """Items neither taken by the writer thread nor dropped."""
        fallback = self._fallback
        if fallback is not None:
            return fallback.queue.qsize()
        with self._lock:
            return self._sent + len(self._pending) - self._taken

    def status(self) -> dict[str, Any]:
        fallback = self._fallback
        if fallback is not None:
            out = fallback.status()
        else:
            child = self._child_status or {}
            out = {"queue": {"size": self.queued(), "max": self.queue_size}, **child}
            out.setdefault("calls", {})
            out.setdefault("sessions", {})
            out["writer"] = {"process": self.pid}
        s = self.stats
        out["calls"] = {**out.get("calls", {}), "seen": s.calls_seen, "dropped_queue_full": s.calls_dropped,
                        "recorded": s.calls_recorded, "spooled": s.calls_spooled,
                        "spooled_by_tracer": s.calls_tracer_spooled, "lost": s.calls_lost,
                        "unrecordable": s.calls_unrecordable}
        out.setdefault("calls", {}).setdefault("pending", 0)
        out["events_dropped_queue_full"] = s.events_dropped
        sessions = out.setdefault("sessions", {})
        sessions.setdefault("open", 0)
        sessions.setdefault("open_list", [])
        sessions.update({"written": s.sessions_written, "spooled": s.sessions_spooled,
                         "replayed_from_spool": s.sessions_replayed})
        out["write_errors"] = s.write_errors
        out["last_error"] = s.last_error
        out["spool"] = str(self.sink.spool_path)
        return out

    # -- the feeder thread -------------------------------------------------------------------------
    def _feed(self) -> None:
        fd = self._proc.stdin.fileno()
        while True:
            self._wake.wait()
            self._wake.clear()
            time.sleep(FEED_INTERVAL_S)  # let calls gather: one pickle and one write for all of them
            with self._lock:
                batch, self._pending = self._pending, []
                stopping = self._stopping
                if self._fallback is not None:  # the child died: the fallback took the pending ones
                    return
                self._sent += len(batch)
            try:
                if batch:
                    frame = pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL)
                    _write_all(fd, _HEADER.pack(len(frame)) + frame)
                if stopping:
                    frame = pickle.dumps(_STOP)
                    _write_all(fd, _HEADER.pack(len(frame)) + frame)
                    self._proc.stdin.close()
                    return
            except OSError:  # the child is gone: the reader thread sees it end and takes over
                return

    # -- the reader thread (the child's reports) -------------------------------------------------------
    def _read_reports(self) -> None:
        from synth_cli import _json

        for line in self._proc.stdout:
            try:
                report = _json.loads(line)
            except _json.JSONDecodeError:
                continue
            if "notify" in report:
                self.notify(report["notify"])
                continue
            self._taken = report.get("taken", self._taken)
            for f in fields(Stats):
                if f.name not in PARENT_STATS and f.name in report.get("stats", {}):
                    setattr(self.stats, f.name, report["stats"][f.name])
            self._child_status = report.get("status", self._child_status)
        code = self._proc.wait()
        if code != 0 or not self._stopping:
            self._after_death(code)

    def _after_death(self, code: int) -> None:
        """The child ended before it was told to, or failed: what it held (items it had not taken,
        calls of sessions it had not written) is lost and counted; the rest is recorded here."""
        with self._lock:
            fallback = Recorder(self.sink, idle_timeout=self.idle_timeout, queue_size=self.queue_size,
                                notify=self.notify, stats=self.stats)
            held = max(0, self._sent - self._taken) + int((self._child_status.get("calls") or {}).get("pending", 0))
            later, self._pending = self._pending, []
            self._fallback = fallback
        self._child_status = {}
        self.stats.calls_lost += held
        self.notify(f"the recording process exited unexpectedly (exit code {code}): up to {held} queued or open "
                    "call(s) were lost; recording goes on in the proxy's own process")
        fallback.start()
        for item in later:
            fallback._put(item)
        self._wake.set()  # the feeder returns

    # -- stop --------------------------------------------------------------------------------------------
    def stop(self, timeout: float | None = None) -> None:
        """Send everything, let the child drain and write every open session, wait for it."""
        if self._stopped:
            return
        self._stopped = True
        if self._proc is None and self._fallback is not None:  # it could not start
            self._fallback.stop(timeout)
            return
        if self._proc is None:  # never started: write what is pending here
            fallback = Recorder(self.sink, idle_timeout=self.idle_timeout, queue_size=0, notify=self.notify,
                                stats=self.stats)
            for item in self._pending:
                fallback.queue.put(item)
            self._pending = []
            fallback.stop()
            return
        with self._lock:
            self._stopping = True
        self._wake.set()
        if self._feeder is not None:
            self._feeder.join(timeout)
        if self._reader is not None:
            self._reader.join(timeout)  # the child's last report; it exits after writing everything
        fallback = self._fallback
        if fallback is not None:
            fallback.stop(timeout)


# -- the child -------------------------------------------------------------------------------------------
def main() -> int:
    import signal

    from synth_cli import _json

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the parent decides
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdin = sys.stdin.buffer
    out_fd = os.dup(sys.stdout.fileno())  # the reports' own descriptor; anything printed goes to stderr
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    out_lock = threading.Lock()

    def emit(obj: dict) -> None:
        data = _json.dumps_bytes(obj) + b"\n"
        with out_lock:
            try:
                _write_all(out_fd, data)
            except OSError:
                pass

    def read_frame():
        head = _read_exact(stdin, _HEADER.size)
        if head is None:
            return None
        data = _read_exact(stdin, _HEADER.unpack(head)[0])
        return None if data is None else pickle.loads(data)

    config = read_frame()
    if config is None:
        return 0
    import warnings

    from synth_cli.tracing.tracer import TraceWriteWarning

    warnings.simplefilter("ignore", TraceWriteWarning)  # they reach the parent through notify

    def notify(message: str) -> None:
        emit({"notify": message})

    changed = threading.Event()
    try:
        sink = TraceSink(config["db"], config["spool"], notify=notify)
    except Exception as exc:  # noqa: BLE001 - whatever it is, the parent records in its own process
        notify(f"the recording process cannot open the trace DB ({type(exc).__name__}: {exc})")
        return 3
    recorder = Recorder(sink, idle_timeout=config["idle_timeout"], queue_size=0, notify=notify,
                        on_change=changed.set)
    done = threading.Event()

    def report() -> None:
        status = recorder.writer_status()
        emit({"taken": recorder.taken, "stats": asdict(recorder.stats), "status": status})

    def reporter() -> None:
        while not done.is_set():
            changed.wait(REPORT_IDLE_S)
            changed.clear()
            report()
            time.sleep(REPORT_INTERVAL_S)

    recorder.start()
    thread = threading.Thread(target=reporter, name="synth-proxy-reporter", daemon=True)
    thread.start()
    while True:
        batch = read_frame()
        if batch is None or batch == _STOP:  # told to stop, or the parent is gone
            break
        for item in batch:
            recorder.queue.put(item)
    recorder.stop()
    done.set()
    changed.set()
    thread.join()
    sink.close()
    report()
    return 0


def _main_guarded() -> int:
    try:
        return main()
    except Exception as exc:  # one line for the parent's log, no traceback (unless debugging)
        if os.environ.get("SYNTH_DEBUG"):
            raise
        sys.stderr.write(f"error: synth-ai proxy's recording process failed: {type(exc).__name__}: {exc}\n")
        return 3


if __name__ == "__main__":
    sys.exit(_main_guarded())
