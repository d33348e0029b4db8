"""LLM call records → OpenAI chat fine-tuning examples.

This is the one place that knows how an `LLMCallRecord` (schema_version 1.0, as
stored in `events.call_records` and shaped by :mod:`synth_cli.tracing.record`)
maps to the OpenAI chat format. It works on the plain dicts parsed from the
stored JSON, so the hot path of `filter` builds no dataclasses; use
:func:`record_to_dict` for an `LLMCallRecord` object.

Rules:

* A message with one text part gets that text as its string `content`; several
  representable parts become a content list (`{"type": "text", "text": …}` and
  `{"type": "image_url", "image_url": {"url", ["detail"]}}` parts), never joined.
* Images (`uri`, or `base64_data` + `mime_type` → a data URL) are `image_url` parts,
  in user messages only (the fine-tuning format has no images elsewhere).
* `role: tool` keeps `tool_call_id`; a message's `name` is kept; an assistant
  history message's `tool_calls` (ToolCallSpec dicts) become OpenAI tool calls, a
  legacy function call becomes `function_call`.
* A tool call without a call id gets a deterministic one, `call_synth_<message>_<n>`
  (position of its message in the conversation and of the call in the message), so
  the same conversation always converts to the same bytes.
* The output (first `output_messages` entry, else `output_text`, plus
  `output_tool_calls`) is the final assistant message.
* What has no representation in the fine-tuning format (audio, refusal,
  thinking, documents, extra choices of an n>1 call, unknown roles…) is counted by
  kind in the `skipped` counter the caller passes in; nothing is dropped silently.

This module never prints and never touches a database.
"""

from __future__ import annotations

from typing import Any, MutableMapping

from synth_cli._json import dumps

ROLES = frozenset(("system", "user", "assistant", "tool"))
#: roles with an equivalent in the fine-tuning format.
ROLE_ALIASES = {"developer": "system", "human": "user", "ai": "assistant", "model": "assistant"}
TEXT_TYPES = frozenset(("text", "input_text", "output_text"))
IMAGE_TYPES = frozenset(("image", "image_url", "input_image"))
IMAGE_DETAILS = frozenset(("low", "high", "auto"))
SUCCESS_OUTCOMES = (None, "", "success")

Skipped = MutableMapping[str, int]


def count_skipped(skipped: Skipped, kind: str, n: int = 1) -> None:
    skipped[kind] = skipped.get(kind, 0) + n


# --------------------------------------------------------------------------- parts


def _image_url(part: dict) -> dict | None:
    url = part.get("uri")
    if not url:
        b64 = part.get("base64_data")
        if b64:
            url = f"data:{part.get('mime_type') or 'image/png'};base64,{b64}"
    data = part.get("data")
    if not url and isinstance(data, dict):
        if data.get("type") == "base64" and isinstance(data.get("data"), str):
            # an Anthropic image source, as the published helper stores it (media type alongside)
            url = f"data:{data.get('media_type') or part.get('mime_type') or 'image/png'};base64,{data['data']}"
        elif data.get("type") == "url" and isinstance(data.get("url"), str):
            url = data["url"]  # an Anthropic URL image source
        else:  # a raw OpenAI part kept as data
            inner = data.get("image_url")
            url = inner.get("url") if isinstance(inner, dict) else inner
    if not url or not isinstance(url, str):
        return None
    image: dict[str, Any] = {"url": url}
    if isinstance(data, dict):
        detail = data.get("detail")
        if detail is None and isinstance(data.get("image_url"), dict):
            detail = data["image_url"].get("detail")
        if detail in IMAGE_DETAILS:
            image["detail"] = detail
    return {"type": "image_url", "image_url": image}


