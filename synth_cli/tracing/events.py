"""Events a `SessionTracer` records, with the fields of the published `tracing_v3` package.

* :class:`LMCAISEvent`: an LLM call (event_type `cais`), its `LLMCallRecord`s and the
  model/provider/token/cost/latency columns derived from them. `cost_usd` is in US
  dollars here; the `events.cost_usd` column stores whole cents (see :func:`usd_to_cents`).
* :class:`EnvironmentEvent`: reward, terminated/truncated and the environment state.
* :class:`RuntimeEvent`: the actions the runtime took (stored in the event's metadata
  under `actions`, as the published package does).

Every event has a `system_instance_id`, a :class:`TimeRecord` (`event_time` unix seconds,
`message_time` an integer such as the turn number), a `metadata` dict (the tracer adds
`step_id`) and an optional `event_metadata` list. `event_time`/`message_time` may be
passed directly as a shortcut for the time record. This module never prints.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields
from typing import Any

from synth_cli.tracing.models import LLMCallRecord


@dataclass
class TimeRecord:
    """When an event happened: unix seconds, plus an optional integer such as the turn number."""

    event_time: float = field(default_factory=time.time)
    message_time: int | None = None


@dataclass(kw_only=True)
class BaseEvent:
    system_instance_id: str = ""
    time_record: TimeRecord | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    event_metadata: list[Any] | None = None
    event_time: float | None = None
    message_time: int | None = None

    event_type = ""

    def __post_init__(self) -> None:
        if self.time_record is None:
            self.time_record = TimeRecord(
                event_time=time.time() if self.event_time is None else float(self.event_time),
                message_time=self.message_time)
        else:
            if self.event_time is not None:
                self.time_record.event_time = float(self.event_time)
            if self.message_time is not None:
                self.time_record.message_time = self.message_time
        self.event_time = self.time_record.event_time
        self.message_time = self.time_record.message_time
        if self.metadata is None:
            self.metadata = {}

    def columns(self) -> dict[str, Any]:
        """The type-specific `events` columns (JSON columns as Python objects)."""
        return {}


@dataclass(kw_only=True)
class RuntimeEvent(BaseEvent):
    """Actions the runtime took (e.g. discrete action ids, tool selections)."""

    actions: list[Any] = field(default_factory=list)

    event_type = "runtime"

    def stored_metadata(self) -> dict[str, Any]:
        return {**self.metadata, "actions": list(self.actions)}


@dataclass(kw_only=True)
class EnvironmentEvent(BaseEvent):
    """Feedback from an environment, Gymnasium style."""

    reward: float | None = 0.0
    terminated: bool = False
    truncated: bool = False
    system_state_before: dict[str, Any] | None = None
    system_state_after: dict[str, Any] | None = None

    event_type = "environment"

    def columns(self) -> dict[str, Any]:
        return {
            "reward": None if self.reward is None else float(self.reward),
            "terminated": bool(self.terminated),
            "truncated": bool(self.truncated),
            "system_state_before": self.system_state_before,
            "system_state_after": self.system_state_after,
        }


@dataclass(kw_only=True)
class LMCAISEvent(BaseEvent):
    """One LLM call (or a few, e.g. retries) with its call records; `cost_usd` in US dollars."""

    model_name: str = ""
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    cost_usd: float | None = None
    latency_ms: int | None = None
    span_id: str | None = None
    trace_id: str | None = None
    system_state_before: dict[str, Any] | None = None
    system_state_after: dict[str, Any] | None = None
    call_records: list[LLMCallRecord] = field(default_factory=list)

    event_type = "cais"

    @classmethod
    def from_records(cls, records: LLMCallRecord | list[LLMCallRecord], **kwargs: Any) -> "LMCAISEvent":
        """An event whose model/provider/token/cost/latency fields are derived from `records`.

        Explicit keyword arguments win over derived values. Tokens and cost sum over
        the records that report them (None when none does); `total_tokens` falls back
        to input + output; latency sums the records' latencies; model, provider, span
        and trace ids come from the first record that has them.
        """
        if isinstance(records, LLMCallRecord):
            records = [records]
        records = list(records)
        if len(records) == 1:  # the common case, spelled out: what the sums and firsts give for one record
            r = records[0]
            usage = r.usage
            derived: dict[str, Any] = {
                "model_name": r.model_name or "", "provider": r.provider or None,
                "input_tokens": usage.input_tokens if usage else None,
                "output_tokens": usage.output_tokens if usage else None,
                "total_tokens": _total_tokens(r), "cost_usd": usage.cost_usd if usage else None,
                "latency_ms": r.latency_ms, "span_id": r.span_id or None, "trace_id": r.trace_id or None,
            }
        else:
            derived = cls._derive(records)
        for key, value in kwargs.items():
            if value is not None or key not in derived:
                derived[key] = value
        return cls(call_records=records, **derived)

    @classmethod
    def for_call(cls, record: LLMCallRecord, *, system_instance_id: str = "", cost_usd: float | None = None,
                 metadata: dict[str, Any] | None = None, event_metadata: list[Any] | None = None,
                 span_id: str | None = None, trace_id: str | None = None,
                 system_state_before: dict[str, Any] | None = None,
                 system_state_after: dict[str, Any] | None = None, event_time: float | None = None,
                 message_time: int | None = None) -> "LMCAISEvent":
        """`from_records([record], ...)` with these keywords, spelled out (the tracer's hot path)."""
        usage = record.usage
        if usage:
            input_tokens, output_tokens = usage.input_tokens, usage.output_tokens
            if cost_usd is None:
                cost_usd = usage.cost_usd
        else:
            input_tokens = output_tokens = None
        if cls is LMCAISEvent and _PLAIN_INIT:  # what the generated __init__ and __post_init__ set, in their order
            event = _new_object(cls)
            event.system_instance_id = system_instance_id
            if event_time is None:
                event_time = time.time()
            else:
                event_time = float(event_time)
            event.time_record = TimeRecord(event_time, message_time)
            event.metadata = {} if metadata is None else metadata
            event.event_metadata = event_metadata
            event.event_time = event_time
            event.message_time = message_time
            event.model_name = record.model_name or ""
            event.provider = record.provider or None
            event.input_tokens = input_tokens
            event.output_tokens = output_tokens
            event.total_tokens = _total_tokens(record)
            event.cost_usd = cost_usd
            event.latency_ms = record.latency_ms
            event.span_id = record.span_id or None if span_id is None else span_id
            event.trace_id = record.trace_id or None if trace_id is None else trace_id
            event.system_state_before = system_state_before
            event.system_state_after = system_state_after
            event.call_records = [record]
            return event
        return cls(call_records=[record], model_name=record.model_name or "", provider=record.provider or None,
                   input_tokens=input_tokens, output_tokens=output_tokens, total_tokens=_total_tokens(record),
                   cost_usd=cost_usd, latency_ms=record.latency_ms,
                   span_id=record.span_id or None if span_id is None else span_id,
                   trace_id=record.trace_id or None if trace_id is None else trace_id,
                   system_instance_id=system_instance_id, metadata=metadata, event_metadata=event_metadata,
                   system_state_before=system_state_before, system_state_after=system_state_after,
                   event_time=event_time, message_time=message_time)

    @staticmethod
    def _derive(records: list[LLMCallRecord]) -> dict[str, Any]:
        return {
            "model_name": _first(r.model_name for r in records) or "",
            "provider": _first(r.provider for r in records),
            "input_tokens": _sum(r.usage.input_tokens if r.usage else None for r in records),
            "output_tokens": _sum(r.usage.output_tokens if r.usage else None for r in records),
            "total_tokens": _sum(_total_tokens(r) for r in records),
            "cost_usd": _sum(r.usage.cost_usd if r.usage else None for r in records),
            "latency_ms": _sum(r.latency_ms for r in records),
            "span_id": _first(r.span_id for r in records),
            "trace_id": _first(r.trace_id for r in records),
        }

    def columns(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name or None,
            "provider": self.provider,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "cost_usd": usd_to_cents(self.cost_usd),
            "latency_ms": self.latency_ms,
            "span_id": self.span_id,
            "trace_id": self.trace_id,
            "system_state_before": self.system_state_before,
            "system_state_after": self.system_state_after,
        }


_new_object = object.__new__
#: `for_call` sets an `LMCAISEvent`'s fields itself while they are these and `__post_init__` is
#: BaseEvent's (the dataclass `__init__` sets them in this order, then `__post_init__` makes the
#: time record and replaces a None `metadata`); otherwise it calls the class.
_PLAIN_INIT = (tuple(f.name for f in fields(LMCAISEvent)) == (
    "system_instance_id", "time_record", "metadata", "event_metadata", "event_time", "message_time", "model_name",
    "provider", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "latency_ms", "span_id", "trace_id",
    "system_state_before", "system_state_after", "call_records")
    and LMCAISEvent.__post_init__ is BaseEvent.__post_init__ and tuple(f.name for f in fields(TimeRecord)) == (
        "event_time", "message_time") and "__new__" not in LMCAISEvent.__dict__)


def usd_to_cents(cost_usd: float | None) -> int | None:
    """Whole cents for `events.cost_usd`, truncated toward zero as the published package stores them.

    The published writer stores `int(cost * 100)`, so sub-cent costs read back as 0
    (the exact figure stays in each call record's `usage.cost_usd`). Float noise is
    removed first, so $0.29 is 29 cents rather than the 28 that `int(0.29 * 100)` gives.
    """
    if cost_usd is None:
        return None
    value = float(cost_usd)
    if math.isnan(value) or math.isinf(value):
        return None
    cents = int(round(value * 100, 6))
    # an INTEGER column holds 64 bits: a cost past that (odd data) keeps only its exact record figure
    return cents if -2 ** 63 <= cents < 2 ** 63 else None


def _total_tokens(record: LLMCallRecord) -> int | None:
    usage = record.usage
    if usage is None:
        return None
    if usage.total_tokens is not None:
        return usage.total_tokens
    if usage.input_tokens is None and usage.output_tokens is None:
        return None
    return (usage.input_tokens or 0) + (usage.output_tokens or 0)


def _sum(values: Any) -> Any:
    total = None
    for value in values:
        if value is not None:
            total = value if total is None else total + value
    return total


def _first(values: Any) -> Any:
    for value in values:
        if value:
            return value
    return None


__all__ = ["BaseEvent", "EnvironmentEvent", "LMCAISEvent", "RuntimeEvent", "TimeRecord", "usd_to_cents"]
