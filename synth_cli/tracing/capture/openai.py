"""Normalise vendor LLM calls into `LLMCallRecord`s.

* :func:`record_from_openai_chat` / :func:`record_from_openai_chat_stream`: OpenAI Chat
  Completions (and OpenAI-compatible servers), from a request dict and the response dict,
  the `openai` SDK object, or the streamed chunks.
* :func:`record_from_anthropic_messages` / :func:`record_from_anthropic_messages_stream`:
  the Anthropic Messages API (implemented in :mod:`synth_cli.tracing.capture.anthropic`).
* :func:`record_error`: a call that failed, with `outcome="error"` and `error={code, message, type}`.

How a record is shaped (the contract `filter` and the inspection commands read):

* `input_messages`: one `LLMMessage` per request message. Content parts: `text`; `image`
  (`uri` holds the URL, data URLs included; `mime_type` when known; `data={"detail": …}` when
  the request set one; Anthropic base64 images use `base64_data` + `mime_type`); `audio`;
  `refusal`; `thinking`; anything else keeps its type with the original item in `data`.
  Tool results are `role="tool"` messages with `tool_call_id`. An assistant history message
  that made tool calls carries them under the message's `tool_calls` key: a list of
  `ToolCallSpec` dicts (`name`, `arguments_json`, `arguments`, `call_id`, `index`), i.e.
  `LLMMessage.extra["tool_calls"]` in Python.
* Output: `output_messages` holds the (first) choice's assistant message (its text parts);
  its tool calls are `output_tool_calls` with `arguments_json` verbatim and `arguments` parsed.
  With `n > 1`, `outputs` holds every choice's message, each with its own `tool_calls` key
  and `metadata` `{"choice_index", "finish_reason"}`; `choice_index` is then 0.
* `request_params`: the common knobs as fields, `tool_choice` on the record, everything else
  the request sent (`tools`, `parallel_tool_calls`, `user`, `metadata`, `max_completion_tokens`…)
  in `raw_params`. Transport-only arguments (`stream`, `stream_options`, `extra_headers`,
  `extra_query`, `timeout`) are left out, so a streamed call and the same call unstreamed
  give equal records; `extra_body` is merged in (it is part of the request body).
* Times are naive UTC (aware datetimes are converted; naive ones are taken as UTC);
  `latency_ms` comes from `started_at`/`completed_at`.
* `call_id` is derived from the provider's response id (uuid5) when there is one, so the
  same response always gives the same record; otherwise a random uuid4.

This module never prints and imports no vendor SDK.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Iterable, Sequence

from synth_cli.tracing.capture._common import (
    StreamError,
    compact_json,
    data_url_mime,
    derive_call_id,
    latency_ms,
    maybe_int,
    naive_utc,
    parse_arguments,
    set_tool_calls,
    sse_payloads,
    text_part,
    to_plain,
)
from synth_cli.tracing.models import (
    LLMCallRecord,
    LLMChunk,
    LLMContentPart,
    LLMMessage,
    LLMRequestParams,
    LLMUsage,
    ToolCallSpec,
)

# Request keys that map to LLMRequestParams fields.
_PARAM_KEYS = ("temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty", "repetition_penalty",
               "seed", "n", "best_of", "response_format", "stop")
# SDK/transport arguments that are not part of the request body.
_TRANSPORT_KEYS = ("stream", "stream_options", "extra_headers", "extra_query", "extra_body", "timeout")



# --------------------------------------------------------------------------- OpenAI: request


def _openai_tool_call(item: dict, position: int) -> ToolCallSpec:
    kind = item.get("type") or "function"
    body = item.get(kind) if isinstance(item.get(kind), dict) else item.get("function") or {}
    arguments_json = body.get("arguments") if kind == "function" else body.get("input", body.get("arguments"))
    spec = ToolCallSpec(name=body.get("name") or "", arguments_json=arguments_json,
                        arguments=parse_arguments(arguments_json), call_id=item.get("id"),
                        index=item["index"] if item.get("index") is not None else position)
    if kind != "function":
        spec.metadata = {"type": kind}
    return spec


def _openai_part(item: Any) -> LLMContentPart:
    if isinstance(item, str):
        return text_part(item)
    if not isinstance(item, dict):
        return LLMContentPart(type="unknown", data=item)
    kind = item.get("type")
    if kind == "text":
        return text_part(item.get("text") or "")
    if kind == "image_url":
        image = item.get("image_url")
        image = {"url": image} if isinstance(image, str) else (image or {})
        url = image.get("url")
        part = LLMContentPart(type="image", uri=url, mime_type=data_url_mime(url))
        extra = {k: v for k, v in image.items() if k != "url" and v is not None}
        if extra:
            part.data = extra
        return part
    if kind == "input_audio":
        audio = item.get("input_audio") or {}
        fmt = audio.get("format")
        return LLMContentPart(type="audio", base64_data=audio.get("data"),
                              mime_type=f"audio/{fmt}" if fmt else None, data={"format": fmt} if fmt else None)
    if kind == "refusal":
        return LLMContentPart(type="refusal", text=item.get("refusal"))
    return LLMContentPart(type=str(kind or "unknown"), data=item)


def openai_message(raw: Any) -> LLMMessage:
    """One Chat Completions request message (dict or SDK object) as an `LLMMessage`."""
    m = raw if isinstance(raw, dict) else to_plain(raw)
    if not isinstance(m, dict):
        raise TypeError(f"a chat message must be an object, got {type(raw).__name__}")
    content = m.get("content")
    if content is None:
        parts: list[LLMContentPart] = []
    elif isinstance(content, str):
        parts = [text_part(content)]
    elif isinstance(content, list):
        parts = [_openai_part(item) for item in content]
    else:
        parts = [text_part(str(content))]
    if m.get("refusal"):
        parts.append(LLMContentPart(type="refusal", text=m["refusal"]))
    message = LLMMessage(role=m.get("role") or "user", parts=parts, name=m.get("name"),
                         tool_call_id=m.get("tool_call_id"))
    calls = [_openai_tool_call(tc, i) for i, tc in enumerate(m.get("tool_calls") or [])]
    if m.get("function_call"):  # legacy single function call
        fc = m["function_call"]
        calls.append(ToolCallSpec(name=fc.get("name") or "", arguments_json=fc.get("arguments"),
                                  arguments=parse_arguments(fc.get("arguments")), index=len(calls),
                                  metadata={"legacy_function_call": True}))
    set_tool_calls(message, calls)
    return message


def openai_request_params(request: dict) -> tuple[LLMRequestParams, Any, str]:
    """(request_params, tool_choice, model) of a Chat Completions request."""
    body = dict(request)
    extra_body = body.pop("extra_body", None)
    if isinstance(extra_body, dict):
        body.update(extra_body)
    for key in _TRANSPORT_KEYS:
        body.pop(key, None)
    model = body.pop("model", "") or ""
    body.pop("messages", None)
    tool_choice = body.pop("tool_choice", None)
    params = LLMRequestParams()
    for key in _PARAM_KEYS:
        if key in body:
            setattr(params, key, body.pop(key))
    if body.get("max_completion_tokens") is not None:
        params.max_tokens = body["max_completion_tokens"]  # kept in raw_params too: the name matters
        body.pop("max_tokens", None)
    elif "max_tokens" in body:
        params.max_tokens = body.pop("max_tokens")
    rf = params.response_format
    if isinstance(rf, dict) and rf.get("type") == "json_object":
        params.json_mode = True
    params.raw_params = {k: to_plain(v) for k, v in body.items() if v is not None}
    return params, to_plain(tool_choice), str(model)


# --------------------------------------------------------------------------- OpenAI: response


def _openai_usage(raw: Any) -> LLMUsage | None:
    u = to_plain(raw)
    if not isinstance(u, dict) or not u:
        return None
    prompt_details = u.get("prompt_tokens_details") or {}
    completion_details = u.get("completion_tokens_details") or {}
    usage = LLMUsage(
        input_tokens=maybe_int(u.get("prompt_tokens", u.get("input_tokens"))),
        output_tokens=maybe_int(u.get("completion_tokens", u.get("output_tokens"))),
        total_tokens=maybe_int(u.get("total_tokens")),
        cache_read_tokens=maybe_int(prompt_details.get("cached_tokens")),
        reasoning_tokens=maybe_int(completion_details.get("reasoning_tokens")),
    )
    if usage.total_tokens is None and (usage.input_tokens is not None or usage.output_tokens is not None):
        usage.total_tokens = (usage.input_tokens or 0) + (usage.output_tokens or 0)
    cost = u.get("cost")  # OpenAI-compatible routers (e.g. OpenRouter) report it
    if isinstance(cost, (int, float)) and not isinstance(cost, bool):
        usage.cost_usd = float(cost)
    return usage


def _openai_output(choice: dict) -> tuple[LLMMessage, list[ToolCallSpec]]:
    msg = choice.get("message") or {}
    parts: list[LLMContentPart] = []
    content = msg.get("content")
    if isinstance(content, str):
        if content:
            parts.append(text_part(content))
    elif isinstance(content, list):
        parts.extend(_openai_part(item) for item in content)
    if msg.get("refusal"):
        parts.append(LLMContentPart(type="refusal", text=msg["refusal"]))
    audio = msg.get("audio")
    if isinstance(audio, dict) and audio:
        parts.append(LLMContentPart(type="audio", base64_data=audio.get("data"), text=audio.get("transcript"),
                                    data={k: v for k, v in audio.items() if k not in ("data", "transcript")}))
    message = LLMMessage(role=msg.get("role") or "assistant", parts=parts)
    if msg.get("annotations"):
        message.metadata["annotations"] = msg["annotations"]
    calls = [_openai_tool_call(tc, i) for i, tc in enumerate(msg.get("tool_calls") or [])]
    if msg.get("function_call"):
        fc = msg["function_call"]
        calls.append(ToolCallSpec(name=fc.get("name") or "", arguments_json=fc.get("arguments"),
                                  arguments=parse_arguments(fc.get("arguments")), index=len(calls),
                                  metadata={"legacy_function_call": True}))
    return message, calls


def record_from_openai_chat(request: dict, response: Any, *, started_at: datetime | None = None,
                            completed_at: datetime | None = None, provider: str | None = None,
                            call_id: str | None = None, keep_raw: bool = False) -> LLMCallRecord:
    """One `LLMCallRecord` for a Chat Completions call (`response`: dict or `openai` SDK object).

    `provider` defaults to "openai" (set it for OpenAI-compatible servers, e.g. "vllm");
    `keep_raw` also stores the request and response JSON in `request_raw_json`/`response_raw_json`.
    """
    req = to_plain(request)
    if not isinstance(req, dict):
        raise TypeError("request must be a dict of Chat Completions parameters")
    resp = to_plain(response)
    if not isinstance(resp, dict):
        raise TypeError("response must be a Chat Completions response (dict or SDK object)")
    provider = provider or "openai"
    params, tool_choice, model = openai_request_params(req)
    started, completed = naive_utc(started_at), naive_utc(completed_at)
    record = LLMCallRecord(
        call_id=derive_call_id(provider, resp.get("id"), call_id),
        api_type="chat_completions",
        provider=provider,
        model_name=model or str(resp.get("model") or ""),
        started_at=started,
        completed_at=completed,
        latency_ms=latency_ms(started, completed),
        request_params=params,
        input_messages=[openai_message(m) for m in req.get("messages") or []],
        tool_choice=tool_choice,
        provider_request_id=resp.get("id"),
        outcome="success",
    )
    choices = sorted(resp.get("choices") or [], key=lambda c: c.get("index") or 0)
    if choices:
        message, calls = _openai_output(choices[0])
        record.output_messages = [message]
        record.output_tool_calls = calls
        record.finish_reason = choices[0].get("finish_reason")
        logprobs = choices[0].get("logprobs")
        if isinstance(logprobs, dict) and logprobs.get("content"):
            record.token_traces = logprobs["content"]
        if message.parts and any(p.type == "refusal" for p in message.parts):
            record.refusal = {"message": next(p.text for p in message.parts if p.type == "refusal")}
    if len(choices) > 1:
        record.choice_index = choices[0].get("index") or 0
        for choice in choices:
            message, calls = _openai_output(choice)
            set_tool_calls(message, calls)
            message.metadata = {**message.metadata, "choice_index": choice.get("index"),
                                "finish_reason": choice.get("finish_reason")}
            record.outputs.append(message)
    record.usage = _openai_usage(resp.get("usage"))
    for key in ("system_fingerprint", "service_tier"):
        if resp.get(key) is not None:
            record.metadata[key] = resp[key]
    response_model = resp.get("model")
    if response_model and response_model != record.model_name:
        record.metadata["response_model"] = response_model
    if keep_raw:
        record.request_raw_json = compact_json(req)
        record.response_raw_json = compact_json(resp)
    return record


# --------------------------------------------------------------------------- OpenAI: streaming


def collect_openai_stream(chunks: Iterable[Any], *, chunk_times: Sequence[Any] | None = None,
                          keep_chunks: bool = False) -> tuple[dict, list[LLMChunk]]:
    """Fold streamed `chat.completion.chunk`s into the equivalent non-streamed response dict."""
    response: dict[str, Any] = {}
    choices: dict[int, dict[str, Any]] = {}
    kept: list[LLMChunk] = []
    for seq, chunk in enumerate(sse_payloads(chunks)):
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk and not chunk.get("choices"):
            raise StreamError(chunk["error"])
        for key in ("id", "model", "system_fingerprint", "service_tier", "created"):
            if chunk.get(key) is not None:
                response[key] = chunk[key]
        if chunk.get("usage"):
            response["usage"] = chunk["usage"]
        first_delta_text = None
        first_tool_delta = None
        first_choice_index = None
        for ch in chunk.get("choices") or []:
            idx = ch.get("index") or 0
            if first_choice_index is None:
                first_choice_index = idx
            state = choices.setdefault(idx, {"index": idx, "role": None, "content": [], "refusal": [],
                                             "tool_calls": {}, "finish_reason": None, "logprobs": []})
            delta = ch.get("delta") or {}
            if delta.get("role"):
                state["role"] = delta["role"]
            if delta.get("content"):
                state["content"].append(delta["content"])
                if first_delta_text is None:
                    first_delta_text = delta["content"]
            if delta.get("refusal"):
                state["refusal"].append(delta["refusal"])
            for tc in delta.get("tool_calls") or []:
                tidx = tc.get("index", 0)
                slot = state["tool_calls"].setdefault(tidx, {"id": None, "type": None, "name": [], "arguments": []})
                if tc.get("id"):
                    slot["id"] = tc["id"]
                if tc.get("type"):
                    slot["type"] = tc["type"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["name"].append(fn["name"])
                if fn.get("arguments"):
                    slot["arguments"].append(fn["arguments"])
                if first_tool_delta is None:
                    first_tool_delta = ToolCallSpec(name=fn.get("name") or "", arguments_json=fn.get("arguments"),
                                                    call_id=tc.get("id"), index=tidx)
            if ch.get("finish_reason"):
                state["finish_reason"] = ch["finish_reason"]
            logprobs = ch.get("logprobs")
            if isinstance(logprobs, dict) and logprobs.get("content"):
                state["logprobs"].extend(logprobs["content"])
        if keep_chunks:
            kept.append(LLMChunk(
                sequence_index=seq,
                received_at=naive_utc(chunk_times[seq]) if chunk_times is not None and seq < len(chunk_times)
                else None,
                event_type=chunk.get("object") or "chat.completion.chunk",
                choice_index=first_choice_index,
                raw_json=compact_json(chunk),
                delta_text=first_delta_text,
                delta_tool_call=first_tool_delta,
                usage=_openai_usage(chunk.get("usage")) if chunk.get("usage") else None,
            ))
    response["object"] = "chat.completion"
    out_choices = []
    for idx in sorted(choices):
        state = choices[idx]
        message: dict[str, Any] = {"role": state["role"] or "assistant",
                                   "content": "".join(state["content"]) if state["content"] else None}
        if state["refusal"]:
            message["refusal"] = "".join(state["refusal"])
        if state["tool_calls"]:
            message["tool_calls"] = [
                {"id": slot["id"], "type": slot["type"] or "function",
                 "function": {"name": "".join(slot["name"]), "arguments": "".join(slot["arguments"])}}
                for _, slot in sorted(state["tool_calls"].items())]
        choice: dict[str, Any] = {"index": idx, "message": message, "finish_reason": state["finish_reason"]}
        if state["logprobs"]:
            choice["logprobs"] = {"content": state["logprobs"]}
        out_choices.append(choice)
    response["choices"] = out_choices
    return response, kept


def record_from_openai_chat_stream(request: dict, chunks: Iterable[Any], *, started_at: datetime | None = None,
                                   completed_at: datetime | None = None, provider: str | None = None,
                                   call_id: str | None = None, keep_chunks: bool = False,
                                   chunk_times: Sequence[Any] | None = None) -> LLMCallRecord:
    """The record of a streamed Chat Completions call, equal to the unstreamed one apart from `chunks`.

    `chunks`: dicts, `openai` SDK chunk objects or raw SSE text. Text deltas are joined, tool-call
    fragments joined by index, usage taken from the final chunk (`stream_options.include_usage`).
    `keep_chunks=True` keeps every chunk as an `LLMChunk` (with `received_at` from `chunk_times`).
    """
    response, kept = collect_openai_stream(chunks, chunk_times=chunk_times, keep_chunks=keep_chunks)
    record = record_from_openai_chat(request, response, started_at=started_at, completed_at=completed_at,
                                     provider=provider, call_id=call_id)
    if keep_chunks:
        record.chunks = kept
    return record
