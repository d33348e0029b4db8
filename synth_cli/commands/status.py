"""`synth-ai status`: the trace DBs (totals per DB) and the configured backend (URL, health, key)."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.commands._inspect import db_option, fmt_ms, help_text
from synth_cli.commands._options import api_key_option, base_url_option, provider_option
from synth_cli.output import Col, fmt_bytes, fmt_int, fmt_usd, get_output


def status_command(
    db: Optional[List[str]] = db_option(),
    root: Optional[str] = typer.Option(None, "--root", metavar="DIR", show_default=False,
                                       help="Directory of trace DBs (default: $SYNTH_TRACES_ROOT, else "
                                            "./synth_ai.db/dbs)."),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
    provider: Optional[str] = provider_option(),
) -> None:
    """Trace DB totals and the backend (see HELP)."""
    from synth_cli import config
    from synth_cli.api.providers import resolve_target
    from synth_cli.commands._inspect import inventory_targets, opened, read_each
    from synth_cli.probe import probe_backend
    from synth_cli.store import inventory as queries

    out = get_output()
    target = resolve_target(provider, base_url, api_key)
    url, key = target.base, target.key
    if key is not None and key.source != config.DEV_KEY_SOURCE:
        config.check_api_key(key)
    root_value, targets = inventory_targets(db, root)
    skipped: list[dict[str, Any]] = []

    def skip(target: Any, exc: Any) -> None:
        skipped.append({"db": target.label, "error": exc.message})
        out.warn(f"skipping {exc.message}")

    summaries = []
    with opened(targets, on_skip=skip) as stores:
        summaries.extend(read_each(stores, lambda target, store: queries.summarize(store, label=target.label),
                                   on_skip=skip))
    probe = probe_backend(url.value)

    dbs = [{"db": s.db, "kind": s.kind, "schema": s.schema, "sessions": s.sessions, "events": s.events,
            "messages": s.messages, "experiments": s.experiments, "llm_calls": s.llm_calls,
            "input_tokens": s.input_tokens, "output_tokens": s.output_tokens, "total_tokens": s.total_tokens,
            "cost_usd": s.cost_usd, "size_bytes": s.size_bytes, "last_activity": s.last_activity}
           for s in summaries]
    backend = {
        "provider": target.name, "provider_source": target.source,
        "base_url": url.value, "base_url_source": url.source, **{k: v for k, v in probe.to_dict().items()
                                                                 if k != "url"},
        "health_url": probe.url,
        "api_key": _shown_key(key.value) if key else None,
        "api_key_source": key.source if key else None,
    }
    data = {"root": root_value, "dbs": dbs, "skipped": skipped, "backend": backend}

    def human() -> None:
        if dbs:
            rows = [(d["db"], fmt_int(d["sessions"]), fmt_int(d["events"]), fmt_int(d["messages"]),
                     fmt_int(d["experiments"]), fmt_int(d["total_tokens"]), fmt_usd(d["cost_usd"]),
                     fmt_bytes(d["size_bytes"])) for d in dbs]
            if len(dbs) > 1:
                total = queries.totals(summaries)
                rows.append(("total", fmt_int(total["sessions"]), fmt_int(total["events"]), fmt_int(total["messages"]),
                             fmt_int(total["experiments"]), fmt_int(total["total_tokens"]),
                             fmt_usd(total["cost_usd"] or 0), fmt_bytes(total["size_bytes"])))
            out.table(["DB", ("sessions", "right"), ("events", "right"), Col("messages", "right", drop=2),
                       Col("experiments", "right", drop=1), ("tokens", "right"), ("cost", "right"),
                       Col("size", "right", drop=3)], rows,
                      title="Trace DBs")
        else:
            out.line(f"Trace DBs: none found in {root_value} (pass --db, or run `synth-ai demo`)")
        out.line()
        if probe.ok:
            health = f"up (HTTP {probe.status_code}, {fmt_ms(probe.elapsed_ms)})"
        elif probe.answered:
            health = f"answers, but GET /health gave HTTP {probe.status_code}"
        else:
            health = f"not reachable ({probe.error})"
        key_text = f"{_shown_key(key.value)} ({key.source})" if key else \
            f"not set ({', '.join(target.key_vars[:-1])} or {target.key_vars[-1]})"
        out.kv([("provider", f"{target.name}: {target.label} ({target.source})"),
                ("URL", f"{url.value} ({url.source})"), ("health", health), ("API key", key_text)],
               title="Backend")

    out.result(data, human)
    if not probe.answered and not out.json_mode and url.source == "default" and target.name == "openai":
        out.tip("`synth-ai serve` starts the local backend at the default URL")


def _shown_key(key: str) -> str:
    """Keys are masked; the local simulator's dev key is public (the README prints it) and shown whole."""
    from synth_cli import config

    return key if key == config.DEFAULT_DEV_KEY else config.mask_key(key)


HELP = help_text(
    "Where things stand: totals per trace DB (sessions, events, messages, experiments, tokens, cost) and "
    "the configured backend: which training provider (chosen as `sft` chooses it: --provider, "
    "SYNTH_PROVIDER, a well-known base URL, else openai), its URL, whether it answers GET /health within "
    "1.5 s, and the API key (masked) with where it came from (the provider's key chain).",
)


def register(app: typer.Typer) -> None:
    app.command("status", help=HELP, short_help=SUMMARIES["status"])(status_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'status': [
        ('synth-ai status',
         'Totals per trace DB, and whether the configured backend answers.'),
        ('synth-ai status --base-url http://127.0.0.1:8000',
         'Check the local backend of `synth-ai serve`.'),
    ],
}
