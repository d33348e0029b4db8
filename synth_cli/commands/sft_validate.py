"""`synth-ai sft validate FILE`: check a chat fine-tuning JSONL file like OpenAI does."""

from __future__ import annotations

from typing import Optional

import typer

from synth_cli.output import fmt_int, get_output


def validate_command(
    file: str = typer.Argument(..., metavar="FILE", help="JSONL file to check (one chat example per line)."),
    model: Optional[str] = typer.Option(None, "--model", "-m", metavar="MODEL",
                                        help="The model to fine-tune: sets the limit of tokens per example "
                                             "(default: 65,536, OpenAI's current fine-tuning models)."),
    max_example_tokens: Optional[int] = typer.Option(None, "--max-example-tokens", metavar="N", min=1,
                                                     help="Tokens allowed per example, instead of the model's "
                                                          "(also $SYNTH_MAX_EXAMPLE_TOKENS)."),
    validation: bool = typer.Option(False, "--validation",
                                    help="The file is a validation file: no minimum number of examples."),
) -> None:
    """Check a chat fine-tuning JSONL file the way OpenAI's fine-tuning validation does.

    Each line must be a JSON object with a non-empty `messages` list of allowed roles and
    keys, content or tool calls, at least one assistant message, tool calls whose arguments
    are JSON strings, tool messages answering earlier calls, and well-formed `tools`.
    As the fine-tuning API would: at least 10 examples (a training file), and no example
    over the model's limit of tokens per example (an estimate: 4 bytes of compact JSON per
    token, 765 per image; `filter` reports the same count). Errors are grouped by reason
    with counts and the first line numbers. Exit status 1 when the file is not valid.
    """
    from synth_cli.dataset.validate import target_for, validate_file
    from synth_cli.errors import DatasetError

    out = get_output()
    target = target_for(model, max_example_tokens)
    if validation:
        target.min_examples = 1
    report = validate_file(file, target)
    out.result(report.to_dict(), lambda: _render(report, out), essential=[])  # --quiet: the exit code says it
    for warning in report.warnings:
        out.warn(warning)
    if not report.valid:
        if report.examples == 0:
            raise DatasetError(f"{file}: no examples (empty file)")
        if report.invalid:
            message = f"{file}: {fmt_int(report.invalid)} of {fmt_int(report.examples)} examples are invalid"
        else:
            message = f"{file}: {report.summary()}"
        if out.json_mode:
            out.error(message)
            raise typer.Exit(1)
        raise DatasetError(message, hint="add examples (filter --min-reward lower, more sessions)"
                           if report.too_few and not report.invalid else None)


def _render(report, out) -> None:
    if report.valid:
        out.line(f"✓ {report.path}: {fmt_int(report.examples)} examples, all valid "
                 f"({fmt_int(report.with_tool_calls)} with tool calls, {fmt_int(report.messages)} messages, "
                 f"≈ {fmt_int(report.tokens)} tokens, at most ≈ {fmt_int(report.max_example_tokens)} per example "
                 f"of {fmt_int(report.target.max_example_tokens) if report.target else '?'} allowed)")
        return
    if report.examples == 0 or not report.reasons:
        return
    rows = [(e["reason"], fmt_int(e["count"]), ", ".join(str(n) for n in e["lines"] if n) + ("…" if e["count"] > len(e["lines"]) else ""))
            for e in report.errors()]
    out.table([("reason", "left"), ("count", "right"), ("lines", "left")], rows,
              title=f"✗ {report.path}: {report.summary()}")


def register(sft_app: typer.Typer) -> None:
    sft_app.command("validate")(validate_command)
