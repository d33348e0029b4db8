"""The `events.call_records` JSON of a tracer's records, with the message lists walked by orjson itself.

Every call of an agent's session carries the whole conversation so far, so most of a record's
JSON is its messages. `to_dict` converts each message and part in Python (a dict each, type
checks, a list per `parts`) before orjson writes the result. :func:`encode_records` converts the
record itself the same way but hands its message lists to orjson as the objects they are:
orjson walks each list and calls back into Python once per message
(`OPT_PASSTHROUGH_DATACLASS`), and that check returns the message's field dict without `extra`,
its parts converted the same way in a plain loop. The text is byte for byte what
``_json.dumps([r.to_dict() for r in records])`` gives; when the check refuses, the record takes
the unchanged `to_dict` path. Why the two agree, for one list of messages:

1. Every dataclass and every datetime orjson meets reaches the check (passthrough). A message is
   taken as it is only when it is exactly an `LLMMessage` whose `extra` is empty (`to_dict`
   merges nothing) and whose `parts` is a list; its parts likewise (exactly `LLMContentPart`,
   empty `extra`), and any other element of `parts` becomes what `to_dict` makes of it
   (`to_dict()` for a record, else itself). Another message (tool calls in `extra`, say) is
   replaced by its own `to_dict()`. The fields are read with one `operator.attrgetter` (what
   the generic `to_dict` does with `getattr`, class defaults included) and written in
   definition order, which is `to_dict`'s order for every instance (the generated `to_dict`
   reads and writes them the same way; attributes added, deleted or re-set out of order
   change nothing). So no instance's `__dict__` is read: on Python 3.11+ that would create a
   dict per message and part, kept by the agent's objects (allocation and garbage-collector
   work); a field missing altogether (no class default) sends the message to `to_dict`. The
   record itself is the dict its generated `to_dict` builds, message lists left out
   (`models.record_dict_keeping_messages`).
2. The messages checked must be exactly the list's elements (counted), and anything else that
   reaches the check refuses the list: a part or a record where `to_dict` would not have
   converted it (in a metadata dict, a tuple, a field), a datetime anywhere (`to_dict` formats
   one as `str(dt)` in a field, where orjson writes ISO inside a dict), another dataclass, or
   anything orjson cannot write itself.
3. With no record and no datetime left inside their fields, `to_dict` of a message or part
   taken as it is keeps every field value as it is (lists included) and converts `parts` part
   by part: the dicts the check built, which orjson then writes as it would have written
   `to_dict`'s output (no value left needs a different option or the default).

4. With a cache (the tracer keeps one per session: every call of a session resends the
   conversation so far, so most of its messages were written before), a plain text message is
   not converted at all: exactly an `LLMMessage` whose `role` is exactly a `str`, `name` and
   `tool_call_id` None, `metadata` and `extra` exactly empty dicts and `parts` exactly a list of
   one part that is exactly an `LLMContentPart` whose `text` is exactly a `str`, whose `type` is
   exactly the `str` "text", whose `extra` is exactly an empty dict and whose twelve other
   fields are None. Every test is an identity or one made on a value already known to be exactly
   a `str`, `dict` or `list` (nothing else is compared with `==` or asked for its truth, which
   a value could answer as it likes), and the fields are read as plain attributes (`getattr`).
   What rule 3 writes for such a message is fixed by `(role, text)`, two exact strings, so the
   cache maps `text` to `(role, JSON orjson wrote the first time)` (a `Fragment`; the list
   becomes a list of fragments, which orjson writes as it writes the list); an entry of another
   role is written anew and replaces it. Any other message is written as in rules 1-3 on its
   own (a one-element list, its brackets cut off). Content is the key, never identity: a
   message changed between two calls is written as it is now.

Tests compare the two on the published fixtures and on odd records built to break each rule;
the bench DB is identical before and after. Never prints.
"""

from __future__ import annotations

import dataclasses
import operator
from typing import Any, Callable

from synth_cli._json import _default
from synth_cli.tracing.models import (
    LLMCallRecord, LLMContentPart, LLMMessage, LLMUsage, _Record, record_dict_keeping_messages)

try:
    import orjson as _orjson

    _Fragment = getattr(_orjson, "Fragment", None)
    _OPTIONS = _orjson.OPT_PASSTHROUGH_DATACLASS | _orjson.OPT_PASSTHROUGH_DATETIME
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None
    _Fragment = None
    _OPTIONS = 0

_MESSAGE_ATTRS = tuple(f.name for f in dataclasses.fields(LLMMessage))
_PART_ATTRS = tuple(f.name for f in dataclasses.fields(LLMContentPart))
_MESSAGE_LISTS = ("input_messages", "output_messages", "outputs")

