"""A misbehaving libSQL server for tests: an HTTP/1.1 server on 127.0.0.1 in front of a real one
(sqld from tests/helpers/sqld.py), speaking raw sockets so that it can lie about lengths, close
connections, compress unasked, hang. Each request goes to the real server and back unchanged,
unless `misbehave(path, body)` returns a behaviour: a function `(answer, real)` that answers the
request its own way (`answer` writes raw bytes to the client, `real()` fetches the real answer
as (status, content type, body)) and returns whether the connection stays open.

    with BadServer(sqld_url, lambda path, body: garbage) as url: ...
"""

from __future__ import annotations

import http.client
import socket
import threading
from typing import Callable
from urllib.parse import urlsplit

Real = Callable[[], "tuple[int, str, bytes]"]
Behaviour = Callable[[Callable[[bytes], None], Real], bool]


def response(status: int, body: bytes, ctype: str = "application/x-protobuf", extra: str = "") -> bytes:
    """The bytes of a plain answer (Content-Length, keep-alive) plus `extra` header lines."""
    head = f"HTTP/1.1 {status} X\r\ncontent-type: {ctype}\r\ncontent-length: {len(body)}\r\n{extra}\r\n"
    return head.encode("latin-1") + body


class BadServer:
    def __init__(self, upstream: str, misbehave: Callable[[str, bytes], Behaviour | None] = lambda p, b: None):
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.misbehave = misbehave
        self.stopping = threading.Event()
        self.requests: list[tuple[str, bytes]] = []
        self.misbehaved = 0
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"

    def __enter__(self) -> str:
        threading.Thread(target=self._accept, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.stopping.set()
        self._listener.close()
        for sock in list(self._socks):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self._socks.append(sock)
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _real(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={k: v for k, v in headers.items()
                                                           if k in ("content-type", "authorization")})
            resp = conn.getresponse()
            return resp.status, resp.getheader("content-type") or "", resp.read()
        finally:
            conn.close()

    def _serve(self, sock: socket.socket) -> None:
        reader = sock.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                _, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (header := reader.readline()) not in (b"\r\n", b"\n", b""):
                    key, _, value = header.decode("latin-1").partition(":")
                    headers[key.strip().lower()] = value.strip()
                body = reader.read(int(headers.get("content-length") or 0))
                self.requests.append((path, body))
                behaviour = self.misbehave(path, body)
                if behaviour is None:
                    status, ctype, content = self._real(path, headers, body)
                    sock.sendall(response(status, content, ctype))
                    continue
                self.misbehaved += 1
                if not behaviour(sock.sendall, lambda p=path, h=headers, b=body: self._real(p, h, b)):
                    return
        except OSError:
            return
        finally:
            reader.close()
            sock.close()
