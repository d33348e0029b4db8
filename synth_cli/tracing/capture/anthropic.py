"""Anthropic Messages API calls as `LLMCallRecord`s, normalised to the Chat Completions shape.

The record has the same shape as one from :func:`synth_cli.tracing.capture.openai.record_from_openai_chat`
(see that module for the contract), so `filter` and the inspection commands need no
provider-specific code:

* `system` (a string or text blocks) becomes a leading `system` message;
* content blocks: `text` → text parts; `image` → an `image` part (`base64_data` + `mime_type`,
  or `uri` for URL sources); `document` → a `document` part (source in `data`);
  `thinking`/`redacted_thinking` → a `thinking` part; an assistant `tool_use` block → a
  `ToolCallSpec` (`arguments` = its `input`, `arguments_json` = compact JSON of it,
  `call_id` = its id); `tool_result` blocks → `role="tool"` messages (with `tool_call_id`)
  placed before the rest of their user turn;
* `tools` are stored in `raw_params["tools"]` as Chat Completions function tools
  (`{"type": "function", "function": {"name", "description", "parameters"}}`); Anthropic
  server tools (web search…) go to `raw_params["server_tools"]`; `tool_choice` becomes
  "auto"/"required"/"none"/`{"type": "function", "function": {"name"}}` and
  `disable_parallel_tool_use` becomes `raw_params["parallel_tool_calls"] = False`;
* `stop_reason` maps to a Chat Completions `finish_reason` (`end_turn`/`stop_sequence` →
  stop, `max_tokens` → length, `tool_use` → tool_calls, `refusal` → content_filter); the
  original is kept in `metadata["stop_reason"]`;
* usage: `input_tokens` counts every prompt token, cached or not (input + cache writes +
  cache reads, the Chat Completions meaning), `cache_write_tokens` =
  `cache_creation_input_tokens`, `cache_read_tokens` = `cache_read_input_tokens`.

This module never prints and does not import the `anthropic` SDK.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from synth_cli.tracing.capture._common import (
    StreamError,
    compact_json,
    derive_call_id,
    latency_ms,
    naive_utc,
    set_tool_calls,
    sse_payloads,
    text_part,
    to_plain,
)
from synth_cli.tracing.models import (
    LLMCallRecord,
    LLMContentPart,
    LLMMessage,
    LLMRequestParams,
    LLMUsage,
    ToolCallSpec,
)

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_TRANSPORT_KEYS = ("stream", "extra_headers", "extra_query", "extra_body", "timeout")


def _tool_call(block: dict, index: int) -> ToolCallSpec:
    arguments = block.get("input")
    if arguments is None:
        arguments = {}
    return ToolCallSpec(name=block.get("name") or "", arguments_json=compact_json(arguments), arguments=arguments,
                        call_id=block.get("id"), index=index)


def _image_part(block: dict) -> LLMContentPart:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "base64":
        return LLMContentPart(type="image", base64_data=source.get("data"), mime_type=source.get("media_type"))
    if kind == "url":
        return LLMContentPart(type="image", uri=source.get("url"))
    return LLMContentPart(type="image", data=source)


def _result_parts(content: Any) -> list[LLMContentPart]:
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)]
    parts: list[LLMContentPart] = []
    for block in content:
        block = to_plain(block)
        if isinstance(block, dict) and block.get("type") == "text":
            parts.append(_text_block(block))
        elif isinstance(block, dict) and block.get("type") == "image":
            parts.append(_image_part(block))
        else:
            parts.append(LLMContentPart(type=str((block or {}).get("type") or "unknown"), data=block))
    return parts


def _text_block(block: dict) -> LLMContentPart:
    part = text_part(block.get("text") or "")
    if block.get("cache_control"):
        part.data = {"cache_control": block["cache_control"]}
    return part


def _content_part(block: dict) -> LLMContentPart:
    kind = block.get("type")
    if kind == "text":
        return _text_block(block)
    if kind == "image":
        return _image_part(block)
    if kind == "thinking":
        return LLMContentPart(type="thinking", text=block.get("thinking"),
                              data={"signature": block["signature"]} if block.get("signature") else None)
    if kind == "redacted_thinking":
        return LLMContentPart(type="thinking", data={"redacted": block.get("data")})
    if kind == "document":
        return LLMContentPart(type="document", data=block.get("source"))
    return LLMContentPart(type=str(kind or "unknown"), data=block)


def anthropic_messages(request_messages: Iterable[Any]) -> list[LLMMessage]:
    """Anthropic request messages as `LLMMessage`s (tool results split out as tool messages)."""
    out: list[LLMMessage] = []
    for raw in request_messages:
        m = to_plain(raw)
        role = m.get("role") or "user"
        content = m.get("content")
        if isinstance(content, str):
            out.append(LLMMessage(role=role, parts=[text_part(content)]))
            continue
        parts: list[LLMContentPart] = []
        calls: list[ToolCallSpec] = []
        for block in content or []:
            block = to_plain(block)
            if isinstance(block, str):
                parts.append(text_part(block))
                continue
            kind = block.get("type")
            if kind == "tool_result":
                tool = LLMMessage(role="tool", parts=_result_parts(block.get("content")),
                                  tool_call_id=block.get("tool_use_id"))
                if block.get("is_error"):
                    tool.metadata["is_error"] = True
                out.append(tool)
            elif kind == "tool_use":
                calls.append(_tool_call(block, len(calls)))
            else:
                parts.append(_content_part(block))
        if parts or calls:
            message = LLMMessage(role=role, parts=parts)
            set_tool_calls(message, calls)
            out.append(message)
    return out


def _system_message(system: Any) -> LLMMessage | None:
    if system is None or system == "" or system == []:
        return None
    if isinstance(system, str):
        return LLMMessage(role="system", parts=[text_part(system)])
    parts = []
    for block in system:
        block = to_plain(block)
        parts.append(_content_part(block))
    return LLMMessage(role="system", parts=parts)


def _tools(tools: list[dict]) -> tuple[list[dict], list[dict]]:
    functions, server = [], []
    for tool in tools:
        tool = to_plain(tool)
        if tool.get("type") in (None, "custom") and "input_schema" in tool:
            fn: dict[str, Any] = {"name": tool.get("name")}
            if tool.get("description") is not None:
                fn["description"] = tool["description"]
            fn["parameters"] = tool.get("input_schema")
            functions.append({"type": "function", "function": fn})
        else:
            server.append(tool)
    return functions, server


def _tool_choice(choice: Any) -> tuple[Any, bool | None]:
    """(Chat Completions tool_choice, parallel_tool_calls) for an Anthropic tool_choice."""
    choice = to_plain(choice)
    if choice is None:
        return None, None
    if not isinstance(choice, dict):
        return choice, None
    kind = choice.get("type")
    parallel = False if choice.get("disable_parallel_tool_use") else None
    if kind == "auto":
        return "auto", parallel
    if kind == "any":
        return "required", parallel
    if kind == "none":
        return "none", parallel
    if kind == "tool":
        return {"type": "function", "function": {"name": choice.get("name")}}, parallel
    return choice, parallel


def anthropic_request(request: dict) -> tuple[LLMRequestParams, Any, str, list[LLMMessage]]:
    """(request_params, tool_choice, model, input_messages) of a Messages API request."""
    body = dict(to_plain(request))
    extra_body = body.pop("extra_body", None)
    if isinstance(extra_body, dict):
        body.update(extra_body)
    for key in _TRANSPORT_KEYS:
        body.pop(key, None)
    model = str(body.pop("model", "") or "")
    messages = anthropic_messages(body.pop("messages", None) or [])
    system = _system_message(body.pop("system", None))
    if system is not None:
        messages.insert(0, system)
    params = LLMRequestParams(
        temperature=body.pop("temperature", None),
        top_p=body.pop("top_p", None),
        top_k=body.pop("top_k", None),
        max_tokens=body.pop("max_tokens", None),
        stop=body.pop("stop_sequences", None),
    )
    tool_choice, parallel = _tool_choice(body.pop("tool_choice", None))
    if body.get("tools"):
        functions, server = _tools(body.pop("tools"))
        if functions:
            body["tools"] = functions
        if server:
            body["server_tools"] = server
    else:
        body.pop("tools", None)
    if parallel is not None:
        body["parallel_tool_calls"] = parallel
    params.raw_params = {k: to_plain(v) for k, v in body.items() if v is not None}
    return params, tool_choice, model, messages


def _usage(raw: Any) -> LLMUsage | None:
    u = to_plain(raw)
    if not isinstance(u, dict) or not u:
        return None
    fresh = u.get("input_tokens")
    writes = u.get("cache_creation_input_tokens")
    reads = u.get("cache_read_input_tokens")
    output = u.get("output_tokens")
    total_in = None
    if fresh is not None or writes is not None or reads is not None:
        total_in = (fresh or 0) + (writes or 0) + (reads or 0)
    usage = LLMUsage(input_tokens=total_in, output_tokens=output, cache_write_tokens=writes,
                     cache_read_tokens=reads)
    if total_in is not None or output is not None:
        usage.total_tokens = (total_in or 0) + (output or 0)
    return usage


def record_from_anthropic_messages(request: dict, response: Any, *, started_at: datetime | None = None,
                                   completed_at: datetime | None = None, call_id: str | None = None,
                                   provider: str | None = None, keep_raw: bool = False) -> LLMCallRecord:
    """One `LLMCallRecord` for a Messages API call (`response`: dict or `anthropic` SDK object)."""
    req = to_plain(request)
    resp = to_plain(response)
    if not isinstance(req, dict) or not isinstance(resp, dict):
        raise TypeError("request and response must be Messages API objects (dicts or SDK objects)")
    provider = provider or "anthropic"
    params, tool_choice, model, messages = anthropic_request(req)
    started, completed = naive_utc(started_at), naive_utc(completed_at)
    parts: list[LLMContentPart] = []
    calls: list[ToolCallSpec] = []
    for block in resp.get("content") or []:
        block = to_plain(block)
        if block.get("type") == "tool_use":
            calls.append(_tool_call(block, len(calls)))
        else:
            parts.append(_content_part(block))
    stop_reason = resp.get("stop_reason")
    record = LLMCallRecord(
        call_id=derive_call_id(provider, resp.get("id"), call_id),
        api_type="chat_completions",
        provider=provider,
        model_name=model or str(resp.get("model") or ""),
        started_at=started,
        completed_at=completed,
        latency_ms=latency_ms(started, completed),
        request_params=params,
        input_messages=messages,
        tool_choice=tool_choice,
        output_messages=[LLMMessage(role=resp.get("role") or "assistant", parts=parts)],
        output_tool_calls=calls,
        usage=_usage(resp.get("usage")),
        finish_reason=STOP_REASONS.get(stop_reason, stop_reason),
        provider_request_id=resp.get("id"),
        outcome="success",
        metadata={"source_api": "anthropic.messages"},
    )
    if stop_reason is not None:
        record.metadata["stop_reason"] = stop_reason
    if resp.get("stop_sequence"):
        record.metadata["stop_sequence"] = resp["stop_sequence"]
    response_model = resp.get("model")
    if response_model and response_model != record.model_name:
        record.metadata["response_model"] = response_model
    if stop_reason == "refusal":
        record.refusal = {"stop_reason": stop_reason}
    if keep_raw:
        record.request_raw_json = compact_json(req)
        record.response_raw_json = compact_json(resp)
    return record


def _stream_events(events: Iterable[Any]) -> Iterable[dict]:
    """Event dicts from dicts, SDK event objects, or raw SSE text (`event:`/`data:` lines)."""
    return (event for event in sse_payloads(events) if isinstance(event, dict))


def collect_anthropic_stream(events: Iterable[Any]) -> dict:
    """Fold Messages API stream events into the equivalent non-streamed response."""
    message: dict[str, Any] = {}
    blocks: dict[int, dict[str, Any]] = {}
    partial_json: dict[int, list[str]] = {}
    for event in _stream_events(events):
        kind = event.get("type")
        if kind == "message_start":
            message = dict(event.get("message") or {})
            message["usage"] = dict(message.get("usage") or {})
        elif kind == "content_block_start":
            index = event.get("index", len(blocks))
            blocks[index] = dict(event.get("content_block") or {})
            if blocks[index].get("type") == "tool_use":
                partial_json[index] = []
        elif kind == "content_block_delta":
            index = event.get("index", 0)
            block = blocks.setdefault(index, {"type": "text", "text": ""})
            delta = event.get("delta") or {}
            dtype = delta.get("type")
            if dtype == "text_delta":
                block["text"] = (block.get("text") or "") + (delta.get("text") or "")
            elif dtype == "input_json_delta":
                partial_json.setdefault(index, []).append(delta.get("partial_json") or "")
            elif dtype == "thinking_delta":
                block["thinking"] = (block.get("thinking") or "") + (delta.get("thinking") or "")
            elif dtype == "signature_delta":
                block["signature"] = (block.get("signature") or "") + (delta.get("signature") or "")
        elif kind == "message_delta":
            delta = event.get("delta") or {}
            for key in ("stop_reason", "stop_sequence"):
                if key in delta:
                    message[key] = delta[key]
            usage = event.get("usage") or {}
            message.setdefault("usage", {}).update({k: v for k, v in usage.items() if v is not None})
        elif kind == "error":
            raise StreamError(event.get("error") or {})
    for index, pieces in partial_json.items():
        text = "".join(pieces)
        if text.strip():
            blocks[index]["input"] = json.loads(text)
        elif blocks[index].get("input") is None:
            blocks[index]["input"] = {}
    message["content"] = [blocks[i] for i in sorted(blocks)]
    return message


def record_from_anthropic_messages_stream(request: dict, events: Iterable[Any], *,
                                          started_at: datetime | None = None, completed_at: datetime | None = None,
                                          call_id: str | None = None, provider: str | None = None) -> LLMCallRecord:
    """The record of a streamed Messages API call (events: dicts, SDK events or raw SSE text);
    equal to the record of the same response unstreamed."""
    response = collect_anthropic_stream(events)
    return record_from_anthropic_messages(request, response, started_at=started_at, completed_at=completed_at,
                                          call_id=call_id, provider=provider)


__all__ = [
    "STOP_REASONS",
    "anthropic_messages",
    "anthropic_request",
    "collect_anthropic_stream",
    "record_from_anthropic_messages",
    "record_from_anthropic_messages_stream",
]