# The check below unpacks these and writes the dicts' keys out: it must follow the models.
if _MESSAGE_ATTRS != ("role", "parts", "name", "tool_call_id", "metadata", "extra") or _PART_ATTRS != (
        "type", "text", "data", "mime_type", "uri", "base64_data", "size_bytes", "sha256", "width", "height",
        "duration_ms", "sample_rate", "channels", "language", "extra"):  # pragma: no cover
    raise ImportError("synth_cli.tracing.encode: update the message check for the changed LLMMessage / "
                      "LLMContentPart fields")
#: `getattr` of every field, in one call, without materialising the instance's `__dict__`.
_message_values = operator.attrgetter(*_MESSAGE_ATTRS)
_part_values = operator.attrgetter(*_PART_ATTRS)


def _plain_message(role: str, text: str) -> dict:
    """The dict rule 3 makes of a plain text message (rule 4)."""
    return {"role": role, "parts": [{
        "type": "text", "text": text, "data": None, "mime_type": None, "uri": None, "base64_data": None,
        "size_bytes": None, "sha256": None, "width": None, "height": None, "duration_ms": None,
        "sample_rate": None, "channels": None, "language": None}], "name": None, "tool_call_id": None,
        "metadata": {}}


#: orjson's JSON of `_plain_message(role, text)` around its two strings: the JSON of a plain text
#: message is HEAD + dumps(role) + MID + dumps(text) + TAIL (orjson writes a string the same way
#: alone and inside a dict; the two empty strings are the first two `""` of the sample).
_PLAIN_HEAD, _PLAIN_MID, _PLAIN_TAIL = (
    _orjson.dumps(_plain_message("", "")).split(b'""', 2) if _orjson is not None else (b"", b"", b""))
#: Plain text messages a cache holds at most (then it starts again).
CACHE_ENTRIES = 4096

class _Refused(Exception):
    """A message list the fast path does not take (see the module docstring)."""


def encode_records(records: list[Any], fallback: Callable[[list[Any]], str | None],
                   cache: dict | None = None) -> str | None:
    """JSON text of `[r.to_dict() for r in records]` (dicts are parsed as `LLMCallRecord`s first).

    `fallback(dicts)` serialises the plain dicts when the fast path does not apply. `cache`
    (a dict the caller keeps, e.g. per session) remembers the JSON of plain text messages
    (rule 4 of the module docstring); None: no cache.
    """
    records = [r if isinstance(r, LLMCallRecord) else _as_record(r) for r in records]
    if _Fragment is not None:
        try:
            return _orjson.dumps([_payload(r, cache) for r in records], default=_default).decode()
        except (TypeError, _Refused):
            pass  # something the fast path does not take: the unchanged path decides what to write
    return fallback([r.to_dict() for r in records])


def _payload(record: LLMCallRecord, cache: dict | None = None) -> Any:
    """`record.to_dict()`, its message lists as JSON fragments written by orjson.

    The record's dict is what its generated `to_dict` builds (fields read with `getattr`, see
    rule 1), with the non-empty message lists left to be written here."""
    out = record_dict_keeping_messages(record)
    if out is None:  # a subclass, a missing field, a record where a string was declared...
        return record.to_dict()
    extra = record.extra
    if extra and not extra.keys().isdisjoint(_MESSAGE_LISTS):
        return record.to_dict()  # `extra` would replace a message list
    for name in _MESSAGE_LISTS:
        messages = out[name]
        if messages.__class__ is list and messages:
            out[name] = _messages_fragment(messages) if cache is None else _cached_fragment(messages, cache)
    return out


def _cached_fragment(messages: list, cache: dict) -> Any:
    """`_messages_fragment(messages)`, plain text messages' JSON taken from `cache` (rule 4).

    The fields are read as plain attributes (what `getattr` and the `attrgetter` of rule 1 read,
    class defaults included; Python specialises these reads for the class, several times faster
    than a generic getter) and checked by identity: `is None`, exact classes, `"text"` compared
    only once it is exactly a `str`, `extra` and `metadata` tested only once they are exactly dicts."""
    chunks = []
    for message in messages:
        if message.__class__ is not LLMMessage:
            raise _Refused
        try:
            parts = message.parts
            role = message.role
            metadata = message.metadata
            extra = message.extra
            if (parts.__class__ is list and len(parts) == 1 and role.__class__ is str and message.name is None
                    and message.tool_call_id is None and metadata.__class__ is dict and not metadata
                    and extra.__class__ is dict and not extra):
                part = parts[0]
                if part.__class__ is LLMContentPart:
                    text = part.text
                    kind = part.type
                    part_extra = part.extra
                    if (text.__class__ is str and kind.__class__ is str and kind == "text"
                            and part.data is None and part.mime_type is None and part.uri is None
                            and part.base64_data is None and part.size_bytes is None and part.sha256 is None
                            and part.width is None and part.height is None and part.duration_ms is None
                            and part.sample_rate is None and part.channels is None and part.language is None
                            and part_extra.__class__ is dict and not part_extra):
                        entry = cache.get(text)
                        if entry is None or entry[0] != role:  # two exact strings: `!=` is theirs
                            if len(cache) >= CACHE_ENTRIES:
                                cache.clear()
                            # what orjson writes for the message's dict (rule 3), its two strings written alone
                            entry = cache[text] = (role, _Fragment(b"".join((
                                _PLAIN_HEAD, _orjson.dumps(role), _PLAIN_MID, _orjson.dumps(text), _PLAIN_TAIL))))
                        chunks.append(entry[1])
                        continue
        except AttributeError:  # a field deleted from the instance (no class default): as `_messages_fragment` does
            pass
        chunks.append(_Fragment(_messages_json([message])[1:-1]))  # `[...]` of one message: its JSON
    return chunks  # orjson writes a list of fragments as `[a,b,...]`, as it writes the messages' list


