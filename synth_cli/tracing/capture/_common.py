"""Helpers shared by the OpenAI and Anthropic record builders (no vendor SDK, never prints)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

from synth_cli.tracing.models import (
    LLMContentPart,
    LLMMessage,
    ToolCallSpec,
)

CALL_ID_NAMESPACE = uuid.UUID("5b0e7c1e-3f7a-4c55-9d6b-2f1f9a6c1e01")




def to_plain(obj: Any) -> Any:
    """A dict/list view of an SDK object (pydantic `to_dict`/`model_dump`), dicts as they are."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, dict):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    for name in ("to_dict", "model_dump"):
        method = getattr(obj, name, None)
        if callable(method):
            try:
                return to_plain(method())
            except TypeError:
                continue
    if hasattr(obj, "__dict__"):
        return {k: to_plain(v) for k, v in vars(obj).items() if not k.startswith("_")}
    return obj


def naive_utc(value: Any) -> datetime | None:
    """Datetimes are stored naive UTC; epoch seconds are accepted too."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).replace(tzinfo=None)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def latency_ms(started_at: datetime | None, completed_at: datetime | None) -> int | None:
    if started_at is None or completed_at is None:
        return None
    return max(0, int(round((completed_at - started_at).total_seconds() * 1000)))


def derive_call_id(provider: str | None, response_id: Any, call_id: str | None = None) -> str:
    if call_id:
        return str(call_id)
    if response_id:
        return str(uuid.uuid5(CALL_ID_NAMESPACE, f"{provider or ''}:{response_id}"))
    return str(uuid.uuid4())


def parse_arguments(arguments_json: Any) -> Any:
    """Parsed tool-call arguments; None when they are not valid JSON (the string is kept anyway)."""
    if arguments_json is None:
        return None
    if not isinstance(arguments_json, str):
        return arguments_json
    if not arguments_json.strip():
        return None
    try:
        return json.loads(arguments_json)
    except ValueError:
        return None


def compact_json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def text_part(text: str) -> LLMContentPart:
    return LLMContentPart(type="text", text=text)


def data_url_mime(url: str | None) -> str | None:
    if url and url.startswith("data:"):
        head = url[5:].split(",", 1)[0]
        mime = head.split(";", 1)[0]
        return mime or None
    return None


def tool_calls_of(message: LLMMessage) -> list[ToolCallSpec]:
    """The tool calls an (input or `outputs`) assistant message carries, as `ToolCallSpec`s."""
    return [ToolCallSpec.from_dict(tc) for tc in (message.extra or {}).get("tool_calls") or []]


def set_tool_calls(message: LLMMessage, calls: Sequence[ToolCallSpec]) -> None:
    if calls:
        message.extra = {**(message.extra or {}), "tool_calls": [c.to_dict() for c in calls]}


def maybe_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


class StreamError(Exception):
    """An error object arrived inside a stream."""

    def __init__(self, error: Any):
        self.error = error if isinstance(error, dict) else {"message": str(error)}
        super().__init__(self.error.get("message") or "stream error")


def sse_payloads(items: Iterable[Any]) -> Iterable[Any]:
    """Stream payloads from dicts, SDK objects, or raw SSE text (`data: {...}` lines; `[DONE]` ignored).

    Both record builders read streams through this: OpenAI chunks and Anthropic events alike.
    """
    for item in items:
        if isinstance(item, (bytes, bytearray)):
            item = item.decode()
        if isinstance(item, str):
            for line in item.splitlines():
                line = line.strip()
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data and data != "[DONE]":
                    yield json.loads(data)
            continue
        yield to_plain(item)
