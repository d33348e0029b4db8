"""`synth-ai sft validate FILE`: check a chat fine-tuning JSONL file like OpenAI does."""

from __future__ import annotations

from typing import Optional

import typer

from synth_cli.commands._options import api_key_option, base_url_option, provider_option

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
    provider: Optional[str] = provider_option(
        "also apply its format rules (together: its conversational format; with --model, the model's "
        "limits from the API: context length, tools, vision)"),
    base_url: Optional[str] = base_url_option("used for --provider together --model"),
    api_key: Optional[str] = api_key_option("used for --provider together --model"),
) -> None:
    """Check a chat fine-tuning JSONL file the way OpenAI's fine-tuning validation does.

    Each line must be a JSON object with a non-empty `messages` list of allowed roles and
    keys, content or tool calls, at least one assistant message, tool calls whose arguments
    are JSON strings, tool messages answering earlier calls, and well-formed `tools`.
    As the fine-tuning API would: at least 10 examples (a training file), and no example
    over the model's limit of tokens per example (an estimate: 4 bytes of compact JSON per
    token, 765 per image; `filter` reports the same count). Errors are grouped by reason
    with counts and the first line numbers. Exit status 1 when the file is not valid.
    `--provider together` also compiles each line into Together's conversational format
    and lists every line it would refuse, with why (images or tools a model cannot take,
    roles or keys Together does not accept, examples longer than the model's context).
    """
    from synth_cli.dataset.validate import target_for, validate_file
    from synth_cli.errors import DatasetError

    out = get_output()
    target = target_for(model, max_example_tokens)
    if validation:
        target.min_examples = 1
    report = validate_file(file, target)
    if provider is not None:
        _provider_rules(file, provider, model, base_url, api_key, out)
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


from synth_cli.errors import DatasetError  # noqa: E402 - used by _provider_rules


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


def _provider_rules(file: str, provider: Optional[str], model: Optional[str], base_url: Optional[str],
                    api_key: Optional[str], out) -> None:
    """The provider's own format rules (Together's conversational format), refusals per line."""
    from synth_cli.api.providers import choose_provider, open_provider, provider_class

    name, _source = choose_provider(provider, base_url)
    if model is None:
        report = provider_class(name).dataset_report(None, file, None)
    else:
        with open_provider(provider, base_url, api_key) as opened:
            report = opened.dataset_report(file, model)
    if report is None:
        return
    for change, count in report.conversions.items():
        out.status(f"{name}: {change} in {fmt_int(count)} example(s)")
    if report.refused:
        rows = [(r["reason"], fmt_int(r["count"]), ", ".join(map(str, r["lines"])) + ("…" if r["count"] > len(r["lines"]) else ""))
                for r in report.reasons()]
        out.table([("reason", "left"), ("count", "right"), ("lines", "left")], rows,
                  title=f"✗ {file}: {fmt_int(len(report.refused))} line(s) {name} would refuse")
        raise DatasetError(f"{file}: {fmt_int(len(report.refused))} line(s) cannot be {name} examples "
                           f"(first: line {report.reasons()[0]['lines'][0]}: {report.reasons()[0]['reason']})")
    out.status(f"✓ {file}: {fmt_int(report.examples)} examples in {name}'s format")


def register(sft_app: typer.Typer) -> None:
    sft_app.command("validate")(validate_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'sft validate': [
        ('synth-ai sft validate train.jsonl',
         'Check a dataset before uploading it; exit 1 when it is not valid.'),
        ('synth-ai sft validate train.jsonl --json',
         'The report (errors grouped by reason, with line numbers) as JSON.'),
    ],
}
