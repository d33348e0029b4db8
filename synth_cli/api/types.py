"""Typed fine-tuning objects, the same for every provider (as openai-python's `FineTuningJob`).

Each provider parses its own wire shapes into these; `raw` keeps the object exactly as the
server sent it, for `--json`. Statuses are normalised to the OpenAI vocabulary
(`validating_files`, `queued`, `running`, `paused`, `succeeded`, `failed`, `cancelled`), so the live
view and the exit codes do not depend on the provider; `raw` still has the provider's own word.
Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled"})


def one_line(text: Any) -> str:
    return " ".join(str(text if text is not None else "").split())


def _num(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    return None


def _int(value: Any) -> int | None:
    number = _num(value)
    return int(number) if number is not None else None


@dataclass
class Job:
    id: str
    status: str
    model: str | None = None
    fine_tuned_model: str | None = None
    training_file: str | None = None
    validation_file: str | None = None
    created_at: float | None = None
    finished_at: float | None = None
    estimated_finish: float | None = None
    trained_tokens: int | None = None
    seed: int | None = None
    method: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    result_files: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    error: Any = None
    provider_status: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    @property
    def error_text(self) -> str | None:
        error = self.error
        if isinstance(error, dict) and (error.get("message") or error.get("code")):
            text = one_line(error.get("message") or "")
            extras = [f"code {error['code']}" if error.get("code") else None,
                      f"param {error['param']}" if error.get("param") else None]
            extras = [e for e in extras if e]
            return f"{text} ({', '.join(extras)})" if extras and text else (text or ", ".join(extras))
        if isinstance(error, str) and error:
            return one_line(error)
        return None

    @property
    def wall_seconds(self) -> float | None:
        if self.created_at is not None and self.finished_at is not None and self.finished_at >= self.created_at:
            return self.finished_at - self.created_at
        return None

    @classmethod
    def from_openai(cls, obj: Any) -> Job:
        """An OpenAI `FineTuningJob` (also what Synth backends and `synth-ai serve` answer)."""
        obj = obj if isinstance(obj, dict) else {}
        method = obj.get("method")
        hp: dict[str, Any] = {}
        kind = None
        if isinstance(method, dict):
            kind = method.get("type")
            section = method.get(kind or "supervised") or {}
            if isinstance(section, dict) and isinstance(section.get("hyperparameters"), dict):
                hp = dict(section["hyperparameters"])
        if not hp and isinstance(obj.get("hyperparameters"), dict):
            hp = dict(obj["hyperparameters"])
        metadata = obj.get("metadata")
        status = str(obj.get("status") or "unknown")
        return cls(id=str(obj.get("id") or ""), status=status, model=obj.get("model"),
                   fine_tuned_model=obj.get("fine_tuned_model"), training_file=obj.get("training_file"),
                   validation_file=obj.get("validation_file"), created_at=_num(obj.get("created_at")),
                   finished_at=_num(obj.get("finished_at")), estimated_finish=_num(obj.get("estimated_finish")),
                   trained_tokens=_int(obj.get("trained_tokens")), seed=_int(obj.get("seed")), method=kind,
                   hyperparameters=hp, result_files=[str(f) for f in obj.get("result_files") or []],
                   metadata=dict(metadata) if isinstance(metadata, dict) else {}, error=obj.get("error"),
                   provider_status=status, raw=obj)


@dataclass
class JobEvent:
    id: str
    created_at: float
    message: str
    level: str = "info"
    type: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_openai(cls, obj: dict[str, Any]) -> JobEvent:
        ident = obj.get("id")
        key = str(ident) if ident is not None else repr(sorted(obj.items(), key=lambda kv: kv[0]))
        data = obj.get("data")
        return cls(id=key, created_at=_num(obj.get("created_at")) or 0.0, message=str(obj.get("message") or ""),
                   level=str(obj.get("level") or "info"), type=obj.get("type"),
                   data=dict(data) if isinstance(data, dict) else {}, raw=obj)


@dataclass
class Checkpoint:
    id: str
    step: int | None
    model: str | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    created_at: float | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_openai(cls, obj: dict[str, Any]) -> Checkpoint:
        metrics = obj.get("metrics") if isinstance(obj.get("metrics"), dict) else {}
        return cls(id=str(obj.get("id") or ""), step=_int(obj.get("step_number")),
                   model=obj.get("fine_tuned_model_checkpoint"), train_loss=_num(metrics.get("train_loss")),
                   valid_loss=_num(metrics.get("valid_loss")), created_at=_num(obj.get("created_at")), raw=obj)


@dataclass
class FileObject:
    id: str
    bytes: int | None = None
    filename: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class PriceEstimate:
    """What a job is expected to cost. `source`: `provider` (its estimate endpoint) or `table` (pricing.toml)."""

    usd: float | None
    source: str
    train_tokens: int | None = None
    allowed: bool | None = None
    user_limit_usd: float | None = None
    as_of: str | None = None
    note: str | None = None


@dataclass
class ModelLimits:
    """What the provider says a base model accepts (Together's `/fine-tunes/models/limits`)."""

    model: str
    max_epochs: int | None = None
    min_batch_size: int | None = None
    max_batch_size: int | None = None
    max_learning_rate: float | None = None
    min_learning_rate: float | None = None
    context_length: int | None = None
    max_lora_rank: int | None = None
    supports_tools: bool | None = None
    supports_vision: bool | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
