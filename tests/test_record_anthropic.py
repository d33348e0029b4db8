"""`record_from_anthropic_messages` and its streaming twin against hand-written Anthropic fixtures."""

from __future__ import annotations

import copy
import json

import pytest

from helpers.llm_fixtures import build, fixture_names, load, times
from synth_cli.tracing.record import (
    record_error,
    record_from_anthropic_messages,
    record_from_anthropic_messages_stream,
    record_from_openai_chat,
    tool_calls_of,
)

ANTHROPIC = [n for n in fixture_names("anthropic_") if n != "anthropic_error"]


@pytest.mark.parametrize("name", ANTHROPIC)
def test_fixture_fields(name):
    fx = load(name)
    record = build(fx)
    expected = fx["expected"]
    assert record.api_type == "chat_completions"
    assert record.metadata["source_api"] == "anthropic.messages"
    assert record.metadata["stop_reason"] == fx["response"]["stop_reason"]
    for key in ("model_name", "provider", "provider_request_id", "latency_ms", "finish_reason"):
        assert getattr(record, key) == expected[key], key
    assert record.output_messages[0].text == expected["output_text"]
    for key, value in expected["usage"].items():
        assert getattr(record.usage, key) == value, key
    for key, value in expected["request_params"].items():
        assert getattr(record.request_params, key) == value, key
    raw = dict(record.request_params.raw_params)
    tools = raw.pop("tools", None)
    assert raw == expected["raw_params"]
    assert tools == fx.get("expected_openai", {}).get("tools")
    assert record.tool_choice == expected.get("tool_choice")
    assert [{"name": c.name, "call_id": c.call_id, "index": c.index, "arguments_json": c.arguments_json,
             "arguments": c.arguments} for c in record.output_tool_calls] == expected["tool_calls"]


def test_system_blocks_and_cache_control():
    record = build(load("anthropic_text"))
    system = record.input_messages[0]
    assert system.role == "system"
    assert system.text == "You are a literary assistant. You answer questions about Pride and Prejudice."
    assert system.parts[0].data == {"cache_control": {"type": "ephemeral"}}


def test_tool_use_history_becomes_tool_calls_and_tool_messages():
    record = build(load("anthropic_tool_use"))
    roles = [m.role for m in record.input_messages]
    assert roles == ["system", "user", "assistant", "tool", "tool"]
    assistant = record.input_messages[2]
    assert assistant.text == "I'll look both up."
    calls = tool_calls_of(assistant)
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("toolu_01A09q90qw90lq917835lq9", "get_weather", {"location": "San Francisco, CA", "unit": "celsius"}),
        ("toolu_01B7hJ2kP4mQ9rS3tU5vW8xY", "get_time", {"timezone": "America/Los_Angeles"}),
    ]
    assert calls[0].arguments_json == '{"location":"San Francisco, CA","unit":"celsius"}'
    ok, failed = record.input_messages[3], record.input_messages[4]
    assert (ok.tool_call_id, ok.text, ok.metadata) == ("toolu_01A09q90qw90lq917835lq9", "15 degrees, sunny", {})
    assert failed.tool_call_id == "toolu_01B7hJ2kP4mQ9rS3tU5vW8xY"
    assert failed.text == "Error: time service unavailable" and failed.metadata == {"is_error": True}


def test_tool_results_precede_the_rest_of_their_user_turn():
    fx = copy.deepcopy(load("anthropic_tool_use"))
    fx["request"]["messages"][2]["content"].append({"type": "text", "text": "Please hurry."})
    record = build(fx)
    assert [m.role for m in record.input_messages][-3:] == ["tool", "tool", "user"]
    assert record.input_messages[-1].text == "Please hurry."


def test_images():
    record = build(load("anthropic_image"))
    b64, url, text = record.input_messages[0].parts
    assert (b64.type, b64.mime_type, b64.uri) == ("image", "image/png", None)
    assert b64.base64_data.startswith("iVBORw0KGgo")
    assert (url.type, url.uri, url.base64_data) == \
        ("image", "https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg", None)
    assert (text.type, text.text) == ("text", "Describe these two images.")


def test_stream_equals_unstreamed():
    fx = load("anthropic_stream_tool_use")
    streamed = build(fx, streamed=True)
    assert streamed == build(fx)
    assert streamed.to_dict() == build(fx).to_dict()
    # raw SSE text, as sent on the wire
    sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in fx["stream"])
    assert record_from_anthropic_messages_stream(fx["request"], [sse], **times(fx)) == build(fx)