def convert_content(parts: Any, role: str, skipped: Skipped) -> str | list | None:
    """The `content` of a message from its parts: a string, a list of parts, or None (no parts)."""
    if not parts:
        return None
    if type(parts) is not list:
        raise TypeError("message parts is not a list")
    if len(parts) == 1:  # the common case: one text part
        part = parts[0]
        if isinstance(part, dict) and part.get("type") in TEXT_TYPES:
            text = part.get("text")
            return text if isinstance(text, str) else ""
    out: list[dict] = []
    for part in parts:
        if isinstance(part, str):
            out.append({"type": "text", "text": part})
            continue
        if not isinstance(part, dict):
            count_skipped(skipped, "unknown_part")
            continue
        kind = part.get("type")
        if kind in TEXT_TYPES:
            text = part.get("text")
            out.append({"type": "text", "text": text if isinstance(text, str) else ""})
        elif kind in IMAGE_TYPES:
            if role != "user":
                count_skipped(skipped, f"image_in_{role}_message")
                continue
            image = _image_url(part)
            if image is None:
                count_skipped(skipped, "image_without_data")
            else:
                out.append(image)
        else:
            count_skipped(skipped, str(kind or "unknown_part"))
    if not out:
        return None
    if len(out) == 1 and out[0]["type"] == "text":
        return out[0]["text"]
    return out


# --------------------------------------------------------------------------- tool calls


def convert_tool_call(tc: dict, message_index: int, position: int) -> dict:
    """A ToolCallSpec dict as an OpenAI tool call (`function` type unless the record says otherwise)."""
    call_id = tc.get("call_id") or f"call_synth_{message_index}_{position}"
    arguments = tc.get("arguments_json")
    if not isinstance(arguments, str):
        parsed = tc.get("arguments")
        arguments = "{}" if parsed is None else (parsed if isinstance(parsed, str) else dumps(parsed))
    metadata = tc.get("metadata")
    kind = metadata.get("type") if isinstance(metadata, dict) else None
    if kind and kind != "function":  # e.g. an OpenAI custom tool: keep its own shape
        return {"id": call_id, "type": kind, kind: {"name": tc.get("name") or "", "input": arguments}}
    return {"id": call_id, "type": "function", "function": {"name": tc.get("name") or "", "arguments": arguments}}


def _finish_message(out: dict, content: Any, calls: Any, message_index: int) -> dict:
    """Add content, then tool calls (a legacy function call as `function_call`) to `out`."""
    tool_calls = []
    function_call = None
    if calls:
        for position, tc in enumerate(calls):
            if not isinstance(tc, dict):
                continue
            metadata = tc.get("metadata")
            if isinstance(metadata, dict) and metadata.get("legacy_function_call"):
                function_call = convert_tool_call(tc, message_index, position)["function"]
            else:
                tool_calls.append(convert_tool_call(tc, message_index, position))
    if content is not None:
        out["content"] = content
    elif not tool_calls and function_call is None:
        out["content"] = ""
    if tool_calls:
        out["tool_calls"] = tool_calls
    if function_call is not None:
        out["function_call"] = function_call
    return out


# --------------------------------------------------------------------------- messages


def convert_message(m: dict, index: int, skipped: Skipped) -> dict | None:
    """One `LLMMessage` dict (at position `index` of its conversation) as an OpenAI message.

    None when the role has no equivalent (counted in `skipped` as `role:<name>`).
    """
    role = m.get("role")
    if role not in ROLES:
        alias = ROLE_ALIASES.get(role)  # type: ignore[arg-type]
        if alias is None:
            count_skipped(skipped, f"role:{role}")
            return None
        role = alias
    parts = m.get("parts")
    # Fast path: one text part (nearly every message of an agent trace).
    if parts and len(parts) == 1 and type(parts[0]) is dict and parts[0].get("type") == "text":
        text = parts[0].get("text")
        content: Any = text if isinstance(text, str) else ""
    else:
        content = convert_content(parts, role, skipped)
    out: dict[str, Any] = {"role": role}
    name = m.get("name")
    if name:
        out["name"] = name
    if role == "tool":
        tool_call_id = m.get("tool_call_id")
        if tool_call_id:
            out["tool_call_id"] = tool_call_id
    return _finish_message(out, content, m.get("tool_calls") if role == "assistant" else None, index)


