"""`synth-ai traces merge`: copy the sessions of several trace DBs into one (thin: store.merge does it)."""

from __future__ import annotations

import sys
from typing import Any, List

import typer

from synth_cli.commands._inspect import help_text
from synth_cli.output import fmt_int, get_output

HELP = help_text(
    "Copy sessions (with their timesteps, events, messages and experiments) from trace DBs written by "
    "separate workers into one DB or libSQL server.",
    "Each SRC and TARGET is a SQLite file, a sqld directory, a sqlite:/// URL or a libSQL URL; a TARGET "
    "that does not exist is created (a file, or a sqld directory with --layout sqld). Each session is "
    "copied in one transaction, so an interrupted merge leaves whole sessions only.",
    "Idempotent: a session already in TARGET (by id) is skipped and counted, so running the same merge "
    "again copies nothing. --dry-run reads everything and writes nothing.",
)


def merge_command(
    sources: List[str] = typer.Argument(..., metavar="SRC...", show_default=False,
                                        help="Trace DBs to copy sessions from (files, sqld dirs, URLs)."),
    into: str = typer.Option(..., "--into", metavar="TARGET", show_default=False,
                             help="The DB or server to copy into (created when new)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be copied; write nothing."),
    layout: str = typer.Option("auto", "--layout", metavar="auto|file|sqld",
                               help="A new local TARGET: a plain file (auto, file) or a sqld directory (sqld)."),
) -> None:
    """Copy sessions from several trace DBs into one (see HELP)."""
    from synth_cli.errors import UsageError
    from synth_cli.store.merge import merge

    if layout not in ("auto", "file", "sqld"):
        raise UsageError(f"--layout must be auto, file or sqld, not {layout!r}")
    out = get_output()
    with _progress_bar(out) as progress:
        report = merge(sources, into, dry_run=dry_run, layout=layout, progress=progress)
    data = report.to_dict()

    def human() -> None:
        rows = [(s.source, fmt_int(s.sessions), fmt_int(s.copied), fmt_int(s.skipped)) for s in report.sources]
        verb = "would copy" if dry_run else "copied"
        out.table(["source", ("sessions", "right"), (verb, "right"), ("already there", "right")], rows)
        out.line()
        out.line(f"{verb.capitalize()} {fmt_int(report.copied)} session{'' if report.copied == 1 else 's'} "
                 f"({fmt_int(data['events'])} events, {fmt_int(data['messages'])} messages) into {report.target}; "
                 f"skipped {fmt_int(report.skipped)} already there.")

    out.result(data, human, essential=[report.copied])


class _progress_bar:
    """A rich progress bar on a terminal's stderr (not with --json/--quiet); a no-op callback otherwise."""

    def __init__(self, out: Any):
        self.out = out
        self.bar = None
        self.task = None

    def __enter__(self):
        if self.out.json_mode or self.out.quiet or not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("merging"), BarColumn(), MofNCompleteColumn(), TextColumn("sessions"),
                            TimeRemainingColumn(), console=self.out.err_console, transient=True)
        self.bar.start()
        self.task = self.bar.add_task("merge", total=None)
        return self.update

    def update(self, done: int, total: int, session_id: str, status: str) -> None:
        self.bar.update(self.task, completed=done, total=total)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def register(traces_app: typer.Typer) -> None:
    traces_app.command("merge", help=HELP, short_help="Copy sessions from several trace DBs into one.")(merge_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'traces merge': [
        ('synth-ai traces merge runs/worker-*.db --into all.db',
         "The sessions of every worker's DB in one file; rerun it after more runs: it copies only new sessions."),
        ('synth-ai traces merge a.db b.db --into merged.db --layout sqld --dry-run',
         'How many sessions would be copied into a new sqld directory, writing nothing.'),
    ],
}
