"""The `events.call_records` JSON of a tracer's records, with the message lists walked by orjson itself.

Every call of an agent's session carries the whole conversation so far, so most of a record's
JSON is its messages. `to_dict` converts each message and part in Python (a dict each, type
checks, a list per `parts`) before orjson writes the result. :func:`encode_records` converts the
record itself the same way but hands its message lists to orjson as the objects they are:
orjson walks the lists and calls back into Python once per message and per part
(`OPT_PASSTHROUGH_DATACLASS`), and that check returns the object's field dict without `extra`.
The text is byte for byte what ``_json.dumps([r.to_dict() for r in records])`` gives; when a
check fails the record takes the unchanged `to_dict` path. Why the two agree, for one list:

1. Every dataclass and every datetime anywhere in the list reaches the check (passthrough). A
   message or part is taken as it is only when it is exactly an `LLMMessage` / `LLMContentPart`
   whose attributes are exactly its fields in definition order (so `to_dict`, generated or
   generic, emits the same keys in the same order) and whose `extra` is empty (`to_dict` merges
   nothing), a message's `parts` being a list of such parts; another message or part (tool
   calls in `extra`, say) is replaced by its own `to_dict()`. A datetime anywhere (which
   `to_dict` formats as `str(dt)` in a field, where orjson writes ISO inside a dict), any other
   dataclass and anything orjson cannot write itself refuse the list.
2. The messages checked are exactly the list's elements and the parts checked exactly the
   elements of the `parts` lists taken as they are (counted), so no record sits anywhere
   `to_dict` would not convert it (in a metadata dict, a tuple, a field), and none is missed.
3. With no record and no datetime left inside their fields, `to_dict` of a message or part
   taken as it is keeps every field value as it is (lists included) and converts `parts` part
   by part: the dicts the check returned, which orjson then writes as it would have written
   `to_dict`'s output (no value left needs a different option or the default).

Tests compare the two on the published fixtures and on odd records built to break each rule;
the bench DB is identical before and after. Never prints.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from synth_cli._json import _default
from synth_cli.tracing.models import LLMCallRecord, LLMContentPart, LLMMessage

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
_RECORD_ATTRS = tuple(f.name for f in dataclasses.fields(LLMCallRecord))
_MESSAGE_LISTS = ("input_messages", "output_messages", "outputs")

class _Refused(Exception):
    """A message list the fast path does not take (see the module docstring)."""


def encode_records(records: list[Any], fallback: Callable[[list[Any]], str | None]) -> str | None:
    """JSON text of `[r.to_dict() for r in records]` (dicts are parsed as `LLMCallRecord`s first).

    `fallback(dicts)` serialises the plain dicts when the fast path does not apply.
    """
    records = [r if isinstance(r, LLMCallRecord) else _as_record(r) for r in records]
    if _Fragment is not None:
        try:
            return _orjson.dumps([_payload(r) for r in records], default=_default).decode()
        except (TypeError, _Refused):
            pass  # something the fast path does not take: the unchanged path decides what to write
    return fallback([r.to_dict() for r in records])


def _payload(record: LLMCallRecord) -> Any:
    """`record.to_dict()`, its message lists as JSON fragments written by orjson."""
    d = record.__dict__
    if record.__class__ is not LLMCallRecord or tuple(d) != _RECORD_ATTRS:
        return record.to_dict()
    extra = d["extra"]
    if extra and not extra.keys().isdisjoint(_MESSAGE_LISTS):
        return record.to_dict()
    lists = [(name, d[name]) for name in _MESSAGE_LISTS if d[name].__class__ is list and d[name]]
    if not lists:
        return record.to_dict()
    # to_dict of a copy whose message lists are empty (same keys, same order), then the lists
    shallow = object.__new__(LLMCallRecord)
    sd = shallow.__dict__
    sd.update(d)
    for name, _ in lists:
        sd[name] = []
    out = shallow.to_dict()
    for name, messages in lists:
        out[name] = _messages_fragment(messages)
    return out


def _messages_fragment(messages: list) -> Any:
    """The JSON of `[m.to_dict() for m in messages]`, written by orjson (see the module docstring)."""
    for message in messages:
        if message.__class__ is not LLMMessage:
            raise _Refused
    seen_messages = seen_parts = expected_parts = 0

    def check(obj: Any) -> dict:  # every dataclass and datetime in the list comes here
        nonlocal seen_messages, seen_parts, expected_parts
        cls = obj.__class__
        if cls is LLMContentPart:
            seen_parts += 1
            d = obj.__dict__
            if tuple(d) != _PART_ATTRS or d["extra"]:
                return obj.to_dict()
        elif cls is LLMMessage:
            seen_messages += 1
            d = obj.__dict__
            if tuple(d) != _MESSAGE_ATTRS or d["extra"]:
                return obj.to_dict()  # e.g. an assistant message with tool calls in `extra`
            parts = d["parts"]
            if parts.__class__ is not list:
                return obj.to_dict()
            for part in parts:
                if part.__class__ is not LLMContentPart:
                    return obj.to_dict()
            expected_parts += len(parts)
        else:
            raise _Refused
        out = d.copy()
        del out["extra"]
        return out

    data = _orjson.dumps(messages, default=check, option=_OPTIONS)
    if seen_messages != len(messages) or seen_parts != expected_parts:
        raise _Refused
    return _Fragment(data)


def _as_record(value: Any) -> LLMCallRecord:
    if isinstance(value, dict):
        return LLMCallRecord.from_dict(value)
    raise TypeError(f"call_records holds a {type(value).__name__}, expected LLMCallRecord")


__all__ = ["encode_records"]