def convert_output(record: dict, index: int, skipped: Skipped) -> dict | None:
    """The call's output as the final assistant message; None when it produced nothing."""
    outputs = record.get("output_messages") or []
    first = None
    for m in outputs:
        if isinstance(m, dict) and m.get("role", "assistant") in ("assistant", "model", "ai"):
            first = m
            break
    extra = len(outputs) - (1 if first is not None else 0)
    if extra > 0:
        count_skipped(skipped, "output_message", extra)
    choices = record.get("outputs")
    if choices and len(choices) > 1:
        count_skipped(skipped, "extra_choice", len(choices) - 1)
    out: dict[str, Any] = {"role": "assistant"}
    content: Any = None
    if first is not None:
        if first.get("name"):
            out["name"] = first["name"]
        content = convert_content(first.get("parts"), "assistant", skipped)
    if content is None or content == "":
        text = record.get("output_text")
        content = text if isinstance(text, str) and text else None
    calls = record.get("output_tool_calls")
    if not calls and first is not None:
        calls = first.get("tool_calls")
    if not calls and record.get("chunks"):
        calls = stream_tool_calls(record["chunks"])
    _finish_message(out, content, calls, index)
    if out.get("content") == "" and content is None:
        return None  # neither text nor tool calls: nothing to learn from
    return out


def stream_tool_calls(chunks: Any) -> list[dict]:
    """The tool calls of a streamed chat completion, rebuilt from its stored chunks' raw JSON.

    The published helper keeps only a stream's text (`delta_text`); the tool-call deltas
    (`choices[0].delta.tool_calls`: id and name first, arguments in pieces, keyed by index)
    are in each chunk's `raw_json`. ToolCallSpec dicts in index order; [] when none.
    """
    from synth_cli._json import loads

    calls: dict[int, dict] = {}
    if not isinstance(chunks, list):
        return []
    for chunk in chunks:
        raw = chunk.get("raw_json") if isinstance(chunk, dict) else None
        if not isinstance(raw, str) or "tool_calls" not in raw:
            continue
        try:
            choices = loads(raw).get("choices") or []
        except (ValueError, AttributeError):
            continue
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            for tc in delta.get("tool_calls") or ():
                if not isinstance(tc, dict):
                    continue
                slot = calls.setdefault(int(tc.get("index") or 0), {"name": "", "arguments_json": "", "call_id": None})
                if tc.get("id"):
                    slot["call_id"] = tc["id"]
                fn = tc.get("function") or {}
                if fn.get("name"):
                    slot["name"] = fn["name"]
                if isinstance(fn.get("arguments"), str):
                    slot["arguments_json"] += fn["arguments"]
    return [calls[i] for i in sorted(calls)]


def _normalise_tool(tool: Any) -> Any:
    """A flat tool spec (Anthropic's `input_schema` one, or the Responses API's
    `{"type": "function", "name", "parameters"}`) as a chat-completions function tool."""
    if isinstance(tool, dict) and tool.get("type") in (None, "function") and tool.get("name") \
            and "function" not in tool:
        fn = {"name": tool["name"]}
        if tool.get("description") is not None:
            fn["description"] = tool["description"]
        params = tool.get("parameters", tool.get("input_schema"))
        if params is not None:
            fn["parameters"] = params
        if isinstance(tool.get("strict"), bool):
            fn["strict"] = tool["strict"]
        return {"type": "function", "function": fn}
    return tool


def convert_tools(record: dict) -> tuple[list | None, bool | None]:
    """(tools, parallel_tool_calls) offered by the call: `raw_params.tools` or `tool_config`."""
    params = record.get("request_params") or {}
    raw = params.get("raw_params") or {}
    tools = raw.get("tools")
    parallel = raw.get("parallel_tool_calls")
    if not tools:
        config = params.get("tool_config")
        if isinstance(config, list):
            tools = config
        elif isinstance(config, dict):
            tools = config.get("tools")
            if parallel is None:
                parallel = config.get("parallel_tool_calls")
    if tools and isinstance(tools, list):
        if not all(type(t) is dict and t.get("type") == "function" and "function" in t for t in tools):
            tools = [_normalise_tool(t) for t in tools]
    else:
        tools = None
    return tools, parallel if isinstance(parallel, bool) else None


