"""The proxy's ASGI app: forward every request to the upstream, record the LLM calls.

A plain ASGI callable (no framework on the hot path): the request body is read, the headers
filtered (:mod:`.headers`), the request sent with one shared `aiohttp.ClientSession`, and the
answer relayed as it arrives: status and headers first, then each body chunk as the upstream
sends it, still content-encoded (SSE is never buffered). Only then is the call handed to the
recorder's queue (:mod:`.worker`: the recording process builds the record). Paths recorded:

* `POST /v1/chat/completions` (OpenAI Chat Completions, streamed or not);
* `POST /v1/messages` (Anthropic Messages, streamed or not);

each also under `/s/{session_id}/`. Everything else is forwarded without recording, except the
proxy's own `/synth/...` endpoints:

* `GET /synth/status`: queue, counters (recorded, dropped because the queue was full, spooled),
  open sessions;
* `POST /synth/sessions/{id}/events`: `{"reward": 1.0, "terminated": true, "truncated": false,
  "metadata": {...}}` (every key optional) adds an environment event to the session;
* `POST /synth/sessions/{id}/end`: the same body (optional) as a last event, then the session is
  written.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from synth_cli.proxy.headers import (
    BadSynthInput,
    Route,
    SessionRouter,
    check_id,
    header_value,
    request_headers,
    response_headers,
)
from synth_cli.proxy.recorder import Recorder  # or worker.WriterProcess, the same interface

RECORDED = {"/v1/chat/completions": "openai", "/v1/messages": "anthropic"}
EVENT_KEYS = {"reward": (int, float), "terminated": bool, "truncated": bool, "metadata": dict}
_NO_BODY_METHODS = {"GET", "HEAD", "DELETE", "OPTIONS"}
_JSON = [(b"content-type", b"application/json")]
#: limits of the upstream's response head (aiohttp's defaults, 8190 bytes a line, are tighter than h11's 16 KB)
MAX_HEADER_BYTES = 65536
MAX_HEADERS = 256


def _tls_context():
    """The CA bundle httpx used before (certifi's, installed with httpx), so an https upstream that
    verified then verifies now; the system's store when certifi is missing."""
    import ssl

    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with httpx
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())


def _text(value: bytes) -> str:
    """A header name or value for the upstream client, which writes str as UTF-8: UTF-8 bytes go
    through unchanged; other bytes (rare, e.g. Latin-1 text) as their Latin-1 code points."""
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value.decode("latin-1")


@dataclass(frozen=True)
class ProxyConfig:
    upstream: str  # http(s)://host[:port][/prefix]
    db_label: str
    timeout: float = 600.0
    connect_timeout: float = 10.0
    max_connections: int = 1000


def upstream_prefix(upstream: str) -> tuple[str, bool]:
    """(the URL prefix without a trailing slash, whether an incoming `/v1` is dropped: when the
    upstream URL already ends in /v1, as OpenAI-style base URLs do)."""
    prefix = upstream.rstrip("/")
    return prefix, urlsplit(prefix).path.endswith("/v1")


def _error_body(message: str, kind: str) -> bytes:
    from synth_cli import _json

    return _json.dumps_bytes({"error": {"message": message, "type": kind}})


