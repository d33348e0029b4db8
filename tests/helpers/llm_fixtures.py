"""Hand-written provider request/response fixtures (tests/fixtures/llm) and helpers to replay them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth_cli.tracing.models import LLMCallRecord, parse_datetime

LLM_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "llm"


def fixture_names(prefix: str = "") -> list[str]:
    return sorted(p.stem for p in LLM_FIXTURES.glob(f"{prefix}*.json"))


def load(name: str) -> dict[str, Any]:
    return json.loads((LLM_FIXTURES / f"{name}.json").read_text())


def times(fx: dict[str, Any]) -> dict[str, Any]:
    return {"started_at": parse_datetime(fx["started_at"]), "completed_at": parse_datetime(fx["completed_at"])}


def build(fx: dict[str, Any], *, streamed: bool = False) -> LLMCallRecord:
    """The record of a fixture: an error, a response, or (streamed=True) its stream."""
    from synth_cli.tracing import record as rec

    kw = times(fx)
    if "error" in fx and "response" not in fx:
        return rec.record_error(fx["request"], fx["error"]["body"], provider=fx["provider"], **kw)
    if fx["provider"] == "openai":
        if streamed:
            return rec.record_from_openai_chat_stream(fx["request"], fx["stream"], **kw)
        return rec.record_from_openai_chat(fx["request"], fx["response"], **kw)
    if streamed:
        return rec.record_from_anthropic_messages_stream(fx["request"], fx["stream"], **kw)
    return rec.record_from_anthropic_messages(fx["request"], fx["response"], **kw)


def openai_conversation(fx: dict[str, Any]) -> dict[str, Any]:
    """The original conversation of a fixture in OpenAI chat fine-tuning form.

    OpenAI fixtures: the request's messages plus the (first) choice's assistant message, and
    the request's tools; Anthropic fixtures carry theirs, written by hand, in `expected_openai`.
    """
    if "expected_openai" in fx:
        return fx["expected_openai"]
    request = fx["request"]
    message = fx["response"]["choices"][0]["message"]
    assistant = {"role": "assistant"}
    if message.get("content") is not None:
        assistant["content"] = message["content"]
    if message.get("tool_calls"):
        assistant["tool_calls"] = message["tool_calls"]
    out: dict[str, Any] = {"messages": [*request["messages"], assistant]}
    if request.get("tools"):
        out["tools"] = request["tools"]
    if "parallel_tool_calls" in request:
        out["parallel_tool_calls"] = request["parallel_tool_calls"]
    return out
