"""Training-file checks at job creation: `synth_cli.dataset.validate` plus what the simulator needs.

One streaming pass over the file feeds :func:`synth_cli.dataset.validate.validate_lines` (the
same rules as `synth-ai sft validate`, i.e. OpenAI's) and, on the side, counts estimated tokens
per example and keeps a few (prompt, ground truth) pairs for the per-epoch predictions.
The result is a small JSON-able dict, cached on the file row.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

from synth_cli.devserver import simulate

#: (prompt, ground truth) candidates are taken from the first lines of the file only.
SAMPLE_CANDIDATE_LINES = 200
#: reasons (and lines per reason) quoted in an error message.
MAX_REASONS_IN_MESSAGE = 4
MAX_LINES_IN_MESSAGE = 5


def inspect_file(path: Path) -> dict[str, Any]:
    """{valid, errors: [{reason, count, lines}], warnings, n_examples, tokens, samples}."""
    from synth_cli._json import loads
    from synth_cli.dataset.validate import ValidationReport, validate_lines

    tokens = 0
    candidates: list[dict[str, Any]] = []

    def lines(fh) -> Iterator[bytes]:
        nonlocal tokens
        for number, raw in enumerate(fh, 1):
            yield raw
            if not raw.strip():
                continue
            try:
                obj = loads(raw)
            except ValueError:
                continue
            if not isinstance(obj, dict):
                continue
            tokens += simulate.example_tokens(obj)
            if number <= SAMPLE_CANDIDATE_LINES:
                sample = simulate.example_sample(obj)
                if sample is not None:
                    candidates.append({**sample, "sample_index": number - 1})

    with open(path, "rb") as fh:
        report = validate_lines(lines(fh), ValidationReport(path=str(path)))
    return {
        "valid": report.valid,
        "errors": report.errors(),
        "warnings": list(report.warnings),
        "n_examples": report.examples,
        "tokens": tokens,
        "samples": simulate.pick_samples(candidates),
    }


def describe_errors(errors: list[dict[str, Any]]) -> str:
    """`line 2: not valid JSON; lines 4, 5, 9 (12 in all): no assistant message`."""
    parts = []
    for entry in errors[:MAX_REASONS_IN_MESSAGE]:
        lines = [n for n in entry.get("lines", []) if n]
        count = int(entry.get("count", len(lines)))
        if not lines:
            parts.append(str(entry["reason"]))
        elif count == 1:
            parts.append(f"line {lines[0]}: {entry['reason']}")
        else:
            shown = ", ".join(str(n) for n in lines[:MAX_LINES_IN_MESSAGE])
            more = f" ({count} in all)" if count > min(len(lines), MAX_LINES_IN_MESSAGE) else ""
            parts.append(f"lines {shown}{more}: {entry['reason']}")
    if len(errors) > MAX_REASONS_IN_MESSAGE:
        parts.append(f"and {len(errors) - MAX_REASONS_IN_MESSAGE} more kinds of error")
    return "; ".join(parts)