async def _read_body(receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ConnectionResetError("client went away")
        chunk = message.get("body", b"")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or _JSON) + [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class ProxyApp:
    def __init__(self, config: ProxyConfig, recorder: Recorder, router: SessionRouter):
        self.config = config
        self.recorder = recorder
        self.router = router
        self.prefix, self.strip_v1 = upstream_prefix(config.upstream)
        self.client = None  # the shared aiohttp.ClientSession, opened at start-up
        self.started_at = time.time()

    # -- lifespan ---------------------------------------------------------------------------
    def open_client(self) -> None:
        """The one upstream client (aiohttp's: ~0.15 ms of CPU per call where httpx took 1.1-1.8 ms, most
        of it in its pool's per-request scan of every idle connection; see docs/performance.md)."""
        import aiohttp

        cfg = self.config
        self.client = aiohttp.ClientSession(
            # one client for every agent: it must keep no upstream cookies (nor send them back)
            cookie_jar=aiohttp.DummyCookieJar(),
            # the agent's request as it sent it: no Accept, Accept-Encoding, User-Agent or Content-Type
            # of aiohttp's own; the body as the upstream sent it, still content-encoded
            skip_auto_headers=("Accept", "Accept-Encoding", "User-Agent", "Content-Type"),
            auto_decompress=False,
            # connect: waiting for a pooled connection (and opening it); sock_connect: the TCP/TLS
            # connect itself; sock_read: the upstream's silence between bytes (--timeout)
            timeout=aiohttp.ClientTimeout(total=None, connect=cfg.timeout, sock_connect=cfg.connect_timeout,
                                          sock_read=cfg.timeout),
            connector=aiohttp.TCPConnector(limit=cfg.max_connections, limit_per_host=0, keepalive_timeout=30.0,
                                           ssl=_tls_context()),
            trust_env=False,  # no proxy settings or .netrc credentials added to the client's request
            max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES, max_headers=MAX_HEADERS)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.open_client()
                self.recorder.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.client is not None:
                    await self.client.close()
                await asyncio.get_running_loop().run_in_executor(None, self.recorder.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- dispatch ---------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "http":
            path = scope["path"]
            if path.startswith("/synth/"):
                await self._synth(scope, receive, send)
            else:
                await self._forward(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1003})

    async def _forward(self, scope, receive, send) -> None:
        path = scope["path"]
        raw_path = scope.get("raw_path")
        raw = raw_path.decode("latin-1") if raw_path else quote(path)
        path_session = None
        if path.startswith("/s/"):
            sid, sep, _ = path[3:].partition("/")
            raw_sid, _, raw_tail = raw[3:].partition("/")
            if not sid or not sep:
                await _respond(send, 404, _error_body("synth-ai proxy: use /s/{session_id}/v1/...", "not_found"))
                return
            path_session = unquote(raw_sid)
            path = path[3 + len(sid):]
            raw = "/" + raw_tail
        method = scope["method"]
        api = RECORDED.get(path) if method == "POST" else None
        try:
            body = await _read_body(receive)
        except ConnectionResetError:
            return
        forward, synth = request_headers(scope["headers"])
        route = None
        if api is not None:
            try:
                client = scope.get("client")
                route = self.router.route(synth, path_session, client[0] if client else None, time.time())
            except BadSynthInput as exc:
                await _respond(send, 400, _error_body(f"synth-ai proxy: {exc}", "invalid_request_error"))
                return
        target = self.prefix + (raw[3:] if self.strip_v1 and (raw == "/v1" or raw.startswith("/v1/")) else raw)
        query = scope.get("query_string")
        if query:
            target += "?" + query.decode("latin-1")
        content = body if body or method not in _NO_BODY_METHODS or header_value(
            scope["headers"], b"content-length") is not None else None
        await self._relay(scope, receive, send, method, target, forward, content, api, route, body)

    async def _relay(self, scope, receive, send, method: str, target: str, forward, content, api: str | None,
                     route: Route | None, body: bytes) -> None:
        import aiohttp
        from yarl import URL

        started = time.time()
        try:
            response = await self.client.request(
                method, URL(target, encoded=True), headers=[(_text(n), _text(v)) for n, v in forward],
                data=content, allow_redirects=False)
        except asyncio.TimeoutError as exc:
            await self._unreachable(send, 504, f"upstream timed out ({type(exc).__name__})", api, route, body,
                                    started)
            return
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            await self._unreachable(send, 502, f"upstream unreachable ({type(exc).__name__}: {exc})", api, route,
                                    body, started)
            return
        raw_headers = response.raw_headers
        status = response.status
        await send({"type": "http.response.start", "status": status, "headers": response_headers(raw_headers)})
        ctype = header_value(raw_headers, b"content-type")
        watch = None
        if ctype is not None and ctype.startswith("text/event-stream"):
            watch = asyncio.ensure_future(receive())  # completes when the client goes away
        chunks: list[bytes] = []
        complete = True
        try:
            async for chunk in response.content.iter_any():
                if chunk:
                    if api is not None:
                        chunks.append(chunk)
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                if watch is not None and watch.done():
                    if not watch.cancelled() and watch.result().get("type") == "http.disconnect":
                        complete = False
                        break
                    watch = None  # another message (a pipelined request): stop watching
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
            complete = False  # the upstream broke off: the client sees the connection end early
        finally:
            if complete:
                response.release()  # read to the end: the connection goes back to the pool
            else:
                response.close()
            if watch is not None and not watch.done():
                watch.cancel()
        if complete:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        if api is not None:
            self.recorder.call(route, api, body, status, ctype, header_value(raw_headers, b"content-encoding"),
                               chunks[0] if len(chunks) == 1 else b"".join(chunks), started, time.time(),
                               incomplete=not complete)

    async def _unreachable(self, send, status: int, reason: str, api, route, body: bytes, started: float) -> None:
        await _respond(send, status, _error_body(f"synth-ai proxy: {reason}", "upstream_unreachable"))
        if api is not None:
            self.recorder.call(route, api, body, status, None, None, b"", started, time.time(), failure=reason)

    # -- /synth/ ---------------------------------------------------------------------------------
    async def _synth(self, scope, receive, send) -> None:
        from synth_cli import _json

        path, method = scope["path"], scope["method"]
        try:
            body = await _read_body(receive)
        except ConnectionResetError:
            return
        if path == "/synth/status":
            if method != "GET":
                await _respond(send, 405, _error_body("use GET /synth/status", "method_not_allowed"))
                return
            status = {"upstream": self.config.upstream, "db": self.config.db_label,
                      "uptime_seconds": round(time.time() - self.started_at, 1), **self.recorder.status()}
            await _respond(send, 200, _json.dumps_bytes(status))
            return
        parts = path.split("/")  # ["", "synth", "sessions", id, action]
        if len(parts) != 5 or parts[2] != "sessions" or parts[4] not in ("events", "end"):
            await _respond(send, 404, _error_body(
                "synth-ai proxy: unknown endpoint (GET /synth/status, POST /synth/sessions/{id}/events, "
                "POST /synth/sessions/{id}/end)", "not_found"))
            return
        if method != "POST":
            await _respond(send, 405, _error_body(f"use POST {path}", "method_not_allowed"))
            return
        try:
            session_id = check_id(unquote(parts[3]), "the session id")
            payload = _event_payload(body, required=parts[4] == "events")
        except BadSynthInput as exc:
            await _respond(send, 400, _error_body(f"synth-ai proxy: {exc}", "invalid_request_error"))
            return
        route = Route(session_id)
        ok = self.recorder.event(route, payload) if parts[4] == "events" else self.recorder.end(route, payload)
        if not ok:
            await _respond(send, 503, _error_body("synth-ai proxy: the record queue is full; retry later",
                                                  "queue_full"), _JSON + [(b"retry-after", b"1")])
            return
        await _respond(send, 202, _json.dumps_bytes({"session_id": session_id, "queued": True,
                                                     "ended": parts[4] == "end"}))


def _event_payload(body: bytes, *, required: bool) -> dict[str, Any] | None:
    from synth_cli import _json

    if not body.strip():
        if required:
            raise BadSynthInput("send a JSON object, e.g. {\"reward\": 1.0, \"terminated\": true}")
        return None
    try:
        payload = _json.loads(body)
    except _json.JSONDecodeError:
        raise BadSynthInput("the body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise BadSynthInput("the body must be a JSON object")
    unknown = sorted(set(payload) - set(EVENT_KEYS))
    if unknown:
        raise BadSynthInput(f"unknown key {unknown[0]!r} (allowed: {', '.join(EVENT_KEYS)})")
    for key, types in EVENT_KEYS.items():
        value = payload.get(key)
        if value is None:
            continue
        if isinstance(value, bool) and types is not bool or not isinstance(value, types):
            kind = {bool: "true or false", dict: "a JSON object"}.get(types, "a number")  # type: ignore[arg-type]
            raise BadSynthInput(f"{key} must be {kind}")
    if not payload and required:
        raise BadSynthInput("the event is empty (give reward, terminated, truncated or metadata)")
    return payload
