"""What a fine-tuning job will train and cost, worked out before anything is uploaded.

* :func:`count_tokens` — examples and estimated tokens of a local JSONL file (the same estimate
  `synth-ai serve` bills: about four characters per token plus a few per message);
* :func:`table_price` — the `[[training]]` rows of `synth_cli/data/pricing.toml`: USD per 1M
  trained tokens per provider and base model, with the `as_of` date of each price;
  :data:`STALE_DAYS` old rows are flagged;
* :func:`default_epochs` — what "auto" epochs come to (OpenAI's rule, as `serve` applies it;
  Together's default of 1).

`sft submit`/`sft run` combine these with the provider's own estimate (where it has one), the
balance and the base model's limits. Nothing here prints or does HTTP.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from synth_cli.api.types import PriceEstimate

STALE_DAYS = 180
TABLE = Path(__file__).resolve().parents[1] / "data" / "pricing.toml"


@dataclass
class TokenCount:
    examples: int
    tokens: int  # per epoch


def count_tokens(path: Path) -> TokenCount:
    from synth_cli._json import loads
    from synth_cli.devserver.simulate import example_tokens

    examples = tokens = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.strip():
                continue
            try:
                obj = loads(raw)
            except ValueError:
                continue
            if isinstance(obj, dict):
                examples += 1
                tokens += example_tokens(obj)
    return TokenCount(examples, tokens)


def default_epochs(provider: str, examples: int) -> int:
    if provider == "together":
        return 1
    from synth_cli.devserver.simulate import resolve_hyperparameters

    return resolve_hyperparameters(max(1, examples), {}).n_epochs


def _rows() -> list[dict[str, Any]]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    with open(TABLE, "rb") as fh:
        return [r for r in tomllib.load(fh).get("training", []) if isinstance(r, dict)]


def table_price(provider: str, model: str, trained_tokens: int, *, today: date | None = None
                ) -> PriceEstimate | None:
    """The price-table estimate for `trained_tokens` of `model` at `provider` (None: no row)."""
    wanted = model.strip().lower()
    base = wanted.split(":")[1] if wanted.startswith("ft:") and ":" in wanted[3:] else wanted
    for row in _rows():
        if str(row.get("provider")) != provider:
            continue
        names = [str(row.get("model", "")).lower(), *(str(a).lower() for a in row.get("aliases") or [])]
        if base not in names:
            continue
        per_million = float(row["per_million"])
        as_of = str(row.get("as_of") or "")
        note = row.get("note")
        try:
            age = ((today or date.today()) - date.fromisoformat(as_of)).days
        except ValueError:
            age = None
        if age is not None and age > STALE_DAYS:
            stale = f"the price table is {age} days old (as of {as_of}); check {row.get('source')}"
            note = f"{note}; {stale}" if note else stale
        return PriceEstimate(usd=per_million * trained_tokens / 1_000_000, source="table",
                             train_tokens=trained_tokens, as_of=as_of, note=note)
    return None


@dataclass
class Preflight:
    """Everything `sft submit`/`sft run` shows and checks before the first byte is uploaded."""

    provider: str
    label: str
    model: str
    examples: int | None = None
    tokens_per_epoch: int | None = None
    epochs: int | None = None
    epochs_note: str | None = None
    total_tokens: int | None = None
    estimate: PriceEstimate | None = None
    balance_usd: float | None = None
    limits: Any = None
    problems: list[str] | None = None
    provider_estimate: PriceEstimate | None = None

    def to_dict(self) -> dict[str, Any]:
        def est(e: PriceEstimate | None) -> dict[str, Any] | None:
            return None if e is None else {"usd": e.usd, "source": e.source, "as_of": e.as_of, "note": e.note,
                                           "train_tokens": e.train_tokens, "allowed": e.allowed}
        return {"provider": self.provider, "model": self.model, "examples": self.examples,
                "tokens_per_epoch": self.tokens_per_epoch, "epochs": self.epochs, "total_tokens": self.total_tokens,
                "estimate": est(self.estimate), "provider_estimate": est(self.provider_estimate),
                "balance_usd": self.balance_usd}


def preflight(provider: Any, spec: Any, training_path: Path | None) -> Preflight:
    """Tokens, price (table), balance and base-model limits for a job about to be created."""
    from synth_cli.api.errors import APIDecodeError, APIStatusError

    check = Preflight(provider=provider.name, label=provider.label, model=spec.model, problems=[])
    if training_path is not None:
        counted = count_tokens(training_path)
        check.examples, check.tokens_per_epoch = counted.examples, counted.tokens
        if spec.epochs is not None:
            check.epochs = int(spec.epochs)
        else:
            check.epochs = default_epochs(provider.name, counted.examples)
            check.epochs_note = "the backend's default for this many examples"
        check.total_tokens = counted.tokens * check.epochs
        check.estimate = table_price(provider.price_key(), spec.model, check.total_tokens)
    try:
        check.balance_usd = provider.balance_usd()
    except (APIStatusError, APIDecodeError):  # a backend without account endpoints
        check.balance_usd = None
    limits = provider.model_limits(spec.model)
    check.limits = limits
    if limits is not None:
        problems = check.problems
        if limits.max_epochs and check.epochs and check.epochs > limits.max_epochs:
            problems.append(f"--epochs {check.epochs}: {spec.model} trains at most {limits.max_epochs} epochs")
        if spec.batch_size is not None:
            low, high = limits.min_batch_size, limits.max_batch_size
            if (low and spec.batch_size < low) or (high and spec.batch_size > high):
                problems.append(f"--batch-size {spec.batch_size}: {spec.model} takes {low}-{high}")
        rate = spec.learning_rate
        if rate is not None and limits.max_learning_rate and not (
                (limits.min_learning_rate or 0) <= rate <= limits.max_learning_rate):
            problems.append(f"--learning-rate {rate:g}: {spec.model} takes {limits.min_learning_rate or 0:g}-"
                            f"{limits.max_learning_rate:g}")
        rank = spec.params.get("lora_r")
        if rank and rank.isdigit() and limits.max_lora_rank and int(rank) > limits.max_lora_rank:
            problems.append(f"--param lora_r={rank}: {spec.model} takes a LoRA rank up to {limits.max_lora_rank}")
    return check
