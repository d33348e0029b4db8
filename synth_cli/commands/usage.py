"""`synth-ai usage`: LLM calls, tokens, cost and latency per model and provider, from local traces
(or, with `--remote`, as the backend bills them)."""

from __future__ import annotations

from typing import List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.commands._inspect import db_option, fmt_ms, help_text
from synth_cli.commands._options import api_key_option, base_url_option
from synth_cli.output import Col, fmt_int, fmt_time, fmt_usd, get_output


def usage_command(
    model: Optional[List[str]] = typer.Option(
        None, "--model", "-m", metavar="NAME",
        help="Only this model (case-insensitive; * and ? are wildcards). Repeatable."),
    db: Optional[List[str]] = db_option(),
    since: Optional[str] = typer.Option(
        None, "--since", metavar="WHEN",
        help="Only calls at/after WHEN: ISO date/time (UTC) or a span like 24h, 7d, 30m."),
    remote: bool = typer.Option(False, "--remote", help="Ask the backend instead (GET /balance/usage)."),
    base_url: Optional[str] = base_url_option("used with --remote"),
    api_key: Optional[str] = api_key_option("used with --remote"),
) -> None:
    """LLM usage per model and provider (see HELP)."""
    from synth_cli.errors import UsageError

    out = get_output()
    if remote:
        if db or since:
            raise UsageError("--remote asks the backend; --db and --since apply to local traces only",
                             hint="drop --db/--since, or drop --remote")
        from synth_cli.commands.balance import remote_usage

        remote_usage(models=model or None, base_url=base_url, api_key=api_key)
        return
    if base_url or api_key:
        raise UsageError("--base-url and --api-key are only used with --remote")

    from synth_cli.commands._inspect import opened, parse_since, read_targets
    from synth_cli.store import usage as queries

    since_dt = parse_since(since)
    targets = read_targets(db)
    groups = []
    with opened(targets) as stores:
        for _, store in stores:
            groups.append(queries.usage(store, models=model or (), since=since_dt))
    rows = queries.merge_usage(groups)
    latency_total = sum(r.latency_ms_total for r in rows)
    latency_n = sum(r.calls_with_latency for r in rows)
    totals = {
        "calls": sum(r.calls for r in rows),
        "input_tokens": sum(r.input_tokens for r in rows),
        "output_tokens": sum(r.output_tokens for r in rows),
        "total_tokens": sum(r.total_tokens for r in rows),
        "cost_usd": round(sum(r.cost_usd for r in rows), 9),
        "avg_latency_ms": round(latency_total / latency_n, 3) if latency_n else None,
    }
    data = {"dbs": [t.label for t in targets], "since": since_dt, "models_filter": list(model or []),
            "models": [r.to_dict() for r in rows], "totals": totals}

    def human() -> None:
        if not rows:
            what = " matching " + ", ".join(model) if model else ""
            when = f" since {fmt_time(since_dt)}" if since_dt else ""
            out.line(f"No LLM calls{what}{when}.")
            return
        table = [(r.model or "(unknown)", r.provider or "–", fmt_int(r.calls), fmt_int(r.input_tokens),
                  fmt_int(r.output_tokens), fmt_int(r.total_tokens), fmt_usd(r.cost_usd), fmt_ms(r.avg_latency_ms),
                  fmt_time(r.first_used, seconds=False, label=False), fmt_time(r.last_used, seconds=False, label=False))
                 for r in rows]
        if len(rows) > 1:
            table.append(("total", "", fmt_int(totals["calls"]), fmt_int(totals["input_tokens"]),
                          fmt_int(totals["output_tokens"]), fmt_int(totals["total_tokens"]),
                          fmt_usd(totals["cost_usd"]), fmt_ms(totals["avg_latency_ms"]), "", ""))
        title = f"LLM usage since {fmt_time(since_dt)}" if since_dt else None
        out.table(["model", Col("provider", drop=3), ("calls", "right"), Col("in tokens", "right", drop=5),
                   Col("out tokens", "right", drop=4), ("total tokens", "right"), ("cost", "right"),
                   Col("avg latency", "right", drop=6), Col("first used (UTC)", drop=8),
                   Col("last used (UTC)", drop=7)], table, title=title)

    out.result(data, human)


HELP = help_text(
    "LLM usage per model and provider from local traces: calls, input/output/total tokens, cost, "
    "average latency, first and last use.",
    "Counts the LM (cais) events of every DB read. Cost is each call record's exact usage.cost_usd where "
    "it reports one, else events.cost_usd (stored in cents). With --remote, shows the backend's own "
    "accounting instead.",
)


def register(app: typer.Typer) -> None:
    app.command("usage", help=HELP, short_help=SUMMARIES["usage"])(
        usage_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'usage': [
        ('synth-ai usage --db traces.db',
         'Calls, tokens, cost and latency per model and provider.'),
        ("synth-ai usage --model 'gpt-4o*' --since 7d",
         'Only gpt-4o models, over the last 7 days.'),
        ('synth-ai usage --remote --model gpt-4o-mini',
         'Spend and tokens of one model, from the backend.'),
    ],
}