def test_stream_with_thinking_and_no_argument_tool():
    request = {"model": "claude-sonnet-4-20250514", "max_tokens": 2048,
               "thinking": {"type": "enabled", "budget_tokens": 1024},
               "tools": [{"name": "now", "description": "The time", "input_schema": {"type": "object", "properties": {}}}],
               "messages": [{"role": "user", "content": "What time is it?"}]}
    events = [
        {"type": "message_start", "message": {"id": "msg_think", "type": "message", "role": "assistant",
                                              "model": "claude-sonnet-4-20250514", "content": [],
                                              "usage": {"input_tokens": 50, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Need the "}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "clock."}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "EqQB"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1,
         "content_block": {"type": "tool_use", "id": "toolu_now", "name": "now", "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}},
        {"type": "message_stop"},
    ]
    response = {"id": "msg_think", "type": "message", "role": "assistant", "model": "claude-sonnet-4-20250514",
                "content": [{"type": "thinking", "thinking": "Need the clock.", "signature": "EqQB"},
                            {"type": "tool_use", "id": "toolu_now", "name": "now", "input": {}}],
                "stop_reason": "tool_use", "usage": {"input_tokens": 50, "output_tokens": 30}}
    streamed = record_from_anthropic_messages_stream(request, events)
    assert streamed == record_from_anthropic_messages(request, response)
    [thinking] = streamed.output_messages[0].parts
    assert (thinking.type, thinking.text, thinking.data) == ("thinking", "Need the clock.", {"signature": "EqQB"})
    [call] = streamed.output_tool_calls
    assert (call.arguments, call.arguments_json) == ({}, "{}")
    assert streamed.request_params.raw_params["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_tool_choice_and_server_tools():
    fx = copy.deepcopy(load("anthropic_tool_use"))
    fx["request"]["tool_choice"] = {"type": "tool", "name": "get_time"}
    fx["request"]["tools"].append({"type": "web_search_20250305", "name": "web_search", "max_uses": 3})
    record = build(fx)
    assert record.tool_choice == {"type": "function", "function": {"name": "get_time"}}
    assert record.request_params.raw_params["server_tools"] == [
        {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}]
    assert len(record.request_params.raw_params["tools"]) == 2


def test_same_shape_as_openai():
    """The Anthropic tool-use call and its OpenAI equivalent give the same conversation shape."""
    anth = build(load("anthropic_stream_tool_use"))
    fx = load("anthropic_stream_tool_use")
    openai_request = {"model": "claude-3-5-haiku-20241022", "max_tokens": 1024,
                      "messages": [{"role": "user", "content": "What is the weather like in San Francisco?"}],
                      "tools": fx["expected_openai"]["tools"], "tool_choice": "required", "parallel_tool_calls": False}
    openai_response = {"id": "msg_014p7gG3wDgGV9EUtLvnow3U", "model": "claude-3-5-haiku-20241022", "choices": [
        {"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Okay, let's check the weather for San Francisco, CA:",
            "tool_calls": [{"id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function", "function": {
                "name": "get_weather", "arguments": '{"location":"San Francisco, CA","unit":"fahrenheit"}'}}]}}],
        "usage": {"prompt_tokens": 472, "completion_tokens": 89, "total_tokens": 561}}
    oai = record_from_openai_chat(openai_request, openai_response, provider="anthropic", **times(fx))
    for key in ("input_messages", "output_messages", "output_tool_calls", "tool_choice", "finish_reason",
                "model_name", "latency_ms"):
        assert getattr(anth, key) == getattr(oai, key), key
    assert anth.request_params.raw_params == oai.request_params.raw_params
    assert anth.request_params.max_tokens == oai.request_params.max_tokens


def test_error():
    fx = load("anthropic_error")
    record = build(fx)
    assert record.outcome == "error" and record.provider == "anthropic"
    assert {k: record.error[k] for k in ("code", "type", "message")} == fx["expected"]["error"]
    assert [m.role for m in record.input_messages] == ["system", "user"]
    assert record.request_params.max_tokens == 128 and record.latency_ms == 50

    class OverloadedError(Exception):  # shaped like the anthropic SDK's APIStatusError
        __module__ = "anthropic"
        status_code = 529
        body = fx["error"]["body"]
        request_id = "req_011CSHoEeqs5C35K2UUqR7Fy"

        @property
        def message(self):
            return "Overloaded"

    guessed = record_error(fx["request"], OverloadedError())
    assert guessed.provider == "anthropic" and guessed.input_messages[0].role == "system"
    assert guessed.error["type"] == "overloaded_error" and guessed.error["status_code"] == 529
    assert guessed.provider_request_id == "req_011CSHoEeqs5C35K2UUqR7Fy"