# --------------------------------------------------------------------------- calls


def call_succeeded(record: dict) -> bool:
    return record.get("outcome") in SUCCESS_OUTCOMES


PLAIN_ROLES = frozenset(("system", "user", "assistant"))


def convert_inputs(record: dict, skipped: Skipped) -> list[dict]:
    return _convert_inputs(record, skipped)[0]


def convert_input(m: Any, index: int, skipped: Skipped) -> dict | None:
    """One input message (at position `index` of the call's `input_messages`) as `convert_inputs`
    converts it: None when its role has no equivalent; TypeError when it is not an object.

    Pure: the same message at the same position always gives an equal result and the same
    counts in `skipped` (which is what lets :mod:`synth_cli.dataset.history` convert each
    history message of a session once).
    """
    # Fast path of convert_message: a system/user/assistant message with one text part, no
    # name and no tool calls (nearly every history message of an agent trace).
    try:
        role = m["role"]
        parts = m["parts"]
        if role in PLAIN_ROLES and len(parts) == 1 and not m.get("name") and not m.get("tool_calls"):
            part = parts[0]
            if part["type"] == "text":
                text = part["text"]
                return {"role": role, "content": text if type(text) is str else ""}
    except (KeyError, TypeError, IndexError):
        pass  # not the common shape: the general converter decides
    if type(m) is not dict:
        raise TypeError("input message is not an object")
    return convert_message(m, index, skipped)


def _convert_inputs(record: dict, skipped: Skipped) -> tuple[list[dict], bool]:
    """(input messages, whether any is a tool message)."""
    messages = record.get("input_messages")
    if not messages:
        return [], False
    tool = False
    out = []
    append = out.append
    for i, m in enumerate(messages):
        converted = convert_input(m, i, skipped)
        if converted is not None:
            append(converted)
            if converted["role"] == "tool":
                tool = True
    return out, tool


class ConvertedCall:
    """One call record converted: its input messages, output message and tools."""

    __slots__ = ("inputs", "output", "tools", "parallel", "call_id", "model", "tool_inputs", "restored")

    def __init__(self, inputs: list[dict], output: dict | None, tools: list | None, parallel: bool | None,
                 call_id: str | None, model: str | None, tool_inputs: bool = False):
        self.inputs = inputs
        self.tool_inputs = tool_inputs  # some input message is a tool result
        self.restored = 0  # assistant history turns whose tool calls were restored (ToolCallHistory)
        self.output = output
        self.tools = tools
        self.parallel = parallel
        self.call_id = call_id
        self.model = model


def convert_call(record: dict, skipped: Skipped) -> ConvertedCall:
    """Convert one call record dict. Raises TypeError/AttributeError/KeyError when malformed."""
    if type(record) is not dict:
        raise TypeError("call record is not an object")
    inputs, tool_inputs = _convert_inputs(record, skipped)
    output = convert_output(record, len(inputs), skipped)
    tools, parallel = convert_tools(record)
    return ConvertedCall(inputs, output, tools, parallel, record.get("call_id"), record.get("model_name"),
                         tool_inputs)


