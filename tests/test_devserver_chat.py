"""The simulated model of `synth-ai serve`: OpenAI's Chat Completions and Anthropic's Messages,
driven by the official `openai` and `anthropic` SDKs (plain, streamed, tools), plus the raw SSE
wire formats and each API's own auth header and error shape.
"""

from __future__ import annotations

import json

import httpx
import pytest

from helpers.devserver import running_server

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

KEY = "sk-chat-test-key-0001"
WEATHER_OPENAI = [{"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"},
                                                    "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "unit"]}}}]
WEATHER_ANTHROPIC = [{"name": "get_weather", "description": "Weather in a city",
                      "input_schema": WEATHER_OPENAI[0]["function"]["parameters"]}]
ASK = [{"role": "user", "content": "What should the agent do next in Crafter?"}]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("chat"), api_keys=[KEY]) as handle:
        yield handle


@pytest.fixture(scope="module")
def oai(srv):
    client = openai.OpenAI(base_url=srv.base_url, api_key=KEY, max_retries=0, timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="module")
def claude(srv):
    client = anthropic.Anthropic(base_url=srv.root_url, api_key=KEY, max_retries=0, timeout=30)
    yield client
    client.close()


# --------------------------------------------------------------------------- OpenAI


def test_openai_plain_completion_is_deterministic_by_seed(oai):
    first = oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, seed=3)
    choice = first.choices[0]
    assert first.object == "chat.completion" and first.model == "gpt-4o-mini" and first.id.startswith("chatcmpl-")
    assert choice.finish_reason == "stop" and choice.message.role == "assistant" and choice.message.content
    assert choice.message.tool_calls is None
    assert first.usage.prompt_tokens > 0 and first.usage.completion_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens
    again = oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, seed=3)
    assert again.choices[0].message.content == choice.message.content and again.id == first.id
    others = {oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, seed=s).choices[0].message.content
              for s in (4, 5, 6)}
    assert len(others | {choice.message.content}) > 1


def test_openai_stream_is_the_same_answer_chunk_by_chunk(oai):
    plain = oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, seed=11)
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, seed=11, stream=True,
                                              stream_options={"include_usage": True}))
    assert all(c.object == "chat.completion.chunk" and c.id == plain.id for c in chunks)
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert deltas[0].role == "assistant"
    text = "".join(d.content or "" for d in deltas)
    assert text == plain.choices[0].message.content
    assert sum(1 for d in deltas if d.content) == len(text.split())  # one chunk per word
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_openai_tool_calls_when_tools_are_offered(oai):
    result = oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=WEATHER_OPENAI, seed=1)
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    args = json.loads(call.function.arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit") and isinstance(args["city"], str)

    streamed = list(oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=WEATHER_OPENAI, seed=1,
                                                stream=True))
    pieces = [tc for c in streamed for tc in (c.choices[0].delta.tool_calls or [])]
    assert pieces[0].id == call.id and pieces[0].function.name == "get_weather"
    assert len(pieces) > 2  # the arguments arrive in several pieces
    assert "".join(p.function.arguments or "" for p in pieces) == call.function.arguments
    assert streamed[-1].choices[0].finish_reason == "tool_calls"

    follow_up = ASK + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                       {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 21}'}]
    answer = oai.chat.completions.create(model="gpt-4o-mini", messages=follow_up, tools=WEATHER_OPENAI, seed=1)
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content
    required = oai.chat.completions.create(model="gpt-4o-mini", messages=follow_up, tools=WEATHER_OPENAI,
                                           tool_choice="required")
    assert required.choices[0].finish_reason == "tool_calls"
    none = oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, tools=WEATHER_OPENAI, tool_choice="none")
    assert none.choices[0].message.tool_calls is None


