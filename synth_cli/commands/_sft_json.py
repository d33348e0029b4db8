"""The `--json` documents of the `sft` commands (docs/json.md): objects, RFC 3339 UTC times,
counts as integers, the provider's own object kept whole under `raw`.

Takes the API layer's typed objects (`Job`, `JobEvent`, `Checkpoint`: attributes plus `raw`)
or a provider's plain dicts (OpenAI's shapes); renders nothing. Every document has an
`object` key naming its kind (`fine_tuning.job`, `fine_tuning.job.event`,
`fine_tuning.job.checkpoint`, as OpenAI's own objects do), so an NDJSON stream of events
followed by the job can be read line by line.
"""

from __future__ import annotations

from typing import Any, Iterable

from synth_cli.output import json_time

JOB = "fine_tuning.job"
EVENT = "fine_tuning.job.event"
CHECKPOINT = "fine_tuning.job.checkpoint"


def _raw(obj: Any) -> dict[str, Any]:
    raw = getattr(obj, "raw", None)
    if isinstance(raw, dict):
        return raw
    return obj if isinstance(obj, dict) else {}


def _field(obj: Any, attr: str, key: str | None = None) -> Any:
    """The typed attribute when there is one, else the raw object's key."""
    if not isinstance(obj, dict) and hasattr(obj, attr):
        return getattr(obj, attr)
    return _raw(obj).get(key or attr)


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def job(obj: Any) -> dict[str, Any]:
    """One job: `{"object": "fine_tuning.job", "id", "status", …, "raw": {…}}`."""
    raw = _raw(obj)
    method = _field(obj, "method")
    if isinstance(method, dict):
        method = method.get("type")
    hyper = _field(obj, "hyperparameters")
    if not isinstance(hyper, dict) or (not hyper and isinstance(obj, dict)):
        from synth_cli.api.fine_tuning import job_hyperparameters

        hyper = job_hyperparameters(raw) if isinstance(obj, dict) else (hyper or {})
    return {
        "object": JOB,
        "id": str(_field(obj, "id") or ""),
        "status": _field(obj, "status"),
        "model": _field(obj, "model"),
        "fine_tuned_model": _field(obj, "fine_tuned_model"),
        "training_file": _field(obj, "training_file"),
        "validation_file": _field(obj, "validation_file"),
        "created_at": json_time(_field(obj, "created_at")),
        "finished_at": json_time(_field(obj, "finished_at")),
        "estimated_finish": json_time(_field(obj, "estimated_finish")),
        "trained_tokens": _int(_field(obj, "trained_tokens")),
        "seed": _int(_field(obj, "seed")),
        "method": method if isinstance(method, str) else None,
        "hyperparameters": hyper,
        "result_files": [str(f) for f in (_field(obj, "result_files") or [])],
        "error": _field(obj, "error") or None,
        "raw": raw,
    }


def event(obj: Any) -> dict[str, Any]:
    """One job event: `{"object": "fine_tuning.job.event", "id", "created_at", "level", "message", …}`."""
    data = _field(obj, "data")
    return {
        "object": EVENT,
        "id": None if _field(obj, "id") is None else str(_field(obj, "id")),
        "created_at": json_time(_field(obj, "created_at")),
        "level": str(_field(obj, "level") or "info"),
        "message": str(_field(obj, "message") or ""),
        "type": _field(obj, "type"),
        "data": data if isinstance(data, dict) else {},
        "raw": _raw(obj),
    }


def checkpoint(obj: Any) -> dict[str, Any]:
    raw = _raw(obj)
    metrics = raw.get("metrics") if isinstance(raw.get("metrics"), dict) else {}
    typed = not isinstance(obj, dict)
    return {
        "object": CHECKPOINT,
        "id": str(_field(obj, "id") or ""),
        "step": _int(getattr(obj, "step", None) if typed else raw.get("step_number")),
        "fine_tuned_model_checkpoint": getattr(obj, "model", None) if typed else raw.get("fine_tuned_model_checkpoint"),
        "train_loss": _num(getattr(obj, "train_loss", None) if typed else metrics.get("train_loss")),
        "valid_loss": _num(getattr(obj, "valid_loss", None) if typed else metrics.get("valid_loss")),
        "created_at": json_time(_field(obj, "created_at")),
        "raw": raw,
    }


def job_list(jobs: Iterable[Any], *, has_more: bool) -> dict[str, Any]:
    items = [job(j) for j in jobs]
    return {"jobs": items, "has_more": has_more}  # more: a larger --limit shows them


def event_list(job_id: str, events: Iterable[Any]) -> dict[str, Any]:
    return {"job_id": job_id, "events": [event(e) for e in events], "has_more": False}


def checkpoint_list(job_id: str, items: Iterable[Any]) -> dict[str, Any]:
    return {"job_id": job_id, "checkpoints": [checkpoint(c) for c in items], "has_more": False}


def _times(row: Any) -> Any:
    """A backend's row with its `*_at` epoch times as RFC 3339 (the row as sent stays under `raw`)."""
    if not isinstance(row, dict):
        return row
    return {k: json_time(v) if k.endswith("_at") else v for k, v in row.items()}


def predictions(job_id: str, data: dict[str, Any], *, offset: int, limit: int) -> dict[str, Any]:
    rows = [_times(r) for r in data.get("predictions") or []]
    total = _int(data.get("total_count"))
    more = total is not None and offset + len(rows) < total
    return {"job_id": job_id, "predictions": rows, "total": total, "offset": offset, "limit": limit,
            "epoch_count": _int(data.get("epoch_count")), "has_more": more,
            "next": offset + len(rows) if more else None, "raw": data}


def trends(job_id: str, data: dict[str, Any], items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"job_id": job_id, "trends": [_times(t) for t in items], "overall_improvement": data.get("overall_improvement"),
            "raw": data}