def _messages_fragment(messages: list) -> Any:
    """The JSON of `[m.to_dict() for m in messages]`, written by orjson (see the module docstring)."""
    for message in messages:
        if message.__class__ is not LLMMessage:
            raise _Refused
    return _Fragment(_messages_json(messages))


def _messages_json(messages: list) -> bytes:
    """`_messages_fragment`'s bytes; every element is exactly an `LLMMessage` (checked by the caller)."""
    seen = 0

    def check(obj: Any) -> dict:  # every dataclass and datetime orjson meets comes here
        nonlocal seen
        if obj.__class__ is not LLMMessage:
            raise _Refused  # a datetime, or a record where to_dict would not convert it
        seen += 1
        try:
            role, parts, name, tool_call_id, metadata, extra = _message_values(obj)
        except AttributeError:
            return obj.to_dict()  # a field deleted from the instance (no class default): to_dict decides
        if extra or parts.__class__ is not list:
            return obj.to_dict()  # e.g. an assistant message with tool calls in `extra`
        converted = []
        for part in parts:
            if part.__class__ is LLMContentPart:
                try:
                    (type_, text, data, mime_type, uri, base64_data, size_bytes, sha256, width, height,
                     duration_ms, sample_rate, channels, language, part_extra) = _part_values(part)
                except AttributeError:
                    converted.append(part.to_dict())
                    continue
                if not part_extra:
                    converted.append({
                        "type": type_, "text": text, "data": data, "mime_type": mime_type, "uri": uri,
                        "base64_data": base64_data, "size_bytes": size_bytes, "sha256": sha256,
                        "width": width, "height": height, "duration_ms": duration_ms,
                        "sample_rate": sample_rate, "channels": channels, "language": language})
                    continue
            converted.append(part.to_dict() if isinstance(part, _Record) else part)
        return {"role": role, "parts": converted, "name": name, "tool_call_id": tool_call_id,
                "metadata": metadata}

    data = _orjson.dumps(messages, default=check, option=_OPTIONS)
    if seen != len(messages):
        raise _Refused
    return data


_EXACT_INT = 2 ** 53


def record_figures(records: list[Any]) -> tuple[int, float | int | None] | None:
    """(LLM calls, exact cost in USD or None) of the JSON `encode_records(records)` writes: what the
    readers' SQL (`synth_cli.store.sql.calls_json_sql` and `records_cost_json_sql`) gives for it,
    stored beside the event so reports need not parse it (`synth_cli.store.sql.FIGURES_TABLE`).

    Only for records whose JSON is certain from their fields: each exactly an `LLMCallRecord`
    with no `extra["usage"]`, its `usage` None or exactly an `LLMUsage`, the cost (its
    `extra["cost_usd"]` when set, as `to_dict` merges it) None, or exactly an `int` SQLite holds
    exactly or a finite `float`. Anything else: None, and the writer computes the figures from
    the stored JSON in SQL. Costs add up in record order, as SQLite's SUM does.
    """
    cost: float | int | None = None
    for record in records:
        if record.__class__ is not LLMCallRecord:
            return None
        extra = record.extra
        if extra and "usage" in extra:
            return None
        usage = record.usage
        if usage is None:
            continue
        if usage.__class__ is not LLMUsage:
            return None
        usage_extra = usage.extra
        value = usage_extra["cost_usd"] if usage_extra and "cost_usd" in usage_extra else usage.cost_usd
        if value is None:
            continue
        if value.__class__ is float:
            if value != value or value in (float("inf"), float("-inf")):
                return None
        elif value.__class__ is not int or not -_EXACT_INT < value < _EXACT_INT:
            return None
        cost = value if cost is None else cost + value
    return len(records), cost


def _as_record(value: Any) -> LLMCallRecord:
    if isinstance(value, dict):
        return LLMCallRecord.from_dict(value)
    raise TypeError(f"call_records holds a {type(value).__name__}, expected LLMCallRecord")


__all__ = ["encode_records"]
