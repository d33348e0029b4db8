"""`synth-ai sft validate FILE`: check a chat fine-tuning JSONL file like OpenAI does."""

from __future__ import annotations

import typer

from synth_cli.output import fmt_int, get_output


def validate_command(
    file: str = typer.Argument(..., metavar="FILE", help="JSONL file to check (one chat example per line)."),
) -> None:
    """Check a chat fine-tuning JSONL file the way OpenAI's fine-tuning validation does.

    Each line must be a JSON object with a non-empty `messages` list of allowed roles and
    keys, content or tool calls, at least one assistant message, tool calls whose arguments
    are JSON strings, tool messages answering earlier calls, and well-formed `tools`.
    Errors are grouped by reason with counts and the first line numbers. Exit status 1
    when the file is not valid.
    """
    from synth_cli.dataset.validate import validate_file
    from synth_cli.errors import DatasetError

    out = get_output()
    report = validate_file(file)
    out.result(report.to_dict(), lambda: _render(report, out), essential=[])  # --quiet: the exit code says it
    for warning in report.warnings:
        out.warn(warning)
    if not report.valid:
        if report.examples == 0:
            raise DatasetError(f"{file}: no examples (empty file)")
        if out.json_mode:
            out.error(f"{file}: {fmt_int(report.invalid)} of {fmt_int(report.examples)} examples are invalid")
            raise typer.Exit(1)
        raise DatasetError(f"{file}: {fmt_int(report.invalid)} of {fmt_int(report.examples)} examples are invalid")


def _render(report, out) -> None:
    if report.valid:
        out.line(f"✓ {report.path}: {fmt_int(report.examples)} examples, all valid "
                 f"({fmt_int(report.with_tool_calls)} with tool calls, {fmt_int(report.messages)} messages, "
                 f"≈ {fmt_int(report.bytes // 4)} tokens)")
        return
    if report.examples == 0:
        return
    rows = [(e["reason"], fmt_int(e["count"]), ", ".join(map(str, e["lines"])) + ("…" if e["count"] > len(e["lines"]) else ""))
            for e in report.errors()]
    out.table([("reason", "left"), ("count", "right"), ("lines", "left")], rows,
              title=f"✗ {report.path}: {fmt_int(report.invalid)} of {fmt_int(report.examples)} examples invalid")


def register(sft_app: typer.Typer) -> None:
    sft_app.command("validate")(validate_command)
