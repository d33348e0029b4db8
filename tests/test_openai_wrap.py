"""`trace_openai`: the real `openai` SDK against a small Chat Completions server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from helpers.llm_fixtures import build, load
from synth_cli.tracing.models import parse_call_records
from synth_cli.tracing.openai_wrap import trace_openai, untrace_openai
from synth_cli.store.reader import TraceStore
from synth_cli.tracing.tracer import SessionTracer

openai = pytest.importorskip("openai")

FIXTURES = [load(n) for n in ("openai_text", "openai_parallel_tool_calls", "openai_n2", "openai_stream_tool_calls",
                              "openai_stream_text")]
ERROR = load("openai_error")
API_KEY = "sk-test-local-not-a-real-key-0000"


class _Handler(BaseHTTPRequestHandler):
    server_version = "fake-openai/1"

    def log_message(self, *args):  # keep test output clean
        pass

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.bodies.append(body)
        if self.path != "/v1/chat/completions":
            return self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._json(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        if body["model"] == "rate-limited":
            return self._json(429, ERROR["error"]["body"], {"x-request-id": "req_ratelimit"})
        fx = next((f for f in FIXTURES if f["request"]["messages"] == body["messages"]
                   and bool(f["request"].get("stream")) == bool(body.get("stream"))), None)
        if fx is None:
            return self._json(400, {"error": {"message": "no canned answer", "type": "invalid_request_error"}})
        if not body.get("stream"):
            return self._json(200, fx["response"])
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for chunk in fx["stream"]:
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")

    def _json(self, status, payload, headers=None):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.bodies = []
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def _untimed(record):
    return replace(record, started_at=None, completed_at=None, latency_ms=None)


def test_traces_plain_streamed_and_failed_calls(server, tmp_path):
    fx_tools, fx_stream, fx_text = FIXTURES[1], FIXTURES[3], FIXTURES[4]
    client = openai.OpenAI(base_url=_url(server), api_key=API_KEY, max_retries=0)
    tracer = SessionTracer(tmp_path / "wrapped.db")
    seen = []
    assert trace_openai(client, tracer, system_instance_id="agent", on_record=seen.append) is client
    trace_openai(client, tracer)  # a second call is harmless
    server.bodies.clear()
    with tracer.session(session_id="wrapped"):
        with tracer.timestep("step_0", turn_number=0):
            response = client.chat.completions.create(**fx_tools["request"])
            assert [c.id for c in response.choices[0].message.tool_calls] == ["call_paris", "call_rome"]
            stream = client.chat.completions.create(**fx_stream["request"])
            pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
            assert "".join(pieces) == "Checking both cities."
        with tracer.timestep("step_1", turn_number=1):
            with client.chat.completions.create(**fx_text["request"]) as stream:
                assert "".join(c.choices[0].delta.content or "" for c in stream) == "Bonjour !"
            with pytest.raises(openai.RateLimitError):
                client.chat.completions.create(model="rate-limited", messages=[{"role": "user", "content": "Hello?"}])
    tracer.close()

    # the server saw exactly what the caller sent: nothing added, nothing removed
    assert server.bodies[0] == fx_tools["request"]
    assert server.bodies[1] == fx_stream["request"]
    assert "stream_options" not in server.bodies[2]

    with TraceStore.open(tmp_path / "wrapped.db") as store:
        rows = store.dicts("SELECT system_instance_id, model_name, input_tokens, latency_ms, call_records "
                           "FROM events ORDER BY id")
    records = [parse_call_records(r["call_records"])[0] for r in rows]
    assert [r["system_instance_id"] for r in rows] == ["agent"] * 4
    assert [_untimed(r) for r in records[:3]] == [_untimed(build(fx_tools)), _untimed(build(fx_stream)),
                                                  _untimed(build(fx_text))]
    assert all(r.latency_ms is not None and r.latency_ms >= 0 for r in records)
    assert rows[0]["input_tokens"] == 187 and rows[1]["input_tokens"] == 93
    error = records[3]
    assert error.outcome == "error" and error.model_name == "rate-limited"
    assert error.error["code"] == "rate_limit_exceeded" and error.error["status_code"] == 429
    assert error.error["type"] == "tokens" and error.provider_request_id == "req_ratelimit"
    assert [r.call_id for r in seen] == [r.call_id for r in records]
    assert API_KEY not in json.dumps([r.to_dict() for r in seen])


def test_abandoned_stream_and_calls_outside_a_session(server, tmp_path):
    fx_stream = FIXTURES[3]
    client = openai.OpenAI(base_url=_url(server), api_key=API_KEY, max_retries=0)
    tracer = SessionTracer(tmp_path / "partial.db")
    seen = []
    trace_openai(client, tracer, on_record=seen.append, keep_chunks=True)
    # outside a session: the record reaches on_record only
    client.chat.completions.create(**FIXTURES[0]["request"])
    assert len(seen) == 1 and seen[0].output_messages[0].text == "Paris."
    with tracer.session():
        with client.chat.completions.create(**fx_stream["request"]) as stream:
            for i, _chunk in enumerate(stream):
                if i == 4:
                    break
    tracer.close()
    partial = seen[-1]
    assert partial.metadata["stream_incomplete"] is True
    assert len(partial.chunks) == 5 and all(c.received_at is not None for c in partial.chunks)
    assert partial.output_messages[0].text == "Checking both cities."
    with TraceStore.open(tmp_path / "partial.db") as store:
        assert store.scalar("SELECT count(*) FROM events") == 1
    untrace_openai(client)
    client.chat.completions.create(**FIXTURES[0]["request"])
    assert len(seen) == 2


def test_async_client(server, tmp_path):
    fx_n2, fx_stream = FIXTURES[2], FIXTURES[3]
    seen = []

    async def run():
        client = openai.AsyncOpenAI(base_url=_url(server), api_key=API_KEY, max_retries=0)
        trace_openai(client, on_record=seen.append)
        response = await client.chat.completions.create(**fx_n2["request"])
        assert len(response.choices) == 2
        stream = await client.chat.completions.create(**fx_stream["request"])
        async for _ in stream:
            pass
        await client.close()

    asyncio.run(run())
    assert [_untimed(r) for r in seen] == [_untimed(build(fx_n2)), _untimed(build(fx_stream))]


def test_recording_failure_never_breaks_the_call(server, tmp_path):
    client = openai.OpenAI(base_url=_url(server), api_key=API_KEY, max_retries=0)

    def broken(record):
        raise RuntimeError("sink is down")

    trace_openai(client, on_record=broken)
    with pytest.warns(RuntimeWarning, match="could not record"):
        response = client.chat.completions.create(**FIXTURES[0]["request"])
    assert response.choices[0].message.content == "Paris."
