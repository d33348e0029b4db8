"""A small deterministic LLM upstream (OpenAI Chat Completions + Anthropic Messages) for proxy
tests and `bench/proxy.py`: real HTTP on 127.0.0.1, answers derived from the request only.

    with running_upstream() as up:          # a uvicorn thread in this process
        up.base_url                         # http://127.0.0.1:PORT
    python tests/helpers/upstream.py --port 9000   # a process of its own (the bench)

Behaviour, chosen by the request:

* the answer is `echo: <last user text>`; when tools are offered and the last user text contains
  "use tool", the answer is a call of the first tool with `{"q": <text>}`;
* `stream: true` answers SSE (OpenAI chunks ending in `data: [DONE]`, usage in the last chunk;
  Anthropic's event sequence);
* model `fail-429` / `fail-500`: that status with an API-shaped error body and extra headers;
  `fail-stream`: a 200 stream that carries an error in the middle; `gzip-*`: the JSON answer
  gzip-encoded (when the client accepts it); `slow-*`: each stream chunk 20 ms apart;
* every answer carries `x-upstream-request-id`, two `set-cookie` headers and `x-echo-auth`
  (whether an Authorization / x-api-key header arrived, never its value);
* `GET /v1/models`; `POST /debug/headers` returns the request headers it received.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any


def _last_user_text(messages: list[dict]) -> str:
    for message in reversed(messages or []):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]
        kinds = [p.get("type") for p in content or [] if isinstance(p, dict) and p.get("type") != "text"]
        return " ".join(texts + [f"[{k}]" for k in kinds])
    return ""


def _tool_name(tools: list[dict] | None, anthropic: bool) -> str | None:
    if not tools:
        return None
    first = tools[0]
    return first.get("name") if anthropic else (first.get("function") or {}).get("name")


def _digest(body: bytes) -> str:
    """Ids derived from the request body: the same request gets the same answer, byte for byte."""
    return hashlib.sha1(body).hexdigest()[:16]


def _extra_headers(request, body: bytes = b"") -> list[tuple[bytes, bytes]]:
    auth = b"yes" if request.headers.get("authorization") or request.headers.get("x-api-key") else b"no"
    return [(b"x-upstream-request-id", f"req_{_digest(body)}".encode()), (b"set-cookie", b"a=1; Path=/"),
            (b"set-cookie", b"b=2; Path=/"), (b"x-echo-auth", auth)]


def create_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def _json(data: Any, status: int, request, gzip_ok: bool = False) -> Response:
        body = json.dumps(data).encode()
        headers = _extra_headers(request, request.state.body)
        if gzip_ok and "gzip" in request.headers.get("accept-encoding", ""):
            body = gzip.compress(body, mtime=0)
            headers.append((b"content-encoding", b"gzip"))
        response = Response(body, status_code=status, media_type="application/json")
        response.raw_headers.extend(headers)
        return response

    def _stream(gen, request) -> StreamingResponse:
        response = StreamingResponse(gen, media_type="text/event-stream")
        response.raw_headers.extend(_extra_headers(request, request.state.body))
        response.raw_headers.append((b"cache-control", b"no-cache"))
        return response

    def _failure(model: str, request, anthropic: bool) -> Response | None:
        if model in ("fail-429", "fail-500"):
            status = int(model[-3:])
            if anthropic:
                body = {"type": "error", "error": {"type": "rate_limit_error" if status == 429 else "api_error",
                                                   "message": f"simulated {status}"}}
            else:
                body = {"error": {"message": f"simulated {status}", "type": "rate_limit_error" if status == 429
                                  else "server_error", "code": f"sim_{status}", "param": None}}
            response = _json(body, status, request)
            response.raw_headers.append((b"retry-after", b"0"))
            return response
        return None

    async def _read(request: Request) -> dict:
        request.state.body = await request.body()
        return json.loads(request.state.body)

    async def chat(request: Request) -> Response:
        req = await _read(request)
        model = req.get("model", "")
        failure = _failure(model, request, anthropic=False)
        if failure is not None:
            return failure
        text = _last_user_text(req.get("messages"))
        tool = _tool_name(req.get("tools"), anthropic=False)
        use_tool = tool is not None and "use tool" in text
        cid = f"chatcmpl-{_digest(request.state.body)}"
        usage = {"prompt_tokens": len(json.dumps(req.get("messages"))) // 4, "completion_tokens": 3}
        usage["total_tokens"] = usage["prompt_tokens"] + 3
        created = 1_700_000_000
        if not req.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": None if use_tool else f"echo: {text}"}
            if use_tool:
                message["tool_calls"] = [{"id": "call_1", "type": "function",
                                          "function": {"name": tool, "arguments": json.dumps({"q": text})}}]
            return _json({"id": cid, "object": "chat.completion", "created": created, "model": model,
                          "choices": [{"index": 0, "message": message,
                                       "finish_reason": "tool_calls" if use_tool else "stop"}],
                          "usage": usage}, 200, request, gzip_ok=model.startswith("gzip-"))
        slow = model.startswith("slow-")

        async def gen():
            def chunk(delta: dict, finish: str | None = None, with_usage: bool = False) -> str:
                data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
                if with_usage:
                    data["usage"] = usage
                return f"data: {json.dumps(data)}\n\n"

            yield chunk({"role": "assistant", "content": ""})
            if use_tool:
                args = json.dumps({"q": text})
                yield chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                             "function": {"name": tool, "arguments": ""}}]})
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
                yield chunk({}, "tool_calls", with_usage=True)
            else:
                words = f"echo: {text}".split(" ")
                for i, word in enumerate(words):
                    if slow:
                        await asyncio.sleep(0.02)
                    if model == "fail-stream" and i == 1:
                        yield f"data: {json.dumps({'error': {'message': 'simulated stream failure', 'type': 'server_error'}})}\n\n"
                        return
                    yield chunk({"content": word if i == 0 else " " + word})
                yield chunk({}, "stop", with_usage=True)
            yield "data: [DONE]\n\n"

        return _stream(gen(), request)

    async def messages(request: Request) -> Response:
        req = await _read(request)
        model = req.get("model", "")
        failure = _failure(model, request, anthropic=True)
        if failure is not None:
            return failure
        text = _last_user_text(req.get("messages"))
        tool = _tool_name(req.get("tools"), anthropic=True)
        use_tool = tool is not None and "use tool" in text
        mid = f"msg_{_digest(request.state.body)}"
        in_tokens = len(json.dumps(req.get("messages"))) // 4
        content: list[dict] = ([{"type": "tool_use", "id": "toolu_1", "name": tool, "input": {"q": text}}]
                               if use_tool else [{"type": "text", "text": f"echo: {text}"}])
        stop = "tool_use" if use_tool else "end_turn"
        if not req.get("stream"):
            return _json({"id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
                          "stop_reason": stop, "stop_sequence": None,
                          "usage": {"input_tokens": in_tokens, "output_tokens": 3}}, 200, request,
                         gzip_ok=model.startswith("gzip-"))
        slow = model.startswith("slow-")

        async def gen():
            def event(kind: str, data: dict) -> str:
                return f"event: {kind}\ndata: {json.dumps({'type': kind, **data})}\n\n"

            yield event("message_start", {"message": {"id": mid, "type": "message", "role": "assistant",
                                                      "model": model, "content": [], "stop_reason": None,
                                                      "stop_sequence": None,
                                                      "usage": {"input_tokens": in_tokens, "output_tokens": 1}}})
            if use_tool:
                yield event("content_block_start", {"index": 0, "content_block": {
                    "type": "tool_use", "id": "toolu_1", "name": tool, "input": {}}})
                args = json.dumps({"q": text})
                for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                    yield event("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta",
                                                                             "partial_json": piece}})
            else:
                yield event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
                words = f"echo: {text}".split(" ")
                for i, word in enumerate(words):
                    if slow:
                        await asyncio.sleep(0.02)
                    if model == "fail-stream" and i == 1:
                        yield event("error", {"error": {"type": "overloaded_error", "message": "simulated"}})
                        return
                    yield event("content_block_delta", {"index": 0, "delta": {
                        "type": "text_delta", "text": word if i == 0 else " " + word}})
            yield event("content_block_stop", {"index": 0})
            yield event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None},
                                          "usage": {"output_tokens": 3}})
            yield event("message_stop", {})

        return _stream(gen(), request)

    async def models(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{"id": "echo-1", "object": "model"}]},
                            headers={"x-models": "1"})

    async def debug_headers(request: Request) -> Response:
        body = await request.body()
        return JSONResponse({"headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
                             "path": request.url.path, "query": request.url.query, "body": body.decode("latin-1")})

    return Starlette(routes=[
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/debug/headers", debug_headers, methods=["GET", "POST", "PUT", "DELETE"]),
        Route("/v1/debug/headers", debug_headers, methods=["GET", "POST", "PUT", "DELETE"]),
    ])


@dataclass
class Upstream:
    base_url: str
    port: int


def _bind(port: int = 0) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio then sets TCP_NODELAY on accepted connections (see devserver/run.py)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    return sock


@contextmanager
def running_upstream() -> Iterator[Upstream]:
    """The upstream in a uvicorn thread of this process, on a free 127.0.0.1 port."""
    import uvicorn

    sock = _bind()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
    server.install_signal_handlers = lambda: None  # uvicorn < 0.29
    thread = threading.Thread(target=lambda: server.run(sockets=[sock]), daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the test upstream did not start")
        time.sleep(0.01)
    try:
        yield Upstream(f"http://127.0.0.1:{port}", port)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def main(argv: list[str]) -> None:
    import argparse

    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    sock = _bind(args.port)
    print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
    uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off", access_log=False)).run(
        sockets=[sock])


if __name__ == "__main__":
    main(sys.argv[1:])