def test_openai_max_tokens_and_errors(srv, oai):
    short = oai.chat.completions.create(model="gpt-4o-mini", messages=ASK, max_tokens=3)
    assert short.choices[0].finish_reason == "length" and len(short.choices[0].message.content.split()) == 3
    with pytest.raises(openai.BadRequestError) as info:
        oai.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert info.value.param == "messages"
    wrong = openai.OpenAI(base_url=srv.base_url, api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.chat.completions.create(model="gpt-4o-mini", messages=ASK)
    wrong.close()
    # the OpenAI endpoint takes its key from Authorization only
    r = httpx.post(srv.base_url + "/chat/completions", headers={"x-api-key": KEY},
                   json={"model": "m", "messages": ASK})
    assert r.status_code == 401 and "Authorization" in r.json()["error"]["message"]


def test_openai_wire_format(srv):
    with httpx.stream("POST", srv.base_url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": "m", "messages": ASK, "stream": True}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") and "\n" not in e for e in events)
    assert events[-1] == "data: [DONE]" and raw.endswith("data: [DONE]\n\n")
    first = json.loads(events[0][6:])
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert json.loads(events[-2][6:])["choices"][0] == {"index": 0, "delta": {}, "logprobs": None,
                                                        "finish_reason": "stop"}


# --------------------------------------------------------------------------- Anthropic


def test_anthropic_plain_message(claude):
    message = claude.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=ASK,
                                     system="You play Crafter.")
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.stop_reason == "end_turn" and message.model == "claude-sonnet-4-5"
    (block,) = message.content
    assert block.type == "text" and block.text
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    again = claude.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=ASK, system="You play Crafter.")
    assert again.content[0].text == block.text
    short = claude.messages.create(model="claude-sonnet-4-5", max_tokens=2, messages=ASK)
    assert short.stop_reason == "max_tokens" and len(short.content[0].text.split()) == 2


def test_anthropic_stream_is_the_same_answer(claude):
    plain = claude.messages.create(model="claude-haiku-4-5", max_tokens=200, messages=ASK)
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=200, messages=ASK) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert len(pieces) > 3 and "".join(pieces) == plain.content[0].text
    assert final.content[0].text == plain.content[0].text and final.id == plain.id
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == plain.usage.output_tokens


def test_anthropic_tool_use(claude):
    message = claude.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=ASK, tools=WEATHER_ANTHROPIC)
    assert message.stop_reason == "tool_use"
    (block,) = message.content
    assert block.type == "tool_use" and block.name == "get_weather" and block.id.startswith("toolu_")
    assert set(block.input) == {"city", "unit"} and block.input["unit"] in ("celsius", "fahrenheit")
    with claude.messages.stream(model="claude-haiku-4-5", max_tokens=300, messages=ASK,
                                tools=WEATHER_ANTHROPIC) as stream:
        final = stream.get_final_message()
    assert final.content[0].input == block.input and final.stop_reason == "tool_use"
    follow_up = ASK + [{"role": "assistant", "content": [block.model_dump()]},
                       {"role": "user", "content": [{"type": "tool_result", "tool_use_id": block.id,
                                                     "content": "21 degrees"}]}]
    answer = claude.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=follow_up,
                                    tools=WEATHER_ANTHROPIC)
    assert answer.stop_reason == "end_turn" and answer.content[0].type == "text"
    forced = claude.messages.create(model="claude-haiku-4-5", max_tokens=300, messages=follow_up,
                                    tools=WEATHER_ANTHROPIC, tool_choice={"type": "tool", "name": "get_weather"})
    assert forced.stop_reason == "tool_use"


