"""Start the proxy: open the sink (replaying its spool), bind, serve under uvicorn until
SIGINT/SIGTERM, then drain the queue and write every open session before returning."""

from __future__ import annotations

import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass

from synth_cli.proxy.headers import SessionRouter
from synth_cli.proxy.recorder import DEFAULT_QUEUE_SIZE, Recorder, Stats
from synth_cli.proxy.server import ProxyApp, ProxyConfig
from synth_cli.proxy.sink import TraceSink
from synth_cli.proxy.worker import WriterProcess

#: seconds open requests (e.g. a long stream) get to finish after SIGINT/SIGTERM.
GRACEFUL_SHUTDOWN_SECONDS = 10


@dataclass
class Proxy:
    app: ProxyApp
    recorder: WriterProcess | Recorder
    sink: TraceSink
    replayed: int
    still_spooled: int

    @property
    def stats(self) -> Stats:
        return self.recorder.stats


def run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + secrets.token_hex(2)


def build(upstream: str, db: str, spool: str, *, idle_timeout: float, queue_size: int = DEFAULT_QUEUE_SIZE,
          timeout: float = 600.0, notify: Callable[[str], None] | None = None) -> Proxy:
    """Everything but the socket. Raises TraceStoreError when the DB cannot be opened for writing."""
    sink = TraceSink(db, spool, notify=notify)
    replayed, left = sink.replay_spool()
    # the records are built and written in a process of their own (the second core), see worker.py
    recorder = WriterProcess(sink, db, spool, idle_timeout=idle_timeout, queue_size=queue_size, notify=notify)
    recorder.stats.sessions_replayed = replayed
    router = SessionRouter(run_id(), idle_timeout)
    app = ProxyApp(ProxyConfig(upstream=upstream, db_label=sink.location, timeout=timeout), recorder, router)
    return Proxy(app, recorder, sink, replayed, left)


def http_implementation() -> str:
    """uvicorn's HTTP parser for the proxy: httptools (C, llhttp) when installed (a dependency; it
    measured ~25% less proxy CPU per call than h11), else h11. Chosen here, not by uvicorn's
    "auto", and on the stdlib event loop either way, so a stray uvloop changes nothing."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - a platform without its wheel
        return "h11"
    return "httptools"


def serve(proxy: Proxy, sock: socket.socket) -> bool:
    """Serve until SIGINT/SIGTERM; False when uvicorn could not start (it has logged why).
    Every open session is written (or spooled) before this returns."""
    import uvicorn

    from synth_cli.devserver.run import _server_class

    uv_config = uvicorn.Config(proxy.app, log_level="warning", access_log=False, lifespan="on",
                               timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS, server_header=False,
                               date_header=False, backlog=2048, http=http_implementation(), loop="asyncio")
    server = _server_class()(uv_config)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        proxy.recorder.stop()  # a no-op when the lifespan shutdown already drained it
        proxy.sink.close()
    return bool(server.started)
