"""Totals and averages over `LLMCallRecord`s: tokens by kind, cost, latency, models, tool calls, outcomes.

```python
summary = aggregate(records)
summary.input_tokens, summary.cost_usd, summary.avg_latency_ms, summary.models
summary.to_dict()                       # JSON-ready
by_model = aggregate_by(records, key=lambda r: r.model_name)
```

Rules, so totals can be checked by hand:

* token totals sum what the records report (a missing figure counts 0); `total_tokens` uses
  a record's `usage.total_tokens`, else its input + output;
* `cost_usd` sums the records that report a cost; `calls_with_cost` says how many did;
* averages divide by the calls that report the figure (`avg_latency_ms` over calls with a
  latency, token averages over calls with usage), and are None when no call does;
* a call succeeded when its `outcome` is absent or "success"; every other outcome
  ("error", "timeout", "cancelled") counts as an error;
* `models` / `providers` map each name to its number of calls, most used first (ties by name).

This module never prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Callable, Iterable

from synth_cli.tracing.models import LLMCallRecord, format_datetime


@dataclass
class Aggregate:
    """Totals over a set of call records (see the module docstring for the rules)."""

    call_count: int = 0
    success_count: int = 0
    error_count: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    reasoning_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_usd: float = 0.0
    calls_with_cost: int = 0
    calls_with_usage: int = 0
    latency_ms_total: int = 0
    calls_with_latency: int = 0
    max_latency_ms: int | None = None
    tool_call_count: int = 0
    calls_with_tool_calls: int = 0
    models: dict[str, int] = field(default_factory=dict)
    providers: dict[str, int] = field(default_factory=dict)
    errors_by_type: dict[str, int] = field(default_factory=dict)
    first_started_at: datetime | None = None
    last_completed_at: datetime | None = None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_total / self.calls_with_latency if self.calls_with_latency else None

    @property
    def avg_input_tokens(self) -> float | None:
        return self.input_tokens / self.calls_with_usage if self.calls_with_usage else None

    @property
    def avg_output_tokens(self) -> float | None:
        return self.output_tokens / self.calls_with_usage if self.calls_with_usage else None

    @property
    def avg_cost_usd(self) -> float | None:
        return self.cost_usd / self.calls_with_cost if self.calls_with_cost else None

    @property
    def success_rate(self) -> float | None:
        return self.success_count / self.call_count if self.call_count else None

    def add(self, record: LLMCallRecord) -> "Aggregate":
        """Fold one record in (for streaming use); returns self."""
        self.call_count += 1
        if record.succeeded:
            self.success_count += 1
        else:
            self.error_count += 1
            kind = str((record.error or {}).get("type") or record.outcome or "error")
            self.errors_by_type[kind] = self.errors_by_type.get(kind, 0) + 1
        usage = record.usage
        if usage is not None:
            reported = False
            for name in ("input_tokens", "output_tokens", "reasoning_tokens", "cache_read_tokens",
                         "cache_write_tokens"):
                value = getattr(usage, name)
                if value is not None:
                    setattr(self, name, getattr(self, name) + int(value))
                    reported = True
            if usage.total_tokens is not None:
                self.total_tokens += int(usage.total_tokens)
                reported = True
            elif usage.input_tokens is not None or usage.output_tokens is not None:
                self.total_tokens += int(usage.input_tokens or 0) + int(usage.output_tokens or 0)
            if reported:
                self.calls_with_usage += 1
            if usage.cost_usd is not None:
                self.cost_usd += float(usage.cost_usd)
                self.calls_with_cost += 1
        if record.latency_ms is not None:
            self.latency_ms_total += int(record.latency_ms)
            self.calls_with_latency += 1
            if self.max_latency_ms is None or record.latency_ms > self.max_latency_ms:
                self.max_latency_ms = int(record.latency_ms)
        if record.output_tool_calls:
            self.tool_call_count += len(record.output_tool_calls)
            self.calls_with_tool_calls += 1
        if record.model_name:
            self.models[record.model_name] = self.models.get(record.model_name, 0) + 1
        if record.provider:
            self.providers[record.provider] = self.providers.get(record.provider, 0) + 1
        started = _naive(record.started_at)
        if started is not None and (self.first_started_at is None or started < self.first_started_at):
            self.first_started_at = started
        completed = _naive(record.completed_at) or started
        if completed is not None and (self.last_completed_at is None or completed > self.last_completed_at):
            self.last_completed_at = completed
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "call_count": self.call_count,
            "success_count": self.success_count,
            "error_count": self.error_count,
            "success_rate": self.success_rate,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "total_tokens": self.total_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "avg_input_tokens": self.avg_input_tokens,
            "avg_output_tokens": self.avg_output_tokens,
            "calls_with_usage": self.calls_with_usage,
            "cost_usd": self.cost_usd,
            "calls_with_cost": self.calls_with_cost,
            "avg_cost_usd": self.avg_cost_usd,
            "latency_ms_total": self.latency_ms_total,
            "avg_latency_ms": self.avg_latency_ms,
            "max_latency_ms": self.max_latency_ms,
            "calls_with_latency": self.calls_with_latency,
            "tool_call_count": self.tool_call_count,
            "calls_with_tool_calls": self.calls_with_tool_calls,
            "models": _ranked(self.models),
            "providers": _ranked(self.providers),
            "errors_by_type": _ranked(self.errors_by_type),
            "first_started_at": format_datetime(self.first_started_at),
            "last_completed_at": format_datetime(self.last_completed_at),
        }


def _naive(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is not None:
        from datetime import timezone

        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


def _ranked(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], str(item[0]))))


def aggregate(records: Iterable[LLMCallRecord]) -> Aggregate:
    """One :class:`Aggregate` over `records` (any iterable; consumed once, constant memory)."""
    result = Aggregate()
    for record in records:
        result.add(record)
    result.models = _ranked(result.models)
    result.providers = _ranked(result.providers)
    return result


def aggregate_by(records: Iterable[LLMCallRecord], key: Callable[[LLMCallRecord], Any]) -> dict[Any, Aggregate]:
    """One :class:`Aggregate` per `key(record)` (e.g. model name), in first-seen order."""
    groups: dict[Any, Aggregate] = {}
    for record in records:
        groups.setdefault(key(record), Aggregate()).add(record)
    return groups


__all__ = ["Aggregate", "aggregate", "aggregate_by"]
