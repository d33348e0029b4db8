"""`synth-ai experiments`, `synth-ai experiment ID` and `synth-ai recent`."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.commands._inspect import db_option, fmt_reward, help_text
from synth_cli.output import Col, fmt_int, fmt_time, fmt_usd, get_output

DEFAULT_LIMIT = 20
#: sessions drawn in `experiment ID`'s table (drawing 10,000 rows took ~4.6 s); --json lists all
SESSIONS_SHOWN = 50


def _experiment_name(row: Any) -> str:
    if row.experiment_id is None:
        return "(no experiment)"
    return row.name or "(unnamed)"


def experiments_command(
    db: Optional[List[str]] = db_option(),
    limit: int = typer.Option(DEFAULT_LIMIT, "--limit", "-L", metavar="N", min=1,
                              help="Show at most N experiments, most recently active first."),
) -> None:
    """Experiments with their figures (see EXPERIMENTS_HELP)."""
    from synth_cli.commands._inspect import opened, read_targets
    from synth_cli.store import experiments as queries

    out = get_output()
    targets = read_targets(db)
    rows: list[Any] = []
    total = 0
    with opened(targets) as stores:
        for target, store in stores:
            found, count = queries.experiments(store, limit=limit)
            for row in found:
                row.db = target.label
            rows.extend(found)
            total += count
    rows.sort(key=lambda r: (r.last_activity is None, -(r.last_activity.timestamp() if r.last_activity else 0),
                             r.name or "", r.experiment_id or ""))
    rows = rows[:limit]
    many = len(targets) > 1
    data = {"dbs": [t.label for t in targets], "experiments": [r.to_dict() for r in rows], "total": total,
            "has_more": total > len(rows)}

    def human() -> None:
        if not rows:
            out.line("No experiments or sessions in " + ", ".join(t.label for t in targets) + ".")
            return
        columns: list[Any] = [Col("experiment", wrap=True), "ID", ("sessions", "right"), Col("events", "right", drop=2),
                              ("tokens", "right"), ("cost", "right"), Col("first activity (UTC)", drop=3),
                              Col("last activity (UTC)", drop=1)]
        if many:
            columns.append(Col("DB", drop=4))
        table = []
        for r in rows:
            cells = [_experiment_name(r), r.experiment_id or "–", fmt_int(r.sessions), fmt_int(r.events),
                     fmt_int(r.total_tokens), fmt_usd(r.cost_usd),
                     fmt_time(r.first_activity, seconds=False, label=False),
                     fmt_time(r.last_activity, seconds=False, label=False)]
            if many:
                cells.append(r.db)
            table.append(cells)
        caption = f"showing {len(rows)} of {total} (--limit N for more)" if total > len(rows) else None
        out.table(columns, table, caption=caption)

    out.result(data, human, essential=[r.experiment_id for r in rows if r.experiment_id])
    if rows and not out.json_mode:
        out.tip("synth-ai experiment ID shows one experiment's sessions")


def experiment_command(
    ident: str = typer.Argument(..., metavar="ID", help="Experiment ID or name (a unique prefix is enough)."),
    db: Optional[List[str]] = db_option(),
    limit: int = typer.Option(SESSIONS_SHOWN, "--limit", "-L", metavar="N", min=1,
                              help="Show at most N sessions in the table (the totals count all; "
                                   "--json lists every session)."),
) -> None:
    """One experiment and its sessions: reward, steps, events, LLM calls, tokens, cost."""
    from synth_cli.commands._inspect import opened, read_targets
    from synth_cli.store import experiments as queries

    out = get_output()
    targets = read_targets(db)
    with opened(targets) as stores:
        store, info = queries.resolve_experiment([s for _, s in stores], ident)
        label = next(t.label for t, s in stores if s is store)
        sessions = queries.experiment_sessions(store, info["experiment_id"])
    info["db"] = label
    rewards = [s.reward for s in sessions if s.reward is not None]
    totals = {
        "sessions": len(sessions),
        "steps": sum(s.steps for s in sessions),
        "events": sum(s.events for s in sessions),
        "llm_calls": None if any(s.llm_calls is None for s in sessions) else sum(s.llm_calls or 0 for s in sessions),
        "input_tokens": sum(s.input_tokens for s in sessions),
        "output_tokens": sum(s.output_tokens for s in sessions),
        "total_tokens": sum(s.total_tokens for s in sessions),
        "cost_usd": round(sum(s.cost_usd or 0.0 for s in sessions), 9),
        "reward": sum(rewards) if rewards else None,
        "mean_reward": round(sum(rewards) / len(rewards), 6) if rewards else None,
    }
    data = {"experiment": info, "sessions": [s.to_dict() for s in sessions], "totals": totals}

    def human() -> None:
        out.kv([
            ("experiment", info["name"] or "(unnamed)" if info["experiment_id"] else "(no experiment)"),
            ("ID", info["experiment_id"] or "–"),
            ("description", info.get("description") or "–"),
            ("created", fmt_time(info.get("created_at"))),
            ("DB", label),
            ("sessions", fmt_int(totals["sessions"])),
            ("reward", f"{fmt_reward(totals['reward'])} total, {fmt_reward(totals['mean_reward'])} mean"),
            ("tokens", f"{fmt_int(totals['total_tokens'])} ({fmt_int(totals['input_tokens'])} in, "
                       f"{fmt_int(totals['output_tokens'])} out)"),
            ("cost", fmt_usd(totals["cost_usd"])),
        ])
        if not sessions:
            return
        out.line()
        shown = sessions[:limit]
        rows = [(s.session_id, fmt_time(s.created_at, seconds=False, label=False), fmt_int(s.steps),
                 fmt_reward(s.reward),
                 fmt_int(s.events), fmt_int(s.llm_calls) if s.llm_calls is not None else "n/a",
                 fmt_int(s.total_tokens), fmt_usd(s.cost_usd), ", ".join(s.models) or "–") for s in shown]
        more = len(sessions) - len(shown)
        caption = (f"showing {len(shown)} of {fmt_int(len(sessions))} sessions: {fmt_int(more)} more "
                   "(use --limit N or --json)") if more else None
        out.table(["session", Col("created (UTC)", drop=3), Col("steps", "right", drop=1), ("reward", "right"),
                   Col("events", "right", drop=2), Col("LLM calls", "right", drop=4), ("tokens", "right"),
                   ("cost", "right"), Col("models", wrap=True, drop=5)], rows, caption=caption)

    out.result(data, human, essential=[s.session_id for s in sessions])
    if sessions and not out.json_mode:
        out.tip("synth-ai session ID shows one session step by step (a unique ID prefix is enough)")


def recent_command(
    hours: float = typer.Option(24.0, "--hours", "-H", metavar="H", help="The window: the last H hours."),
    db: Optional[List[str]] = db_option(),
) -> None:
    """Experiments active in the last H hours (see RECENT_HELP)."""
    from datetime import datetime, timezone

    from synth_cli.commands._inspect import opened, read_targets
    from synth_cli.errors import UsageError
    from synth_cli.store import experiments as queries
    from synth_cli.timespan import before

    if not hours > 0:
        raise UsageError(f"--hours {hours:g}: must be greater than 0")
    out = get_output()
    targets = read_targets(db)
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    rows: list[Any] = []
    with opened(targets) as stores:
        for target, store in stores:
            for row in queries.recent(store, hours, now=now):
                row.db = target.label
                rows.append(row)
    rows.sort(key=lambda r: (r.last_activity is None, -(r.last_activity.timestamp() if r.last_activity else 0)))
    since = before(now, hours * 3600)
    many = len(targets) > 1
    data = {"hours": hours, "since": since, "dbs": [t.label for t in targets],
            "experiments": [r.to_dict() for r in rows]}

    def human() -> None:
        if not rows:
            out.line(f"No activity in the last {hours:g} hours (since {fmt_time(since)}).")
            return
        columns: list[Any] = [Col("experiment", wrap=True), "ID", ("sessions", "right"), Col("events", "right", drop=2),
                              Col("messages", "right", drop=1), ("tokens", "right"), ("cost", "right"),
                              Col("last activity (UTC)", drop=3)]
        if many:
            columns.append(Col("DB", drop=4))
        table = []
        for r in rows:
            cells = [_experiment_name(r), r.experiment_id or "–", fmt_int(r.sessions), fmt_int(r.events),
                     fmt_int(r.messages), fmt_int(r.total_tokens), fmt_usd(r.cost_usd),
                     fmt_time(r.last_activity, seconds=False, label=False)]
            if many:
                cells.append(r.db)
            table.append(cells)
        out.table(columns, table, title=f"Active in the last {hours:g} hours (since {fmt_time(since)})")

    out.result(data, human, essential=[r.experiment_id for r in rows if r.experiment_id])


EXPERIMENTS_HELP = help_text(
    "Experiments with their session counts, events, tokens, cost and first/last activity.",
    "Sessions recorded without an experiment are listed as \"(no experiment)\". Cost is the call records' "
    "exact usage.cost_usd where they report it, else events.cost_usd (stored in cents).",
)
RECENT_HELP = help_text(
    "Experiments active in the last H hours: sessions, events, messages, tokens and cost.",
    "A session is active when it was created, or recorded an event, inside the window; its figures "
    "are whole-session figures.",
)


def register(app: typer.Typer) -> None:
    app.command("experiments", help=EXPERIMENTS_HELP, short_help=SUMMARIES["experiments"])(
        experiments_command)
    app.command("experiment", short_help=SUMMARIES["experiment"])(
        experiment_command)
    app.command("recent", help=RECENT_HELP, short_help=SUMMARIES["recent"])(recent_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'experiments': [
        ('synth-ai experiments --limit 5',
         'The five most recently active experiments.'),
    ],
    'experiment': [
        ('synth-ai experiment crafter_run_0',
         'One experiment (by name, ID or unique prefix) and its sessions.'),
    ],
    'recent': [
        ('synth-ai recent --hours 6',
         'Experiments with runs in the last 6 hours.'),
    ],
}