class ToolCallHistory:
    """One session's tool calls so far, from its call records' outputs, to repair histories.

    The published tracer's `LLMMessage` has no field for an assistant's tool calls, and its
    helper drops the tool messages' `tool_call_id` too: in a stored history the assistant
    turns that called tools come back as text only, and the `role: tool` results after them
    answer nothing. The same calls are in the session's earlier records
    (`output_tool_calls`), under the same ids. :meth:`restore` puts them back:

    * an assistant history message without tool calls, followed by tool messages, gets the
      tool calls of the earlier output that holds the tool messages' ids (by call id); when
      the tool messages carry no ids, of the next earlier output (in session order) with the
      same text and as many tool calls as there are tool messages, whose ids the tool
      messages then get, in order;
    * nothing else changes; when no earlier record holds the calls, the history stays as
      stored (and the example fails validation with its reason).

    Feed the session's calls in order: :meth:`restore` a call's inputs, then :meth:`add` its output.
    """

    __slots__ = ("by_id", "turns")

    def __init__(self) -> None:
        self.by_id: dict[str, int] = {}
        self.turns: list[tuple[dict, list]] = []  # (output without tool calls, its tool calls)

    def add(self, output: dict | None) -> None:
        calls = output.get("tool_calls") if output is not None else None
        if not calls:
            return
        self.turns.append((_bare(output), calls))  # type: ignore[arg-type]
        n = len(self.turns) - 1
        for c in calls:
            if isinstance(c, dict) and isinstance(c.get("id"), str):
                self.by_id.setdefault(c["id"], n)

    def restore(self, call: ConvertedCall) -> None:
        if not call.tool_inputs or not self.turns:
            return
        inputs = call.inputs
        pointer = 0
        i = 0
        n = len(inputs)
        while i < n:
            m = inputs[i]
            if m.get("role") != "assistant" or "tool_calls" in m or "function_call" in m \
                    or i + 1 >= n or inputs[i + 1].get("role") != "tool":
                i += 1
                continue
            j = i + 1
            while j < n and inputs[j].get("role") == "tool":
                j += 1
            results = inputs[i + 1:j]
            ids = [r.get("tool_call_id") for r in results]
            found = None
            known = [x for x in ids if x]
            if known:
                turn = self.by_id.get(known[0])
                if turn is not None:
                    have = {c.get("id") for c in self.turns[turn][1]}
                    if all(x in have for x in known) and len(results) <= len(have):
                        found = turn
            else:
                bare = _bare(m)
                for turn in range(pointer, len(self.turns)):
                    text, calls = self.turns[turn]
                    if len(calls) == len(results) and text == bare:
                        found = turn
                        break
            if found is not None:
                calls = self.turns[found][1]
                inputs[i] = {**m, "tool_calls": [dict(c) for c in calls]}
                if not known:
                    for r, c in zip(results, calls):
                        r["tool_call_id"] = c["id"]
                pointer = found + 1
                call.restored += 1
            i = j


def example_of(call: ConvertedCall) -> dict | None:
    """The calls-mode example: inputs + output (+ tools, parallel_tool_calls); None without output."""
    if call.output is None:
        return None
    example: dict[str, Any] = {"messages": [*call.inputs, call.output]}
    if call.tools:
        example["tools"] = call.tools
    if call.parallel is not None:
        example["parallel_tool_calls"] = call.parallel
    return example


def record_to_dict(record: Any) -> dict:
    """An `LLMCallRecord` (or anything with `to_dict`) as the dict the converters take."""
    return record.to_dict() if hasattr(record, "to_dict") else record


def convert_record(record: Any, skipped: Skipped | None = None) -> dict | None:
    """Convenience: one record (dataclass or dict) → its calls-mode example."""
    return example_of(convert_call(record_to_dict(record), {} if skipped is None else skipped))


# --------------------------------------------------------------------------- sessions


def _bare(message: dict) -> dict:
    """An assistant message without tool calls and with "no text" spelled one way."""
    out = {k: v for k, v in message.items() if k not in ("tool_calls", "function_call")}
    if out.get("content") in (None, ""):
        out.pop("content", None)
    return out


def same_turn(history: dict, output: dict) -> bool:
    """Does a history message (next call's input) stand for this call's output?

    Agents often keep only the text of their own replies in the history they send
    back, so a history message that equals the output without its tool calls matches.
    """
    if history == output:
        return True
    if history.get("role") != "assistant" or output.get("role") != "assistant":
        return False
    if "tool_calls" in history and history["tool_calls"] != output.get("tool_calls"):
        return False
    if "function_call" in history and history["function_call"] != output.get("function_call"):
        return False
    return _bare(history) == _bare(output)