def test_anthropic_auth_and_errors_in_anthropics_shape(srv, claude):
    wrong = anthropic.Anthropic(base_url=srv.root_url, api_key="sk-wrong-key-000000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        wrong.messages.create(model="m", max_tokens=10, messages=ASK)
    assert info.value.body["error"]["type"] == "authentication_error"
    wrong.close()
    url = srv.root_url + "/v1/messages"
    body = {"model": "m", "max_tokens": 10, "messages": ASK}
    r = httpx.post(url, json=body, headers={"anthropic-version": "2023-06-01"})
    assert r.status_code == 401 and r.json() == {"type": "error", "error": {
        "type": "authentication_error", "message": "x-api-key header is required"}}
    for auth in ({"x-api-key": KEY}, {"Authorization": f"Bearer {KEY}"}):  # the SDK 2.x sends the latter
        r = httpx.post(url, json=body, headers={**auth, "anthropic-version": "2023-06-01"})
        assert r.status_code == 200 and r.json()["type"] == "message", r.text
    r = httpx.post(url, json=body, headers={"x-api-key": KEY})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert "anthropic-version" in r.json()["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as info:
        claude.messages.create(model="m", max_tokens=0, messages=ASK)
    assert info.value.body["type"] == "error"
    r = httpx.post(url, content=b"[" * 100_000, headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"})
    assert r.status_code == 400 and r.json()["type"] == "error"


def test_anthropic_wire_format(srv):
    with httpx.stream("POST", srv.root_url + "/v1/messages",
                      headers={"x-api-key": KEY, "anthropic-version": "2023-06-01"},
                      json={"model": "m", "max_tokens": 100, "messages": ASK, "stream": True,
                            "tools": WEATHER_ANTHROPIC}, timeout=30) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        raw = r.read().decode()
    events = []
    for block in raw.split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        payload = json.loads(data[6:])
        assert payload["type"] == name[7:]
        events.append(payload)
    kinds = [e["type"] for e in events]
    assert kinds[:3] == ["message_start", "content_block_start", "ping"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}
    assert events[1]["content_block"]["type"] == "tool_use" and events[1]["content_block"]["input"] == {}
    partial = "".join(e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta")
    assert set(json.loads(partial)) == {"city", "unit"}
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_the_server_seed_flag_fixes_answers_without_a_request_seed(tmp_path):
    answers = []
    for _ in range(2):
        with running_server(tmp_path, api_keys=[KEY], seed=99) as srv:
            r = httpx.post(srv.base_url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                           json={"model": "m", "messages": ASK})
            answers.append(r.json()["choices"][0]["message"]["content"])
    with running_server(tmp_path, api_keys=[KEY], seed=100) as srv:
        r = httpx.post(srv.base_url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": "m", "messages": ASK})
        other = r.json()["choices"][0]["message"]["content"]
    assert answers[0] == answers[1] and other != answers[0]


BAD_BODIES = [b"", b"null", b"[]", b'"x"', b"{", b'{"model": 1}', b'{"model": "m", "messages": "hi"}',
              b'{"model": "m", "messages": [1]}', b'{"model": "m", "messages": [{"role": "user"}], "tools": 3}',
              b'{"model": "m", "messages": [{"role": "user", "content": 5}], "tools": [{"type": "function"}]}',
              b'{"model": "m", "messages": [{"role": "user", "content": [7, {"text": 3}]}], "max_tokens": -1}',
              b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tool_choice": 4}',
              b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": '
              b'[{"name": "t", "input_schema": {"type": "object", "properties": {"n": {"type": "integer", '
              b'"minimum": "low"}, "z": {"type": "array", "items": 5}}}}]}',
              b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 3}',
              b'{"model": "m", "messages": [{"role": "user", "content": "x"}], "seed": "abc", "stream": 1}',
              b'{"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": ' + b"[" * 600 + b"]" * 600
              + b'}]}']


def test_bad_requests_get_4xx_in_the_apis_shape_never_a_500(srv):
    for body in BAD_BODIES:
        r = httpx.post(srv.base_url + "/chat/completions", content=body,
                       headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"})
        assert r.status_code in (200, 400), (body, r.status_code, r.text)
        if r.status_code == 400:
            assert set(r.json()) == {"error"}
        r = httpx.post(srv.root_url + "/v1/messages", content=body,
                       headers={"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"})
        assert r.status_code in (200, 400), (body, r.status_code, r.text)
        if r.status_code == 400:
            assert r.json()["type"] == "error" and r.json()["error"]["type"] == "invalid_request_error"
