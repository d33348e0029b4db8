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
#: estimated tokens of one image part (OpenAI's figure for a high-detail 512×512 tile set; the
#: image's bytes are not text and are not counted as such).
IMAGE_TOKENS = 765
#: tokens per example the target model accepts, by model family (longest matching prefix wins);
#: OpenAI's current fine-tuning models take 65,536 tokens per example.
CONTEXT_LIMITS: tuple[tuple[str, int], ...] = (
    ("gpt-3.5-turbo", 16_385),
    ("gpt-4o-mini", 65_536),
    ("gpt-4o", 65_536),
    ("gpt-4.1-nano", 65_536),
    ("gpt-4.1-mini", 65_536),
    ("gpt-4.1", 65_536),
    ("o4-mini", 65_536),
)
#: for a model the table does not know (override with --max-example-tokens).
DEFAULT_CONTEXT_LIMIT = 65_536
_SQLITE_MAGIC = b"SQLite format 3\x00"
_BOM = b"\xef\xbb\xbf"
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


def check_tools(tools: Any) -> list[str]:
    """What :func:`check_example` says of an example's `tools` (its reasons in their order)."""
    errors: list[str] = []
    _check_tools(tools, errors)
    return errors


def check_example(obj: Any, *, assistant: bool = False) -> list[str]:
    """Reasons why one parsed line is not a valid chat fine-tuning example ([] when valid).

    For a caller that checked the example's first messages already (:mod:`synth_cli.dataset.history`
    checks each history message of a session once): `obj["messages"]` holds the rest, the
    first ones were each a plain `{"role", "content": str}` system/user/assistant message
    (which adds no reason and no tool call id), and `assistant` says whether one of them was an
    assistant's. The reasons are then those of the whole example.
    """
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


def estimate_tokens(line: bytes, obj: Any = None) -> int:
    """Estimated tokens of one example: 4 bytes of its compact JSON per token, an image part
    IMAGE_TOKENS (its URL not counted as text).

    An estimate, not a tokenizer's count: no package that ships OpenAI's encodings works
    offline (tiktoken downloads them at run time). `filter` and `sft validate` both use it
    on the example's compact JSON (`synth_cli._json.dumps_bytes`, without `metadata`), so
    they report the same count for the same file.
    """
    n = len(line) >> 2
    if b'"image_url"' in line and isinstance(obj, dict):
        for m in obj.get("messages") or ():
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):
                for part in content:
                    if isinstance(part, dict) and part.get("type") == "image_url":
                        image = part.get("image_url")
                        url = image.get("url") if isinstance(image, dict) else None
                        if isinstance(url, str):
                            n -= len(url.encode()) >> 2
                        n += IMAGE_TOKENS
    return max(n, 0)


@dataclass
class Target:
    """What a file is checked for: the fine-tuning API's minimum of examples and the model's
    limit of tokens per example (an OpenAI-compatible fine-tuning target)."""

    model: str | None = None
    max_example_tokens: int = DEFAULT_CONTEXT_LIMIT
    min_examples: int = MIN_EXAMPLES

    @property
    def label(self) -> str:
        return self.model or "OpenAI's fine-tuning models"


def context_limit(model: str | None) -> int:
    """Tokens per example for `model` (CONTEXT_LIMITS by prefix; a `ft:` model by its base)."""
    if not model:
        return DEFAULT_CONTEXT_LIMIT
    name = model[3:] if model.startswith("ft:") else model
    best = None
    for prefix, limit in CONTEXT_LIMITS:
        if name.startswith(prefix) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, limit)
    return best[1] if best else DEFAULT_CONTEXT_LIMIT


def target_for(model: str | None = None, max_example_tokens: int | None = None) -> Target:
    """The target of a job on `model`; `max_example_tokens` (or $SYNTH_MAX_EXAMPLE_TOKENS) overrides the table."""
    if max_example_tokens is None:
        env = os.environ.get("SYNTH_MAX_EXAMPLE_TOKENS", "").strip()
        if env:
            try:
                max_example_tokens = int(env)
            except ValueError:
                raise DatasetError(f"SYNTH_MAX_EXAMPLE_TOKENS={env!r}: expected a whole number of tokens") from None
    if max_example_tokens is not None and max_example_tokens < 1:
        raise DatasetError(f"the limit of tokens per example must be at least 1 (got {max_example_tokens})")
    return Target(model=model, max_example_tokens=max_example_tokens or context_limit(model))


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
    tokens: int = 0
    max_example_tokens: int = 0
    target: Target | None = None
    reasons: dict[str, list] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return self.invalid == 0 and self.examples > 0 and not self.too_few

    @property
    def too_few(self) -> bool:
        """Fewer examples than the target's fine-tuning API accepts (an error with a target)."""
        return self.target is not None and 0 < self.examples < self.target.min_examples

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
        if self.too_few and self.invalid == 0:
            return f"only {self.examples} examples; at least {self.target.min_examples} are required"  # type: ignore[union-attr]
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
            "token_estimate": self.tokens,
            "max_example_tokens": self.max_example_tokens,
            "limits": None if self.target is None else {
                "model": self.target.model, "max_example_tokens": self.target.max_example_tokens,
                "min_examples": self.target.min_examples},
            "errors": self.errors(),
            "warnings": self.warnings,
        }


