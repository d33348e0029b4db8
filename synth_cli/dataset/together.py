"""Compile an OpenAI chat fine-tuning JSONL file (what `filter` writes) into Together's conversational format.

Together's conversational format (docs.together.ai, "Data preparation" and "Function calling
fine-tuning") is a JSON object per line with `messages` and optionally `tools`:

* roles `system`, `user`, `assistant`, `tool`; the conversation starts with `system` or `user`;
* a message has `role` and `content`; assistant messages may carry `tool_calls` instead of
  content, tool results come back as `tool` messages (`tool_call_id`); `weight` 0/1 masks a
  message;
* content is a string, or (vision models only) a list of `text` / `image_url` parts, at most
  10 images per example.

What is converted (and counted in the report, never silently):

* `developer` messages become `system` messages (OpenAI's newer name for the same role);
* a content list of text parts only becomes one string (the parts joined, as chat templates do);
* the top-level `parallel_tool_calls` (an OpenAI request option, not training data) is removed.

What is refused, per line with its reason (nothing is dropped): other top-level keys, the
legacy `function` role / `function_call`, message `name`s, a first message that is not system
or user, images for a model without vision, tools or tool calls for a model without tool support,
more than 10 images, weights other than 0/1. Nothing here prints.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from synth_cli.errors import DatasetError

ROLES = ("system", "user", "assistant", "tool")
MESSAGE_KEYS = frozenset({"role", "content", "tool_calls", "tool_call_id", "weight"})
MAX_IMAGES = 10


@dataclass
class CompileReport:
    path: str
    examples: int = 0
    conversions: Counter = field(default_factory=Counter)
    refused: list[tuple[int, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.refused and self.examples > 0

    def reasons(self) -> list[dict[str, Any]]:
        """[{reason, count, lines}] grouped, most frequent first (first 10 line numbers each)."""
        grouped: dict[str, list[int]] = {}
        for line, reason in self.refused:
            grouped.setdefault(reason, []).append(line)
        return [{"reason": r, "count": len(lines), "lines": lines[:10]}
                for r, lines in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[1][0]))]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "examples": self.examples, "valid": self.ok,
                "conversions": dict(self.conversions), "refused": self.reasons()}


class CompileRefused(DatasetError):
    """Some lines cannot be Together examples: `report.reasons()` says which and why."""

    def __init__(self, report: CompileReport, what: str = "training file"):
        self.report = report
        if report.examples == 0 and not report.refused:
            message = f"{what} {report.path}: no examples (empty file)"
        else:
            first = report.reasons()[0]
            message = (f"{what} {report.path}: {len(report.refused)} line(s) cannot be Together conversational "
                       f"examples; first: line {first['lines'][0]}: {first['reason']}")
        super().__init__(message, hint=f"`synth-ai sft validate {report.path} --provider together` lists every "
                                       "line and reason; nothing was uploaded")


def _content(content: Any, vision: bool | None, report: CompileReport, images: list[int]) -> tuple[Any, str | None]:
    if content is None or isinstance(content, str):
        return content, None
    if not isinstance(content, list):
        return None, "message content is neither a string nor a list of parts"
    kinds = set()
    for part in content:
        if not isinstance(part, dict) or part.get("type") not in ("text", "image_url"):
            return None, f"content part of type {part.get('type') if isinstance(part, dict) else type(part).__name__!r} " \
                         "is not accepted by Together (text and image_url only)"
        kinds.add(part["type"])
    if kinds <= {"text"}:
        report.conversions["text parts joined into one string"] += 1
        return "".join(str(p.get("text") or "") for p in content), None
    if vision is False:
        return None, "an image in the example, but the base model has no vision support"
    images[0] += sum(1 for p in content if p["type"] == "image_url")
    return content, None


def compile_example(obj: Any, report: CompileReport, *, tools_ok: bool | None = True,
                    vision: bool | None = None, context_length: int | None = None
                    ) -> tuple[dict[str, Any] | None, str | None]:
    """(Together example, None) or (None, the reason it cannot be one)."""
    if not isinstance(obj, dict):
        return None, "the line is not a JSON object"
    extra = sorted(set(obj) - {"messages", "tools", "parallel_tool_calls"})
    if extra:
        return None, f"top-level key {extra[0]!r} is not part of Together's conversational format"
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return None, "no messages"
    out: dict[str, Any] = {}
    if "parallel_tool_calls" in obj:
        report.conversions["parallel_tool_calls removed (an OpenAI request option)"] += 1
    if obj.get("tools"):
        if tools_ok is False:
            return None, "tools in the example, but the base model has no tool-calling support"
        out["tools"] = obj["tools"]
    images = [0]
    converted = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return None, f"messages[{i}] is not an object"
        role = message.get("role")
        if role == "developer":
            role = "system"
            report.conversions["developer messages became system messages"] += 1
        if role == "function" or "function_call" in message:
            return None, "legacy function calling (role function / function_call) is not accepted; use tool_calls"
        if role not in ROLES:
            return None, f"role {role!r} is not accepted by Together (system, user, assistant, tool)"
        if "name" in message:
            return None, "message 'name' is not accepted by Together"
        if message.get("refusal") is not None:
            return None, "assistant refusals are not part of Together's format"
        keys = set(message) - {"refusal"}
        unknown = sorted(keys - MESSAGE_KEYS)
        if unknown:
            return None, f"message key {unknown[0]!r} is not accepted by Together"
        new: dict[str, Any] = {"role": role}
        content, why = _content(message.get("content"), vision, report, images)
        if why:
            return None, why
        if content is not None:
            new["content"] = content
        if message.get("tool_calls"):
            if tools_ok is False:
                return None, "tool calls in the example, but the base model has no tool-calling support"
            new["tool_calls"] = message["tool_calls"]
        if "tool_call_id" in message:
            new["tool_call_id"] = message["tool_call_id"]
        if "weight" in message:
            if message["weight"] not in (0, 1) or isinstance(message["weight"], bool):
                return None, "message weight must be 0 or 1"
            new["weight"] = message["weight"]
        converted.append(new)
    if converted[0]["role"] not in ("system", "user"):
        return None, f"the conversation starts with {converted[0]['role']!r}; Together wants system or user first"
    if images[0] > MAX_IMAGES:
        return None, f"{images[0]} images in one example (Together takes at most {MAX_IMAGES})"
    out = {"messages": converted, **out}
    if context_length:
        from synth_cli.devserver.simulate import example_tokens

        tokens = example_tokens(out)
        if tokens > context_length:
            return None, f"about {tokens:,} tokens, more than the base model's context length ({context_length:,})"
    return out, None


def compile_file(src: str | Path, dst: str | Path | None, *, tools_ok: bool | None = True,
                 vision: bool | None = None, context_length: int | None = None) -> CompileReport:
    """Convert `src` line by line; write `dst` only when every line converts (else nothing is written)."""
    from synth_cli._json import loads

    src = Path(src)
    report = CompileReport(path=str(src))
    lines: list[str] = []
    with open(src, "rb") as fh:
        for number, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = loads(raw)
            except ValueError:
                report.refused.append((number, "not valid JSON"))
                continue
            example, why = compile_example(obj, report, tools_ok=tools_ok, vision=vision,
                                           context_length=context_length)
            if why:
                report.refused.append((number, why))
                continue
            report.examples += 1
            lines.append(json.dumps(example, ensure_ascii=False))
    if dst is not None and report.ok:
        Path(dst).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return report
