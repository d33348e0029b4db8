"""What the simulator charges for a fine-tuning job: trained tokens and simulated GPU time.

Prices are the simulator's own (USD per 1M trained tokens, by base model; a flat GPU-hour rate),
in the range of published fine-tuning prices so that the numbers look familiar. Charges are
whole cents, rounded up, and are recorded as ledger rows when a job succeeds; balance and usage
are both answered from the ledger, so they always agree.
"""

from __future__ import annotations

import math

#: USD per 1M trained tokens, matched by the longest prefix of the base model (case-insensitive).
TRAINING_PRICE_PER_M: dict[str, float] = {
    "gpt-4o-mini": 3.00,
    "gpt-4o": 25.00,
    "gpt-4.1-nano": 1.50,
    "gpt-4.1-mini": 5.00,
    "gpt-4.1": 25.00,
    "gpt-3.5-turbo": 8.00,
    "davinci-002": 6.00,
    "babbage-002": 0.40,
    "qwen/qwen3-0.6b": 0.30,
    "qwen/qwen3-4b": 0.50,
    "qwen/qwen3-8b": 0.80,
    "qwen/": 1.00,
    "meta-llama/": 1.00,
}
DEFAULT_PRICE_PER_M = 2.00
#: USD per simulated GPU hour.
GPU_HOUR_USD = 2.40
#: simulated GPU seconds per optimizer step: a fixed part plus one per 2 500 tokens in the batch.
GPU_SECONDS_PER_STEP = 0.6
TOKENS_PER_GPU_SECOND = 2500


def base_model(model: str) -> str:
    """`ft:gpt-4o-mini:org:suffix:id` → `gpt-4o-mini` (fine-tuning a fine-tune bills its base)."""
    if model.startswith("ft:"):
        parts = model.split(":")
        if len(parts) > 1 and parts[1]:
            return parts[1]
    return model


def price_per_million(model: str) -> float:
    name = base_model(model).casefold()
    best = None
    for prefix in TRAINING_PRICE_PER_M:
        if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
            best = prefix
    return TRAINING_PRICE_PER_M[best] if best else DEFAULT_PRICE_PER_M


def gpu_seconds(steps: int, trained_tokens: int) -> float:
    return round(steps * GPU_SECONDS_PER_STEP + trained_tokens / TOKENS_PER_GPU_SECOND, 3)


def token_charge_cents(model: str, trained_tokens: int) -> int:
    if trained_tokens <= 0:
        return 0
    return max(1, math.ceil(trained_tokens * price_per_million(model) / 1_000_000 * 100 - 1e-9))


def gpu_charge_cents(seconds: float) -> int:
    if seconds <= 0:
        return 0
    return max(1, math.ceil(seconds / 3600 * GPU_HOUR_USD * 100 - 1e-9))
