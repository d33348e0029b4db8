"""`synth-ai traces`: which trace DBs there are and what they hold."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.commands._inspect import db_option, help_text
from synth_cli.output import Col, fmt_bytes, fmt_int, fmt_time, get_output

traces_app = typer.Typer(name="traces", no_args_is_help=False)


def traces(
    ctx: typer.Context,
    root: Optional[str] = typer.Option(
        None, "--root", metavar="DIR", show_default=False,
        help="Directory of trace DBs: each subdirectory holding a `data` file (sqld layout) or *.db file is one. "
             "Default: $SYNTH_TRACES_ROOT, else ./synth_ai.db/dbs."),
    db: Optional[List[str]] = db_option(),
    limit: Optional[int] = typer.Option(None, "--limit", metavar="N", min=1,
                                        help="List at most N DBs (most recently active first); totals count all."),
) -> None:
    """Inventory of trace DBs (see HELP)."""
    if ctx.invoked_subcommand is not None:  # `traces merge …`: the subcommand does the work
        return
    from synth_cli.commands._inspect import inventory_targets, opened, read_each
    from synth_cli.store import inventory as queries

    out = get_output()
    root_value, targets = inventory_targets(db, root)
    skipped: list[dict[str, Any]] = []

    def skip(target: Any, exc: Any) -> None:
        skipped.append({"db": target.label, "error": exc.message})
        out.warn(f"skipping {exc.message}")

    summaries = []
    with opened(targets, on_skip=skip) as stores:
        summaries.extend(read_each(stores, lambda target, store: queries.summarize(store, label=target.label),
                                   on_skip=skip))

    summaries = queries.by_activity(summaries)
    shown = summaries[:limit] if limit else summaries
    totals = queries.totals(summaries)
    systems = queries.merge_systems((s.db, s.systems) for s in summaries)
    data = {"root": root_value, "dbs": [s.to_dict() for s in shown], "has_more": len(shown) < len(summaries),
            "totals": totals, "systems": systems, "skipped": skipped}

    def human() -> None:
        if not summaries:
            out.line(f"No trace databases found in {root_value}.")
            return
        rows = [(s.db, fmt_int(s.sessions), fmt_int(s.experiments), fmt_int(s.events),
                 fmt_int(s.llm_calls) if s.call_records else "n/a",
                 fmt_time(s.last_activity, seconds=False, label=False),
                 fmt_bytes(s.size_bytes))
                for s in shown]
        caption = None
        if len(shown) < len(summaries):
            caption = f"showing {len(shown)} of {len(summaries)} DBs (--limit)"
        out.table(["DB", ("sessions", "right"), Col("experiments", "right", drop=1), ("events", "right"),
                   ("LLM calls", "right"), Col("last activity (UTC)", drop=2), ("size", "right")], rows,
                  caption=caption)
        out.line()
        plural = "" if len(summaries) == 1 else "s"
        out.line(f"Total storage: {fmt_bytes(totals['size_bytes'])} in {len(summaries)} DB{plural} · "
                 f"{fmt_int(totals['sessions'])} sessions · {fmt_int(totals['events'])} events · "
                 f"{fmt_int(totals['llm_calls'])} LLM calls")
        if systems:
            out.line()
            out.table(["system", ("events", "right"), Col("event types", wrap=True), ("DBs", "right")],
                      [(s["system"] or "(none)", fmt_int(s["events"]),
                        ", ".join(f"{t} {fmt_int(n)}" for t, n in sorted(s["event_types"].items())),
                        fmt_int(len(s["dbs"]))) for s in systems], title="Events per system")

    out.result(data, human, essential=[s.db for s in shown])
    if not summaries:
        out.tip("run `synth-ai demo` to write an example DB, record runs with SessionTracer "
                 "(see README), or pass --db PATH_OR_URL / --root DIR")
        return
    if any(not s.call_records for s in summaries):
        out.hint("n/a: DB written before events.call_records existed; LLM calls are not stored in it")
    if totals["malformed_call_records"]:
        out.warn(f"{fmt_int(totals['malformed_call_records'])} call_records values are not valid JSON arrays; "
                 "they are not counted as LLM calls")


HELP = help_text(
    "Inventory of trace DBs: sessions, experiments, events, LLM calls, last activity, size.",
    "Reads every DB under the traces root plus each --db and $SYNTH_TRACES_DB, then prints the total "
    "storage and the events per system (events.system_instance_id).",
    "DBs are opened read-only. A --db that cannot be read is an error; a DB found under the root that "
    "cannot be read is skipped with a warning.",
    "`synth-ai traces merge SRC... --into TARGET` copies the sessions of several DBs into one.",
)


def register(app: typer.Typer) -> None:
    from synth_cli.commands import merge

    traces_app.callback(invoke_without_command=True, help=HELP)(traces)
    merge.register(traces_app)
    app.add_typer(traces_app, name="traces", help=HELP,
                  short_help=SUMMARIES["traces"])



#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'traces': [
        ('synth-ai traces',
         'Every DB under ./synth_ai.db/dbs: traces, events, LLM calls, last activity, size.'),
        ('synth-ai traces --root runs/ --db http://127.0.0.1:8080',
         'Another directory, plus a libSQL server.'),
        ('synth-ai traces --json',
         'The same figures as one JSON document.'),
    ],
}