def _has_tool_calls(obj: dict) -> bool:
    for m in obj.get("messages") or ():
        if isinstance(m, dict) and m.get("role") == "assistant" and (m.get("tool_calls") or m.get("function_call")):
            return True
    return False


def validate_lines(lines: Iterable[bytes], report: ValidationReport) -> ValidationReport:
    """Check every line; with `report.target`, also each example's tokens against the model's
    limit and the number of examples against the API's minimum (errors, not warnings)."""
    from synth_cli._json import dumps_bytes, loads

    target = report.target
    limit = target.max_example_tokens if target is not None else None
    over = f"over the {limit:,}-token limit per example of {target.label} (estimated)" if target else ""
    for number, raw in enumerate(lines, 1):
        report.lines = number
        if number == 1 and raw.startswith(_BOM):  # a UTF-8 byte order mark (Windows editors write one)
            raw = raw[len(_BOM):]
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
        # counted on the compact JSON `filter` writes, without what --include-metadata adds
        compact = dumps_bytes({k: v for k, v in obj.items() if k != "metadata"} if "metadata" in obj else obj)
        tokens = estimate_tokens(compact, obj)
        report.tokens += tokens
        if tokens > report.max_example_tokens:
            report.max_example_tokens = tokens
        if limit is not None and tokens > limit:
            report.invalid += 1
            report.add(number, [over])
            continue
        report.messages += len(obj["messages"])
        if _has_tool_calls(obj):
            report.with_tool_calls += 1
    if report.examples == 0:
        report.add(0, ["no examples in the file"])
    elif target is not None and report.examples < target.min_examples:
        report.add(0, [f"only {report.examples} examples; OpenAI-compatible fine-tuning requires at least "
                       f"{target.min_examples} (the job would fail with invalid_n_examples)"])
    elif report.examples < MIN_EXAMPLES:
        report.warnings.append(f"only {report.examples} examples; OpenAI requires at least {MIN_EXAMPLES} "
                               "to start a fine-tuning job")
    return report


def _not_text(head: bytes) -> str | None:
    """Why a file that starts with `head` is not a JSONL text file (None when it may be)."""
    if head.startswith(_SQLITE_MAGIC):
        return "is a SQLite database, not a JSONL file"
    if head.startswith((b"PK\x03\x04", b"\x1f\x8b", b"BZh", b"\xfd7zXZ", b"(\xb5/\xfd")):
        return "is an archive or compressed file, not a JSONL file"
    if b"\x00" in head:
        return "is a binary file, not a JSONL text file"
    return None


def validate_file(path: str | os.PathLike, target: Target | None = None) -> ValidationReport:
    """Validate a JSONL file line by line (constant memory).

    With a `target` (see :func:`target_for`), also the limits of the fine-tuning job: tokens
    per example and the minimum number of examples. A file that is not text (a SQLite DB, an
    archive, anything with NUL bytes near its start) is one DatasetError, not an error per line.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        raise DatasetError(f"{p}: is a directory")
    from synth_cli.files import non_regular_kind

    kind = non_regular_kind(p)
    if kind is not None:  # a FIFO would block for ever, /dev/zero never end
        raise DatasetError(f"{p}: is {kind}, not a regular file", hint="validate a JSONL file")
    try:
        fh = open(p, "rb")  # noqa: SIM115 - closed by the `with fh:` below (opening errors are told apart first)
    except FileNotFoundError:
        raise DatasetError(f"{p}: no such file") from None
    except OSError as exc:
        raise DatasetError(f"{p}: cannot read ({exc.strerror or exc})") from exc
    with fh:
        why = _not_text(fh.read(8192))
        if why is not None:
            raise DatasetError(f"{p}: {why}",
                               hint="pass the .jsonl file `synth-ai filter` wrote (filter reads the trace DB)")
        fh.seek(0)
        return validate_lines(fh, ValidationReport(path=p, target=target))


__all__ = ["ALLOWED_KEYS", "ALLOWED_ROLES", "CONTEXT_LIMITS", "DEFAULT_CONTEXT_LIMIT", "IMAGE_TOKENS", "MIN_EXAMPLES",
           "Target", "ValidationReport", "check_example", "check_tools", "context_limit", "estimate_tokens", "target_for",
           "validate_file", "validate_lines"]
