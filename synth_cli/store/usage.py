"""LLM calls, tokens, cost and latency per model (`usage`).

Never prints."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Iterable, Sequence

from synth_cli.store.reader import TraceStore
from synth_cli.store.sql import (
    as_dt,
    as_int,
    as_usd,
    col,
    cost_usd_sql,
    cutoff_sql_value,
    earliest,
    figures_join,
    latest,
    tokens_sql,
)


@dataclass
class UsageRow:
    model: str | None
    provider: str | None
    calls: int
    input_tokens: int
    output_tokens: int
    total_tokens: int
    cost_usd: float
    latency_ms_total: int
    calls_with_latency: int
    first_used: datetime | None
    last_used: datetime | None

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_ms_total / self.calls_with_latency if self.calls_with_latency else None

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "provider": self.provider, "calls": self.calls,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "total_tokens": self.total_tokens, "cost_usd": as_usd(self.cost_usd),
                "avg_latency_ms": None if self.avg_latency_ms is None else round(self.avg_latency_ms, 3),
                "first_used": self.first_used, "last_used": self.last_used}


def _model_condition(models: Sequence[str]) -> tuple[str, list[Any]]:
    """`--model` values: exact names (case-insensitive), or glob patterns with * ? [."""
    conds: list[str] = []
    params: list[Any] = []
    for model in models:
        if any(ch in model for ch in "*?["):
            conds.append("e.model_name GLOB ?")
        else:
            conds.append("e.model_name = ? COLLATE NOCASE")
        params.append(model)
    return "(" + " OR ".join(conds) + ")", params


def usage(store: TraceStore, *, models: Sequence[str] = (), since: datetime | None = None) -> list[UsageRow]:
    """LLM usage per (model, provider) from the `cais` events: one grouped query."""
    schema = store.schema
    model = col(schema, "events", "model_name", "e")
    provider = col(schema, "events", "provider", "e")
    latency = col(schema, "events", "latency_ms", "e")
    created = col(schema, "events", "created_at", "e")
    inp, out, total = tokens_sql(schema)
    where = ["e.event_type = 'cais'"]
    params: list[Any] = []
    if models:
        if model == "NULL":
            return []
        cond, cond_params = _model_condition(models)
        where.append(cond)
        params.extend(cond_params)
    if since is not None:
        where.append(f"julianday({created}) >= julianday(?)")
        params.append(cutoff_sql_value(since))
    # per-row figures in a subquery SQLite keeps apart (LIMIT -1): GROUP BY then sorts small rows, not blobs
    sql = f"""
SELECT model, provider, COUNT(*) AS calls, SUM(input_tokens) AS input_tokens, SUM(output_tokens) AS output_tokens,
       SUM(total_tokens) AS total_tokens, SUM(cost_usd) AS cost_usd, SUM(latency) AS latency_sum,
       COUNT(latency) AS latency_n, MIN(created) AS first_used, MAX(created) AS last_used
FROM (SELECT {model} AS model, {provider} AS provider, {inp} AS input_tokens, {out} AS output_tokens,
             {total} AS total_tokens, {cost_usd_sql(schema, figures=True)} AS cost_usd, {latency} AS latency, {created} AS created
      FROM events e{figures_join(schema)} WHERE {' AND '.join(where)} LIMIT -1)
GROUP BY model, provider
ORDER BY calls DESC, model, provider"""
    return [UsageRow(model=r["model"], provider=r["provider"], calls=as_int(r["calls"]),
                     input_tokens=as_int(r["input_tokens"]), output_tokens=as_int(r["output_tokens"]),
                     total_tokens=as_int(r["total_tokens"]), cost_usd=float(r["cost_usd"] or 0.0),
                     latency_ms_total=as_int(r["latency_sum"]), calls_with_latency=as_int(r["latency_n"]),
                     first_used=as_dt(r["first_used"]), last_used=as_dt(r["last_used"]))
            for r in store.rows(sql, params)]


def merge_usage(groups: Iterable[Sequence[UsageRow]]) -> list[UsageRow]:
    """Usage rows of several DBs added up per (model, provider)."""
    merged: dict[tuple[Any, Any], UsageRow] = {}
    for rows in groups:
        for row in rows:
            key = (row.model, row.provider)
            cur = merged.get(key)
            if cur is None:
                merged[key] = UsageRow(**{k: getattr(row, k) for k in row.__dataclass_fields__})
                continue
            cur.calls += row.calls
            cur.input_tokens += row.input_tokens
            cur.output_tokens += row.output_tokens
            cur.total_tokens += row.total_tokens
            cur.cost_usd += row.cost_usd
            cur.latency_ms_total += row.latency_ms_total
            cur.calls_with_latency += row.calls_with_latency
            cur.first_used = earliest(cur.first_used, row.first_used)
            cur.last_used = latest(cur.last_used, row.last_used)
    return sorted(merged.values(), key=lambda r: (-r.calls, r.model or "", r.provider or ""))
