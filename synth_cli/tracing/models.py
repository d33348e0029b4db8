"""The `LLMCallRecord` data model, schema_version "1.0" of the published `synth-ai` tracer.

Field names and meanings follow the records stored in `events.call_records`
(see tests/fixtures). Parsing is tolerant: missing optional fields take their
defaults, unknown fields are kept in `extra` and written back by `to_dict()`,
and datetimes are read from ISO strings or epoch numbers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from synth_cli.tracing.dates import format_datetime, parse_datetime

SCHEMA_VERSION = "1.0"


class _Record:
    """Shared tolerant (de)serialisation for the dataclasses below."""

    _nested: ClassVar[dict[str, Any]] = {}
    _nested_lists: ClassVar[dict[str, Any]] = {}
    _datetimes: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _field_names(cls) -> tuple[str, ...]:
        cached = cls.__dict__.get("_names_cache")
        if cached is None:
            cached = tuple(f.name for f in dataclasses.fields(cls) if f.name != "extra")  # type: ignore[arg-type]
            cls._names_cache = cached  # type: ignore[attr-defined]
        return cached

    @classmethod
    def from_dict(cls, data: Any):
        if data is None:
            return None
        if isinstance(data, cls):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"{cls.__name__} expects an object, got {type(data).__name__}")
        names = cls._field_names()
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key not in names:
                extra[key] = value
                continue
            if key in cls._nested and value is not None:
                value = _resolve(cls._nested[key]).from_dict(value)
            elif key in cls._nested_lists:
                inner = _resolve(cls._nested_lists[key])
                value = [inner.from_dict(v) for v in (value or []) if v is not None]
            elif key in cls._datetimes:
                value = parse_datetime(value)
            kwargs[key] = value
        obj = cls(**kwargs)  # type: ignore[call-arg]
        if extra:
            obj.extra = extra  # type: ignore[attr-defined]
        return obj

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self._field_names():
            value = getattr(self, name)
            if isinstance(value, _Record):
                value = value.to_dict()
            elif isinstance(value, list):
                value = [v.to_dict() if isinstance(v, _Record) else v for v in value]
            elif isinstance(value, datetime):
                value = format_datetime(value)
            out[name] = value
        out.update(getattr(self, "extra", None) or {})
        return out


def _resolve(name_or_cls: Any):
    return globals()[name_or_cls] if isinstance(name_or_cls, str) else name_or_cls


@dataclass
class LLMContentPart(_Record):
    """One part of a message: text, image, audio, tool payload…"""

    type: str = "text"
    text: str | None = None
    data: Any = None
    mime_type: str | None = None
    uri: str | None = None
    base64_data: str | None = None
    size_bytes: int | None = None
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    duration_ms: int | None = None
    sample_rate: int | None = None
    channels: int | None = None
    language: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=True)


@dataclass
class LLMMessage(_Record):
    role: str = "user"
    parts: list[LLMContentPart] = field(default_factory=list)
    name: str | None = None
    tool_call_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _nested_lists = {"parts": "LLMContentPart"}

    @property
    def text(self) -> str:
        """The text parts joined (for display only; datasets keep parts apart)."""
        return "".join(p.text or "" for p in self.parts if p.type == "text")


@dataclass
class ToolCallSpec(_Record):
    name: str = ""
    arguments_json: str | None = None
    arguments: Any = None
    call_id: str | None = None
    index: int | None = None
    parent_call_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class ToolCallResult(_Record):
    call_id: str | None = None
    output_text: str | None = None
    exit_code: int | None = None
    status: str | None = None
    error_message: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    duration_ms: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _datetimes = ("started_at", "completed_at")


@dataclass
class LLMUsage(_Record):
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    reasoning_tokens: int | None = None
    reasoning_input_tokens: int | None = None
    reasoning_output_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_read_tokens: int | None = None
    billable_input_tokens: int | None = None
    billable_output_tokens: int | None = None
    cost_usd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class LLMRequestParams(_Record):
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    stop: Any = None
    top_k: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    seed: int | None = None
    n: int | None = None
    best_of: int | None = None
    response_format: Any = None
    json_mode: bool | None = None
    tool_config: Any = None
    raw_params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class LLMChunk(_Record):
    """One streamed chunk, kept when a stream is recorded with `keep_chunks`."""

    sequence_index: int = 0
    received_at: datetime | None = None
    event_type: str | None = None
    choice_index: int | None = None
    raw_json: str | None = None
    delta_text: str | None = None
    delta_tool_call: ToolCallSpec | None = None
    usage: LLMUsage | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _nested = {"delta_tool_call": "ToolCallSpec", "usage": "LLMUsage"}
    _datetimes = ("received_at",)


@dataclass
class LLMCallRecord(_Record):
    """One LLM call: request, response, usage and outcome."""

    call_id: str = ""
    api_type: str = "chat_completions"
    provider: str | None = None
    model_name: str = ""
    schema_version: str = SCHEMA_VERSION
    started_at: datetime | None = None
    completed_at: datetime | None = None
    latency_ms: int | None = None
    request_params: LLMRequestParams = field(default_factory=LLMRequestParams)
    input_messages: list[LLMMessage] = field(default_factory=list)
    input_text: str | None = None
    tool_choice: Any = None
    output_messages: list[LLMMessage] = field(default_factory=list)
    outputs: list[LLMMessage] = field(default_factory=list)
    output_text: str | None = None
    output_tool_calls: list[ToolCallSpec] = field(default_factory=list)
    usage: LLMUsage | None = None
    finish_reason: str | None = None
    choice_index: int | None = None
    tool_results: list[ToolCallResult] = field(default_factory=list)
    chunks: list[LLMChunk] | None = None
    request_raw_json: str | None = None
    response_raw_json: str | None = None
    span_id: str | None = None
    trace_id: str | None = None
    provider_request_id: str | None = None
    request_server_timing: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    outcome: str | None = None
    error: dict[str, Any] | None = None
    token_traces: Any = None
    safety: Any = None
    refusal: Any = None
    redactions: Any = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    _nested = {"request_params": "LLMRequestParams", "usage": "LLMUsage"}
    _nested_lists = {
        "input_messages": "LLMMessage",
        "output_messages": "LLMMessage",
        "outputs": "LLMMessage",
        "output_tool_calls": "ToolCallSpec",
        "tool_results": "ToolCallResult",
        "chunks": "LLMChunk",
    }
    _datetimes = ("started_at", "completed_at")

    @classmethod
    def from_dict(cls, data: Any) -> "LLMCallRecord":
        record = super().from_dict(data)
        if record.request_params is None:
            record.request_params = LLMRequestParams()
        if data.get("chunks") is None:
            record.chunks = None
        return record

    @property
    def succeeded(self) -> bool:
        return self.outcome in (None, "", "success")


_PLAIN = frozenset({str, int, float, bool, type(None), dict})


def _convert(value: Any) -> Any:
    """What `_Record.to_dict` does to one field value (records, lists of records, datetimes)."""
    if isinstance(value, _Record):
        return value.to_dict()
    if isinstance(value, list):
        return [v.to_dict() if isinstance(v, _Record) else v for v in value]
    if isinstance(value, datetime):
        return format_datetime(value)
    return value


_PLAIN_ANNOTATIONS = frozenset({"str", "int", "float", "bool", "dict[str, Any]"})


def _compile_to_dict(cls: type, keep: tuple[str, ...] = ()) -> Any:
    """Give `cls` a generated `to_dict`: the generic method unrolled, key for key, several times faster.

    The generic method loops over the fields with three `isinstance` checks each. The generated
    one reads every field as a plain attribute, `self.name` (the generic method's `getattr`, class
    defaults included, in a form Python specialises for the class: several times faster than
    `getattr` or an `operator.attrgetter`; the instance's `__dict__` is never read, so none is
    created on Python 3.11+), checks that the fields declared as plain scalars or dicts hold
    None or a plain value, converts only the fields declared as records, lists or datetimes
    (a value exactly of the declared record class: its `to_dict()`; exactly a `datetime`:
    `isoformat(" ")`, which is what `str()` returns for one; anything else not plain: what the
    generic method does, `_convert`), and writes the dict as one literal in definition order,
    then merges `extra`, as the generic method does.
    Anything unusual (a subclass, a field missing from the instance with no class default, a
    record where a string was declared) takes the generic method, so the two always agree key
    for key (the fast path of :mod:`synth_cli.tracing.encode` relies on that). The tracer
    serialises every call record through it: the hot path.

    With `keep` (field names), a second function is returned: the same dict, except that a field
    of `keep` holding a non-empty `list` is left as that list, unconverted (None where `to_dict`
    would take the generic method). `encode` writes the message lists itself.
    """
    fields = [f for f in dataclasses.fields(cls) if f.name != "extra"]
    plain = {f.name for f in fields if str(f.type).replace(" | None", "") in _PLAIN_ANNOTATIONS}
    local = {f.name: f"v{i}" for i, f in enumerate(fields)}  # field names such as `type` shadow builtins
    namespace: dict[str, Any] = {
        "plain_types": _PLAIN, "convert": _convert, "cls": cls, "generic": _Record.to_dict, "Record": _Record,
        "type_": type}

    nested = {name: _resolve(target) for name, target in cls._nested.items()}
    namespace.update({f"N{i}": target for i, target in enumerate(nested.values())}, datetime=datetime)
    nested_local = {name: f"N{i}" for i, name in enumerate(nested)}

    def source(fn: str, kept: tuple[str, ...], fallback: str) -> str:
        lines = [
            f"def {fn}(self):",
            "    if self.__class__ is not cls:",
            f"        return {fallback}",
            "    try:",
            *(f"        {local[f.name]} = self.{f.name}" for f in fields),
            "        extra = self.extra",
            "    except AttributeError:",
            f"        return {fallback}",
        ]
        checked = [local[f.name] for f in fields if f.name in plain]
        if checked:
            tests = " or ".join(f"({v} is not None and type_({v}) not in plain_types)" for v in checked)
            lines += [f"    if {tests}:", f"        return {fallback}"]
        for f in fields:
            if f.name in plain:
                continue
            v = local[f.name]
            lines.append(f"    if {v} is None:\n        pass")  # None is plain: kept
            lines.append(f"    elif {v}.__class__ is list:")
            if f.name in kept:
                lines.append("        pass  # written by the caller")
            else:
                lines.append(f"        if {v}:\n            {v} = [x.to_dict() if isinstance(x, Record) else x for x in {v}]")
            if f.name in nested:  # what convert does with a record: its to_dict
                lines.append(f"    elif type_({v}) is {nested_local[f.name]}:\n        {v} = {v}.to_dict()")
            if f.name in cls._datetimes:  # format_datetime: str(), which is isoformat(" ") for a datetime
                lines.append(f"    elif type_({v}) is datetime:\n        {v} = {v}.isoformat(' ')")
            lines.append(f"    elif {v}.__class__ not in plain_types:\n        {v} = convert({v})")
        items = ", ".join(f"{f.name!r}: {local[f.name]}" for f in fields)
        lines += [f"    out = {{{items}}}", "    if extra:", "        out.update(extra)", "    return out"]
        return "\n".join(lines) + "\n"

    code = source("to_dict", (), "generic(self)")
    if keep:
        code += source("to_dict_keeping", keep, "None")
    exec(compile(code, f"<{cls.__name__}.to_dict>", "exec"), namespace)
    cls.to_dict = namespace["to_dict"]  # type: ignore[attr-defined]
    return namespace.get("to_dict_keeping")


for _cls in (LLMContentPart, LLMMessage, ToolCallSpec, ToolCallResult, LLMUsage, LLMRequestParams, LLMChunk):
    _compile_to_dict(_cls)
#: `record.to_dict()` with its non-empty message lists left as they are (None: take `to_dict`); for `encode`.
record_dict_keeping_messages = _compile_to_dict(LLMCallRecord, ("input_messages", "output_messages", "outputs"))


def parse_call_records(text: str | bytes | None) -> list[LLMCallRecord]:
    """Parse an `events.call_records` JSON array. Raises ValueError/TypeError when malformed."""
    if text is None or text == "" or text == b"":
        return []
    from synth_cli._json import loads

    data = loads(text)
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise TypeError("call_records is not a JSON array")
    return [LLMCallRecord.from_dict(item) for item in data]


__all__ = [
    "SCHEMA_VERSION",
    "LLMCallRecord",
    "LLMChunk",
    "LLMContentPart",
    "LLMMessage",
    "LLMRequestParams",
    "LLMUsage",
    "ToolCallResult",
    "ToolCallSpec",
    "format_datetime",
    "parse_call_records",
    "parse_datetime",
]
