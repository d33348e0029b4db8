"""The cost and eligibility check `sft submit`/`sft run` show before uploading, and what it refuses.

Computation lives in `synth_cli.api.cost`; this module renders it (stderr status lines, so
stdout keeps the command's result), enforces `--max-cost`, asks on a terminal when a job is
estimated above `SYNTH_CONFIRM_ABOVE_USD` (default $5; `-y` skips; without a terminal there is
never a prompt), and checks the provider's own estimate after the upload where it has one.
"""

from __future__ import annotations

import sys
from typing import Any

from synth_cli.errors import EXIT_USAGE, SynthError, UsageError
from synth_cli.output import fmt_int, fmt_usd, get_output

CONFIRM_VAR = "SYNTH_CONFIRM_ABOVE_USD"
DEFAULT_CONFIRM_ABOVE = 5.0


def run(provider: Any, spec: Any, training_path: Any):
    from synth_cli.api.cost import preflight

    check = preflight(provider, spec, training_path)
    if check.problems:
        raise UsageError("; ".join(check.problems) + " (nothing was uploaded)",
                         hint=f"the limits come from {provider.label}'s model limits for {spec.model}")
    return check


def _price_text(estimate) -> str:
    if estimate is None or estimate.usd is None:
        return "unknown"
    where = "price table" if estimate.source == "table" else "the provider's estimate"
    as_of = f", as of {estimate.as_of}" if estimate.as_of else ""
    return f"≈ {fmt_usd(estimate.usd)} ({where}{as_of})"


def render(check) -> None:
    out = get_output()
    if check.total_tokens is not None:
        epochs = f"{check.epochs} epoch{'s' if check.epochs != 1 else ''}"
        if check.epochs_note:
            epochs += f" ({check.epochs_note})"
        out.status(f"training {fmt_int(check.examples)} examples on {check.label}: ≈ {fmt_int(check.tokens_per_epoch)} "
                   f"tokens per epoch × {epochs} = ≈ {fmt_int(check.total_tokens)} trained tokens")
        out.status(f"estimated price: {_price_text(check.estimate)}")
        if check.estimate is not None and check.estimate.note and "days old" in check.estimate.note:
            out.warn(check.estimate.note[check.estimate.note.find("the price table"):])
    else:
        out.status("estimated price: unknown (the training file was given as an uploaded file id)")
    if check.balance_usd is not None:
        out.status(f"balance: {fmt_usd(check.balance_usd)}")
    limits = check.limits
    if limits is not None:
        bits = []
        if limits.context_length:
            bits.append(f"context {fmt_int(limits.context_length)} tokens")
        if limits.max_epochs:
            bits.append(f"≤ {limits.max_epochs} epochs")
        if limits.max_batch_size:
            bits.append(f"batch size {limits.min_batch_size or 1}-{limits.max_batch_size}")
        if limits.max_lora_rank:
            bits.append(f"LoRA rank ≤ {limits.max_lora_rank}")
        if limits.supports_tools is not None:
            bits.append("tools " + ("yes" if limits.supports_tools else "no"))
        if bits:
            out.status(f"{check.model} limits: " + ", ".join(bits))


def _confirm_above() -> float:
    from synth_cli.config import env_number

    return env_number(CONFIRM_VAR, DEFAULT_CONFIRM_ABOVE, high=None, unit="USD")


def _interactive() -> bool:
    try:
        return sys.stdin.isatty() and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def enforce(check, *, max_cost: float | None, yes: bool) -> None:
    usd = check.estimate.usd if check.estimate is not None else None
    if max_cost is not None:
        if usd is None:
            raise SynthError(f"--max-cost {fmt_usd(max_cost)}: no price is known for {check.model} on {check.label}, "
                             "so the limit cannot be checked; nothing was uploaded",
                             hint="add a [[training]] row to the price table, or drop --max-cost")
        if usd > max_cost:
            raise SynthError(f"the job is estimated at {fmt_usd(usd)}, above --max-cost {fmt_usd(max_cost)}; "
                             "nothing was uploaded", hint="train fewer epochs or fewer examples, or raise --max-cost")
    threshold = _confirm_above()
    if usd is not None and usd > threshold and not yes and _interactive():
        import typer

        if not typer.confirm(f"This job is estimated at {fmt_usd(usd)} (above {fmt_usd(threshold)}). Start it?",
                             default=False, err=True):
            raise SynthError("not started: declined at the cost prompt; nothing was uploaded", exit_code=EXIT_USAGE)


def after_upload(provider: Any, spec: Any, check, *, max_cost: float | None) -> None:
    """The provider's own estimate (it needs the uploaded file): shown, and held to --max-cost."""
    out = get_output()
    estimate = provider.estimate_price(spec)
    if estimate is None:
        return
    check.provider_estimate = estimate
    tokens = f" for ≈ {fmt_int(estimate.train_tokens)} trained tokens" if estimate.train_tokens else ""
    out.status(f"{provider.label}'s estimate: {_price_text(estimate)}{tokens}")
    if estimate.allowed is False:
        limit = f" (your limit: {fmt_usd(estimate.user_limit_usd)})" if estimate.user_limit_usd is not None else ""
        raise SynthError(f"{provider.label} says this job is not allowed to proceed{limit}; the job was not created",
                         hint=f"the training file {spec.training_file} stays uploaded; add credit or train less")
    if max_cost is not None and estimate.usd is not None and estimate.usd > max_cost:
        raise SynthError(f"{provider.label} estimates the job at {fmt_usd(estimate.usd)}, above --max-cost "
                         f"{fmt_usd(max_cost)}; the job was not created",
                         hint=f"the training file {spec.training_file} stays uploaded (reuse it by id)")