class ConversationMerger:
    """Sessions mode: merge consecutive calls while each continues the previous one.

    Feed a session's calls in order with :meth:`add`; it returns a finished
    conversation when the chain breaks: the next call's input does not begin with
    the previous call's input plus its output, or its tools conflict with the
    chain's (a same-named tool with another definition, or the opposite
    `parallel_tool_calls`). Call :meth:`finish` at the end of the session.

    The merged conversation keeps each call's actual output (with its tool calls)
    where the history has only its text, and offers the union of the tools the
    chain's calls offered (an agent may offer tools on some turns only).
    """

    __slots__ = ("messages", "prev_inputs", "prev_output", "tools", "parallel", "last", "calls")

    def __init__(self) -> None:
        self.messages: list[dict] | None = None
        self.prev_inputs: list[dict] = []
        self.prev_output: dict | None = None
        self.tools: list | None = None
        self.parallel: bool | None = None
        self.last: Any = None
        self.calls = 0

    def _merge_tools(self, call: ConvertedCall) -> list | None | bool:
        """The chain's tools with this call's added; False when they conflict (same name, other spec)."""
        if not call.tools or call.tools == self.tools:
            return self.tools
        if not self.tools:
            return call.tools
        merged = list(self.tools)
        by_name = {_tool_name(t): t for t in merged}
        for tool in call.tools:
            name = _tool_name(tool)
            if name in by_name:
                if by_name[name] != tool:
                    return False
                continue
            by_name[name] = tool
            merged.append(tool)
        return merged

    def _continues(self, call: ConvertedCall) -> bool:
        if self.messages is None or self.prev_output is None:
            return False
        if call.parallel is not None and self.parallel is not None and call.parallel != self.parallel:
            return False
        n = len(self.prev_inputs)
        inputs = call.inputs
        if len(inputs) <= n:
            return False
        if inputs[:n] != self.prev_inputs:
            return False
        return same_turn(inputs[n], self.prev_output)

    def add(self, call: ConvertedCall, info: Any = None) -> tuple[dict, Any] | None:
        """Add a converted call (with an output); returns (finished example, its info) or None."""
        if call.output is None:
            return None
        finished = None
        tools = self._merge_tools(call) if self.messages is not None else False
        if tools is not False and self._continues(call):
            n = len(self.prev_inputs)
            assert self.messages is not None
            self.messages.extend(call.inputs[n + 1:])
            self.messages.append(call.output)
            self.tools = tools  # type: ignore[assignment]
            if self.parallel is None:
                self.parallel = call.parallel
        else:
            finished = self.finish()
            self.messages = [*call.inputs, call.output]
            self.tools, self.parallel = call.tools, call.parallel
        self.prev_inputs = call.inputs
        self.prev_output = call.output
        self.last = info
        self.calls += 1
        return finished

    def finish(self) -> tuple[dict, Any] | None:
        if self.messages is None:
            return None
        example: dict[str, Any] = {"messages": self.messages}
        if self.tools:
            example["tools"] = self.tools
        if self.parallel is not None:
            example["parallel_tool_calls"] = self.parallel
        result = (example, self.last)
        self.messages = None
        self.prev_inputs = []
        self.prev_output = None
        self.tools = self.parallel = self.last = None
        self.calls = 0
        return result


def _tool_name(tool: Any) -> Any:
    if isinstance(tool, dict):
        fn = tool.get("function")
        if isinstance(fn, dict):
            return fn.get("name")
        return tool.get("name")
    return None


def has_tool_calls(example: dict) -> bool:
    for m in example["messages"]:
        if m.get("role") == "assistant" and (m.get("tool_calls") or m.get("function_call")):
            return True
    return False


def final_has_tool_calls(example: dict) -> bool:
    last = example["messages"][-1]
    return bool(last.get("tool_calls") or last.get("function_call"))


__all__ = [
    "ConversationMerger",
    "ConvertedCall",
    "ToolCallHistory",
    "call_succeeded",
    "convert_call",
    "convert_content",
    "convert_input",
    "convert_message",
    "convert_output",
    "convert_record",
    "convert_tool_call",
    "convert_tools",
    "example_of",
    "has_tool_calls",
    "same_turn",
    "stream_tool_calls",
]
