"""`synth-ai calc`: what a call or a workload costs, or plain arithmetic."""

from __future__ import annotations

import re
from typing import Any, List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.output import Col, get_output


def calc(
    args: Optional[List[str]] = typer.Argument(
        None, metavar="MODEL INPUT_TOKENS OUTPUT_TOKENS | EXPRESSION",
        help="A model and two token counts (1_000_000, 1M, 500k, 2.5k), or an arithmetic expression."),
    cached_input_tokens: Optional[str] = typer.Option(
        None, "--cached-input-tokens", metavar="N",
        help="How many of the input tokens were read from the prompt cache (billed at the cached price)."),
    pricing: Optional[str] = typer.Option(
        None, "--pricing", metavar="FILE",
        help="Price table (TOML or JSON) to use instead of the bundled one (also SYNTH_PRICING_FILE)."),
    list_: bool = typer.Option(False, "--list", help="Print the price table and exit."),
) -> None:
    """Cost of a call or workload from the price table, or plain arithmetic.

    `synth-ai calc gpt-4o 1M 500k` prices 1,000,000 input and 500,000 output
    tokens of gpt-4o; `--cached-input-tokens` says how many of the input tokens
    were cache hits. Anything else is evaluated as arithmetic
    (`synth-ai calc '2*(3+4)'`): numbers, + - * / // % ** and parentheses only.
    """
    from synth_cli import pricing as core
    from synth_cli.errors import UsageError

    out = get_output()
    words = [a for a in (args or []) if a.strip()]

    if list_:
        if words:
            raise UsageError("--list takes no arguments")
        _show_table(core.load_table(pricing))
        return
    if not words:
        raise UsageError("nothing to calculate",
                         hint="synth-ai calc MODEL INPUT_TOKENS OUTPUT_TOKENS, e.g. `synth-ai calc gpt-4o 1M 500k`, "
                              "or an expression such as `synth-ai calc '2*(3+4)'`")

    if core.looks_like_model_call(words):
        table = core.load_table(pricing)
        row = table.lookup(words[0])
        cached = core.parse_count(cached_input_tokens, "--cached-input-tokens") if cached_input_tokens else 0
        est = core.estimate(row, core.parse_count(words[1], "INPUT_TOKENS"),
                            core.parse_count(words[2], "OUTPUT_TOKENS"), cached, requested_model=words[0])
        if est.cached_price_missing:
            out.warn(f"{row.name} has no cached-input price; cached tokens are billed at the input price")
        _show_estimate(est, table)
        return

    for word in words:
        if re.match(r"^--?[A-Za-z]", word):  # `-1` and `-(2)` are arithmetic, `-q` and `--bogus` are not
            raise UsageError(f"no such option: {word}", hint="run 'synth-ai calc --help' for usage")
    if core.names_a_model(words[0]):
        if len(words) == 1:
            row = core.load_table(pricing).find(words[0])
            if row is not None:  # `calc gpt-4o`: say what is missing and what the model costs
                raise UsageError(f"{words[0]} needs INPUT_TOKENS and OUTPUT_TOKENS",
                                 hint=f"e.g. `synth-ai calc {words[0]} 1M 200k`; {row.name} costs "
                                      f"{usd(row.input)} in / {usd(row.output)} out per 1M tokens")
        elif len(words) in (2, 4) and all(core.count_or_none(w) is not None for w in words[1:]):
            raise UsageError(f"expected MODEL INPUT_TOKENS OUTPUT_TOKENS, got {len(words)} arguments",
                             hint="e.g. `synth-ai calc gpt-4o 1M 500k`")
    if cached_input_tokens:
        raise UsageError("--cached-input-tokens only applies to MODEL INPUT_TOKENS OUTPUT_TOKENS")

    expression = " ".join(words)
    value = core.safe_eval(expression)
    text = core.format_number(value)
    out.result({"expression": expression, "result": value}, lambda: out.line(text), essential=[text])


def _show_estimate(est, table) -> None:
    from synth_cli.output import fmt_int, usd_number

    out = get_output()
    data = est.to_dict()
    data["pricing_file"] = str(table.path)
    total = usd(est.total)

    def human() -> None:
        row = est.row
        rows = []
        if est.cached_input_tokens:
            rows.append(("input (uncached)", fmt_int(est.uncached_input_tokens), usd(row.input),
                         usd(est.uncached_cost)))
            rows.append(("input (cached)", fmt_int(est.cached_input_tokens), usd(est.cached_rate),
                         usd(est.cached_cost)))
        else:
            rows.append(("input", fmt_int(est.input_tokens), usd(row.input),
                         usd(est.uncached_cost)))
        rows.append(("output", fmt_int(est.output_tokens), usd(row.output),
                     usd(est.output_cost)))
        rows.append(("total", fmt_int(est.input_tokens + est.output_tokens), "", total))
        priced = row.name if row.name == est.requested_model else f"{est.requested_model} (priced as {row.name})"
        provenance = ", ".join(x for x in (f"as of {row.as_of}" if row.as_of else None, row.source) if x)
        out.line(priced)
        out.table(["", ("tokens", "right"), ("USD/1M", "right"), ("cost", "right")], rows)
        out.line("prices in USD per 1M tokens" + (f", {provenance}" if provenance else ""))
        if row.note:
            out.line(f"note: {row.note}")
        if not table.bundled:
            out.line(f"price table: {table.path}")

    out.result(data, human, essential=[usd_number(est.total, exact=True)])  # -q: the bare number


def usd(value: Any) -> str:
    """Prices and their products, every digit: the one money formatter (output.fmt_usd), exact."""
    from synth_cli.output import fmt_usd

    return fmt_usd(value, exact=True)


def _show_table(table) -> None:
    out = get_output()
    data = {"pricing_file": str(table.path), "bundled": table.bundled, "unit": "USD per 1M tokens",
            "models": [row.to_dict() for row in table.rows]}

    def human() -> None:
        rows = [(row.name, row.provider or "", usd(row.input), usd(row.cached_input),
                 usd(row.output), row.as_of or "–") for row in table.rows]
        out.table(["model", Col("provider", drop=2), ("input", "right"), Col("cached input", "right", drop=3),
                   ("output", "right"), Col("as of", drop=1)], rows)
        source = "the bundled price list" if table.bundled else table.path  # --json has the bundled path
        out.line(f"USD per 1M tokens; {len(table.rows)} models from {source}")
        out.line("sources and notes: `synth-ai calc --list --json`")

    out.result(data, human)


def register(app: typer.Typer) -> None:
    app.command(
        "calc",
        context_settings={"ignore_unknown_options": True},  # `calc -3+4`, `calc 2 -1`
        short_help=SUMMARIES["calc"],
    )(calc)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'calc': [
        ('synth-ai calc gpt-4o 1000000 500000',
         'Price 1,000,000 input + 500,000 output tokens of gpt-4o ($7.50).'),
        ('synth-ai calc claude-3-5-haiku 2.5M 300k --cached-input-tokens 2M',
         '2M of the 2.5M input tokens were prompt-cache hits.'),
        ('synth-ai calc --list',
         'Every priced model, USD per 1M tokens.'),
        ('synth-ai calc gpt-4o-mini 1M 1M --pricing my-prices.toml',
         'Use your own price table.'),
        ("synth-ai calc '2*(3+4)'",
         'Plain arithmetic.'),
    ],
}
