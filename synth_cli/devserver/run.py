"""Binding the socket and running the app under uvicorn (used by `synth-ai serve`)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the app is imported by run() only: bind(), uvicorn_settings() stay light (the bench floor, the proxy)
    from synth_cli.devserver.server import ServerConfig
    from synth_cli.devserver.store import Store

#: seconds uvicorn waits for in-flight requests (e.g. a large upload) when stopping.
GRACEFUL_SHUTDOWN_SECONDS = 5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """The server shut down cleanly after SIGINT (Ctrl-C) or SIGTERM."""


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (OSError when the address is taken or invalid).

    The protocol is given explicitly (IPPROTO_TCP, not 0): asyncio sets TCP_NODELAY on accepted
    connections only when the socket says it is TCP, and accepted sockets inherit the listening
    socket's protocol. With protocol 0, Nagle's algorithm and delayed ACKs held every answer after
    the first on a kept-alive connection for ~40 ms.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    return sock


def uvicorn_settings() -> dict[str, object]:
    """uvicorn's settings for `serve` (bench/serve.py runs its floor app under the same): the httptools
    parser (C, llhttp; a dependency, for the proxy) when installed, else h11, on the stdlib event loop,
    chosen here rather than by uvicorn's "auto", so a stray uvloop changes nothing."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover - a platform without its wheel
        http = "h11"
    else:
        http = "httptools"
    return {"http": http, "loop": "asyncio", "server_header": False}


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, stopping on SIGINT/SIGTERM without re-raising the signal afterwards
        (uvicorn re-raises it, which ends in a KeyboardInterrupt traceback inside asyncio)."""

        stopped_by_signal = False

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            original = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
            try:
                yield
            finally:
                for sig, handler in original.items():
                    signal.signal(sig, handler)

        def _on_signal(self, sig, frame) -> None:  # pragma: no cover - signal handler
            self.stopped_by_signal = True
            if self.should_exit and sig == signal.SIGINT:
                self.force_exit = True  # second Ctrl-C: do not wait for open requests
            self.should_exit = True

    return Server


def run(config: ServerConfig, store: Store, sock: socket.socket, *, access_log: bool = False) -> bool:
    """Serve until SIGINT/SIGTERM. Raises :class:`Stopped` after a signal; returns False when the
    app could not start (uvicorn has logged why)."""
    import uvicorn

    from synth_cli.devserver.server import create_app

    app = create_app(config, store=store)
    uv_config = uvicorn.Config(app, log_level="info" if access_log else "warning", access_log=access_log,
                               lifespan="on", timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                               **uvicorn_settings())
    server = _server_class()(uv_config)
    try:
        server.run(sockets=[sock])
    finally:
        store.close()
        sock.close()
    if server.stopped_by_signal:
        raise Stopped
    return bool(server.started)
