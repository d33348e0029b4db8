"""Check chat fine-tuning JSONL the way OpenAI's fine-tuning file validation does.

Rules (each failure is a reason; a line may have several):

* every line is a JSON object with a non-empty `messages` list;
* roles are system, user, assistant or tool; message keys are only role, content,
  name, tool_calls, tool_call_id, weight, function_call;
* each message has `content` (a string, or a list of `text` / `image_url` parts;
  images in user messages only) or, for an assistant, `tool_calls`/`function_call`;
* at least one assistant message; `weight` (assistant only) is 0 or 1;
* `tool_calls[]` are `{"id", "type": "function", "function": {"name", "arguments"}}`
  with `arguments` a string holding JSON; with `parallel_tool_calls: false` an
  assistant message makes at most one call;
* every tool message has a `tool_call_id` answering an earlier tool call;
* `tools` is a list of `{"type": "function", "function": {"name", ["description"],
  ["parameters": object]}}`; `parallel_tool_calls` is a boolean.

An assistant tool call need not be followed by its tool result: agents whose
environment answers in the next user turn (the fixture's Crafter agent) produce
exactly that, and training on the call is what is wanted.

:func:`check_example` checks one parsed object; :func:`validate_file` streams a file
(constant memory) into a :class:`ValidationReport` grouping errors by reason with
counts and the first line numbers. Nothing here prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable

from synth_cli.errors import DatasetError

ALLOWED_ROLES = frozenset(("system", "user", "assistant", "tool"))
ALLOWED_KEYS = frozenset(("role", "content", "name", "tool_calls", "tool_call_id", "weight", "function_call"))
#: OpenAI refuses to start a job on fewer examples.
MIN_EXAMPLES = 10
LINES_PER_REASON = 10


def _is_json_text(text: Any) -> bool:
    if not isinstance(text, str):
        return False
    from synth_cli._json import loads

    try:
        loads(text)
    except ValueError:
        return False
    return True


def _check_content(content: Any, role: str, errors: list[str]) -> None:
    if isinstance(content, str):
        return
    if not isinstance(content, list):
        errors.append("content must be a string or a list of parts")
        return
    if not content:
        errors.append("content list is empty")
        return
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                errors.append("text part without a string `text`")
        elif kind == "image_url":
            image = part.get("image_url")
            if role != "user":
                errors.append(f"image_url part in a {role} message (images are allowed in user messages only)")
            elif not isinstance(image, dict) or not isinstance(image.get("url"), str) or not image["url"]:
                errors.append("image_url part without a url")
            elif image.get("detail") not in (None, "low", "high", "auto"):
                errors.append("image_url detail must be low, high or auto")
        else:
            errors.append(f"content part type {kind!r} is not allowed (text, image_url)")


def _check_tool_calls(calls: Any, seen_ids: set, errors: list[str], single: bool) -> None:
    if not isinstance(calls, list) or not calls:
        errors.append("tool_calls must be a non-empty list")
        return
    if single and len(calls) > 1:
        errors.append("several tool_calls in one message with parallel_tool_calls false")
    for call in calls:
        if not isinstance(call, dict):
            errors.append("tool call is not an object")
            continue
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            errors.append("tool call without an id")
        else:
            seen_ids.add(call_id)
        if call.get("type") != "function":
            errors.append("tool call type must be function")
            continue
        fn = call.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            errors.append("tool call function without a name")
            continue
        if not isinstance(fn.get("arguments"), str):
            errors.append("tool_calls[].function.arguments must be a string")
        elif not _is_json_text(fn["arguments"]):
            errors.append("tool_calls[].function.arguments is not valid JSON")


def _check_tools(tools: Any, errors: list[str]) -> None:
    if not isinstance(tools, list):
        errors.append("tools must be a list")
        return
    for tool in tools:
        if not isinstance(tool, dict) or tool.get("type") != "function":
            errors.append("tools[] entries must have type function")
            continue
        fn = tool.get("function")
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            errors.append("tools[].function must have a name")
            continue
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            errors.append("tools[].function.parameters must be an object")
        if "description" in fn and not isinstance(fn["description"], str):
            errors.append("tools[].function.description must be a string")


def check_example(obj: Any) -> list[str]:
    """Reasons why one parsed line is not a valid chat fine-tuning example ([] when valid)."""
    if type(obj) is not dict:
        return ["line is not a JSON object"]
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        return ["missing or empty messages list"]
    errors: list[str] = []
    parallel = obj.get("parallel_tool_calls")
    if parallel is not None and not isinstance(parallel, bool):
        errors.append("parallel_tool_calls must be true or false")
    single = parallel is False
    if "tools" in obj:
        _check_tools(obj["tools"], errors)
    seen_ids: set = set()
    assistant = False
    for m in messages:
        if type(m) is not dict:
            errors.append("message is not an object")
            continue
        role = m.get("role")
        if len(m) == 2 and type(m.get("content")) is str:  # fast path: {"role", "content": "…"}
            if role == "user" or role == "system":
                continue
            if role == "assistant":
                assistant = True
                continue
        if role not in ALLOWED_ROLES:
            errors.append(f"role {role!r} is not allowed (system, user, assistant, tool)")
            continue
        if not m.keys() <= ALLOWED_KEYS:
            extra = sorted(k for k in m if k not in ALLOWED_KEYS)
            errors.append(f"message key(s) {', '.join(map(repr, extra))} not allowed")
        content = m.get("content")
        if role == "assistant":
            assistant = True
            calls = m.get("tool_calls")
            if calls is not None:
                _check_tool_calls(calls, seen_ids, errors, single)
            fc = m.get("function_call")
            if fc is not None and (not isinstance(fc, dict) or not isinstance(fc.get("name"), str)
                                   or not isinstance(fc.get("arguments"), str)):
                errors.append("function_call must have a name and string arguments")
            if content is None and not calls and fc is None:
                errors.append("assistant message without content or tool_calls")
            elif content is not None:
                _check_content(content, role, errors)
            weight = m.get("weight")
            if weight is not None and weight not in (0, 1):
                errors.append("weight must be 0 or 1")
        else:
            if content is None:
                errors.append(f"{role} message without content")
            else:
                _check_content(content, role, errors)
            if "tool_calls" in m:
                errors.append(f"tool_calls in a {role} message")
            if "weight" in m:
                errors.append("weight is only allowed on assistant messages")
            if role == "tool":
                tool_call_id = m.get("tool_call_id")
                if not isinstance(tool_call_id, str) or not tool_call_id:
                    errors.append("tool message without tool_call_id")
                elif tool_call_id not in seen_ids:
                    errors.append("tool message answers no earlier tool call")
        name = m.get("name")
        if name is not None and (not isinstance(name, str) or not name):
            errors.append("name must be a non-empty string")
    if not assistant:
        errors.append("no assistant message")
    return errors


@dataclass
class ValidationReport:
    """Errors grouped by reason: {reason: [count, first line numbers]}."""

    path: str | None = None
    lines: int = 0
    examples: int = 0
    invalid: int = 0
    with_tool_calls: int = 0
    messages: int = 0
    bytes: int = 0
    reasons: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.invalid == 0 and self.examples > 0

    def add(self, line: int, errors: Iterable[str]) -> None:
        seen = set()
        for reason in errors:
            if reason in seen:
                continue
            seen.add(reason)
            entry = self.reasons.setdefault(reason, [0, []])
            entry[0] += 1
            if len(entry[1]) < LINES_PER_REASON:
                entry[1].append(line)

    @property
    def ok(self) -> bool:
        """Same as :attr:`valid`."""
        return self.valid

    def error_lines(self, limit: int = 20) -> list[str]:
        """One line per reason, most frequent first: `line 2: not valid JSON`,
        `lines 3, 5, 8 (12 in all): no assistant message`; at most `limit` lines."""
        out = []
        entries = self.errors()
        for entry in entries[:limit]:
            lines = [n for n in entry["lines"] if n]
            count = entry["count"]
            if not lines:
                out.append(entry["reason"])
            elif count == 1:
                out.append(f"line {lines[0]}: {entry['reason']}")
            else:
                more = f" ({count} in all)" if count > len(lines) else ""
                out.append(f"lines {', '.join(map(str, lines))}{more}: {entry['reason']}")
        if len(entries) > limit:
            out.append(f"… and {len(entries) - limit} more kinds of error")
        return out

    def summary(self) -> str:
        """`2 of 13 examples invalid: no assistant message (2)` / `no examples`."""
        if self.examples == 0:
            return "no examples"
        if self.invalid == 0:
            return f"{self.examples} examples, all valid"
        top = ", ".join(f"{e['reason']} ({e['count']})" for e in self.errors()[:2])
        return f"{self.invalid} of {self.examples} examples invalid: {top}"

    def errors(self) -> list[dict[str, Any]]:
        return [{"reason": reason, "count": count, "lines": lines}
                for reason, (count, lines) in sorted(self.reasons.items(), key=lambda kv: (-kv[1][0], kv[0]))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "valid": self.valid,
            "lines": self.lines,
            "examples": self.examples,
            "invalid_examples": self.invalid,
            "with_tool_calls": self.with_tool_calls,
            "messages": self.messages,
            "token_estimate": self.bytes // 4,
            "errors": self.errors(),
            "warnings": self.warnings,
        }


def _has_tool_calls(obj: dict) -> bool:
    for m in obj.get("messages") or ():
        if isinstance(m, dict) and m.get("role") == "assistant" and (m.get("tool_calls") or m.get("function_call")):
            return True
    return False


def validate_lines(lines: Iterable[bytes], report: ValidationReport) -> ValidationReport:
    from synth_cli._json import loads

    for number, raw in enumerate(lines, 1):
        report.lines = number
        if not raw.strip():
            continue
        report.examples += 1
        report.bytes += len(raw)
        try:
            obj = loads(raw)
        except ValueError as exc:
            text = str(exc)
            reason = "not valid UTF-8" if "utf-8" in text.lower() else "not valid JSON"
            report.invalid += 1
            report.add(number, [reason])
            continue
        errors = check_example(obj)
        if errors:
            report.invalid += 1
            report.add(number, errors)
            continue
        report.messages += len(obj["messages"])
        if _has_tool_calls(obj):
            report.with_tool_calls += 1
    if report.examples == 0:
        report.add(0, ["no examples in the file"])
    elif report.examples < MIN_EXAMPLES:
        report.warnings.append(f"only {report.examples} examples; OpenAI requires at least {MIN_EXAMPLES} "
                               "to start a fine-tuning job")
    return report


def validate_file(path: str | os.PathLike) -> ValidationReport:
    """Validate a JSONL file line by line (constant memory)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        raise DatasetError(f"{p}: is a directory")
    from synth_cli.files import non_regular_kind

    kind = non_regular_kind(p)
    if kind is not None:  # a FIFO would block for ever, /dev/zero never end
        raise DatasetError(f"{p}: is {kind}, not a regular file", hint="validate a JSONL file")
    try:
        fh = open(p, "rb")
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such file") from None
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        return validate_lines(fh, ValidationReport(path=p))


__all__ = ["ALLOWED_KEYS", "ALLOWED_ROLES", "MIN_EXAMPLES", "ValidationReport", "check_example",
           "validate_file", "validate_lines"]
