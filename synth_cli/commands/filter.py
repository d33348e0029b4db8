"""`synth-ai filter`: trace DBs → OpenAI chat fine-tuning JSONL.

Thin: parse flags (+ `--config`; both declared once, in dataset/settings.SETTINGS), call :func:`synth_cli.dataset.run.run_filter`,
render its stats. Heavy imports happen inside the command.
"""

from __future__ import annotations

import inspect
from typing import Any, List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.dataset.settings import SETTINGS
from synth_cli.output import fmt_duration, fmt_int, get_output

HELP = """Turn trace DBs into an OpenAI chat fine-tuning dataset (JSONL).

Picks sessions with session-level filters (reward, achievements, cost, tokens,
experiment, time, metadata), converts their LLM calls to chat examples and
writes them atomically, one JSON object per line. Every example is validated
the way OpenAI's fine-tuning does; identical examples are written once.

[bold]Modes[/bold]: [cyan]calls[/cyan] (default) makes one example per LLM call
(its input messages + its output); [cyan]sessions[/cyan] merges a session's calls
into one conversation while each call continues the previous one.

[bold]Output[/bold]: written to a temp file and renamed into place; with
--val-fraction the train and val files are replaced together (an interrupt
never leaves one new and one old). A trace DB or its -wal/-shm/-journal, and
the --config file, are refused; a symlink's target is written; an existing file keeps its mode;
character devices and FIFOs (/dev/null, >(gzip > x.gz)) are written through;
a missing directory is an error unless --parents.

Example: synth-ai filter --db traces.db --min-reward 1 -o train.jsonl
"""


def filter_command(**given: Any) -> None:
    """The command; its parameters are the rows of dataset/settings.SETTINGS (see :func:`_signature`)."""
    from synth_cli import config
    from synth_cli.dataset.options import build, load_config, merge
    from synth_cli.errors import UsageError

    out = get_output()
    config_file = given.pop("config", None)
    if given.get("no_redact") and given.get("redact") is not None:
        raise UsageError("--redact and --no-redact contradict each other", hint="pass one of them")
    flags: dict[str, Any] = build(given)
    file_values = load_config(config_file) if config_file else {}
    options = merge(file_values, flags)
    if not options.dbs:
        options.dbs = config.default_dbs()
    if not options.dbs:
        raise UsageError("no trace DB given", hint="pass --db PATH_OR_URL or set SYNTH_TRACES_DB")
    if not options.output and not options.dry_run:
        raise UsageError("--output is required", hint="pass --output FILE.jsonl, or --dry-run to only see the stats")
    for note in options.ignored:
        out.warn(f"config: {note} has no equivalent here and is ignored")
    if config_file and options.output and not options.dry_run:
        _refuse_config_as_output(config_file, options)

    stats = _run(options, out)
    data = stats.to_dict()
    out.result(data, lambda: _render(stats, out), essential=[])  # --quiet: the file is the result
    _report_problems(stats, options, out)


def _signature() -> inspect.Signature:
    """`filter_command`'s parameters, one `typer.Option` per row of SETTINGS (typer reads the signature)."""
    params = []
    for s in SETTINGS:
        if s.type is bool and s.negatable:
            decls: tuple[str, ...] = (f"{s.flag}/--no-{s.flag[2:]}",)
        else:
            decls = (s.flag, s.short) if s.short else (s.flag,)
        switch = s.type is bool and not s.negatable  # --dry-run, --no-redact: off unless given
        kind = List[s.type] if s.many else s.type  # type: ignore[valid-type]
        option = typer.Option(False if switch else None, *decls, metavar=s.metavar, help=s.help)
        params.append(inspect.Parameter(s.key, inspect.Parameter.KEYWORD_ONLY, default=option,
                                        annotation=bool if switch else Optional[kind]))
    return inspect.Signature(params, return_annotation=None)


filter_command.__signature__ = _signature()  # type: ignore[attr-defined]


def _refuse_config_as_output(config_file: str, options: Any) -> None:
    """`-o` (or the val file, or the manifest) onto the `--config` file itself: refused like a trace DB."""
    from pathlib import Path

    from synth_cli.dataset.manifest import manifest_path
    from synth_cli.dataset.writer import Protected, val_path

    guard = Protected()
    guard.add_input(config_file, "the --config file being read",
                    hint="choose another --output; the settings file would be overwritten by the dataset")
    guard.check(Path(options.output))
    if options.val_fraction:
        guard.check(val_path(options.output))
    guard.check(manifest_path(options.output))


def _run(options: Any, out: Any) -> Any:
    """run_filter with SIGTERM turned into KeyboardInterrupt, so temp files are removed."""
    import signal
    import threading

    from synth_cli.dataset.run import run_filter

    previous = None
    if threading.current_thread() is threading.main_thread():
        def _term(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt()

        try:
            previous = signal.signal(signal.SIGTERM, _term)
        except (ValueError, OSError):  # pragma: no cover - not the main thread of the interpreter
            previous = None
    try:
        if out.json_mode or out.quiet or not out.err_console.is_terminal:
            return run_filter(options, on_notice=out.warn)
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        # the kept sessions' LLM events are counted before the scan: a bar with a total and an ETA
        columns = (TextColumn("filtering"), BarColumn(), MofNCompleteColumn(), TextColumn("LLM events ·"),
                   TimeRemainingColumn(), TextColumn("· {task.fields[examples]} examples"))
        with Progress(*columns, console=out.err_console, transient=True) as bar:
            task = bar.add_task("filter", total=None, examples="0")

            def progress(stats: Any) -> None:
                bar.update(task, total=stats.rows_total or None, completed=stats.rows_done,
                           examples=fmt_int(stats.examples))

            return run_filter(options, on_notice=out.warn, on_progress=progress)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _report_problems(stats: Any, options: Any, out: Any) -> None:
    from synth_cli.errors import SynthError

    if stats.malformed_rows:
        named = ", ".join(stats.malformed_sessions)
        more = "…" if stats.malformed_rows > len(stats.malformed_sessions) else ""
        out.warn(f"skipped {stats.malformed_rows} malformed call_records row(s) (sessions {named}{more}); "
                 "--strict makes this an error")
    if stats.invalid:
        reasons = "; ".join(f"{reason} ({count})" for reason, count in stats.invalid.most_common(3))
        named = "; ".join(f"session {e['session_id']} call {e['call_id']}: {e['reason']}"
                          for e in stats.invalid_examples[:3])
        out.warn(f"left out {sum(stats.invalid.values())} example(s) that fail validation: {reasons}"
                 + (f" (first: {named}; all named in --json)" if named else ""))
    if stats.examples == 0:
        if stats.sessions_kept and not stats.calls_scanned and not stats.malformed_rows:
            # The filters kept sessions, but they hold nothing to convert: loosening won't help.
            source = "messages" if all(db["source"] == "messages" for db in stats.dbs) else "LLM call records"
            why = f"the {stats.sessions_kept} session(s) kept hold no {source}"
            hint = ("record LLM calls with the tracer (SessionTracer.record_llm_call); "
                    "`synth-ai traces` shows how many LLM calls each DB holds")
        else:
            why, hint = "no examples match the filters", "loosen the filters; --dry-run shows what each filter drops"
        if options.dry_run:
            out.warn(why)
            return
        raise SynthError(f"{why}; nothing written", hint=hint)


# --------------------------------------------------------------------------- human rendering


def _bar(count: int, top: int, width: int = 28) -> str:
    if top <= 0 or count <= 0:
        return ""
    cells = max(1, round(width * count / top))
    return "█" * cells


def _render(stats: Any, out: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    data = stats.to_dict()
    ex = data["examples"]
    verb = "Dry run: would write" if stats.dry_run else "Wrote"
    if stats.val_output:
        head = (f"{verb} {fmt_int(ex['train'])} example(s) to {stats.output} and {fmt_int(ex['val'])} "
                f"to {stats.val_output}")
    elif stats.output:
        head = f"{verb} {fmt_int(ex['written'])} example(s) to {stats.output}"
    else:
        head = f"{verb} {fmt_int(ex['written'])} example(s)"
    out.print(Text(f"{head}  ({stats.mode} mode, {fmt_duration(stats.elapsed_s)})", style="bold"))

    rows: list[tuple[str, str]] = []
    for db in data["dbs"]:
        rows.append(("db", f"{db['db']}  ({db['kind']}, {db['source']})"))
    if data["filters"]:
        rows.append(("filters", ", ".join(f"{k}={_fmt_filter(v)}" for k, v in data["filters"].items())))
    s = data["sessions"]
    dropped = ", ".join(f"{k} {fmt_int(v)}" for k, v in s["dropped_by"].items())
    rows.append(("sessions", f"{fmt_int(s['scanned'])} scanned · {fmt_int(s['kept'])} kept · "
                             f"{fmt_int(s['dropped'])} dropped" + (f" ({dropped})" if dropped else "")))
    c = data["calls"]
    cdropped = ", ".join(f"{k} {fmt_int(v)}" for k, v in c["dropped_by"].items())
    rows.append(("calls", f"{fmt_int(c['scanned'])} scanned · {fmt_int(c['used'])} used"
                          + (f" · dropped: {cdropped}" if cdropped else "")))
    split = f" (train {fmt_int(ex['train'])}, val {fmt_int(ex['val'])})" if stats.val_output else ""
    rows.append(("examples", f"{fmt_int(ex['written'])}{split} · {fmt_int(ex['with_tool_calls'])} with tool calls · "
                             f"{fmt_int(ex['duplicates_removed'])} duplicate(s) removed"))
    if stats.val_output:
        rows.append(("val file", str(stats.val_output)))
    if stats.manifest:
        rows.append(("manifest", f"{stats.manifest}  (settings, sources, sha256; `sft` records them)"))
    invalid = sum(ex["invalid_dropped"].values())
    rows.append(("validation", "every example valid" if not invalid else
                 f"{fmt_int(invalid)} invalid example(s) left out"))
    if ex["empty_outputs"]:
        rows.append(("empty outputs", fmt_int(ex["empty_outputs"])))
    skipped = data["skipped_parts"]
    rows.append(("skipped parts", ", ".join(f"{k} {fmt_int(v)}" for k, v in skipped.items()) if skipped else "none"))
    red = data["redaction"]
    if red["mode"] == "off":
        rows.append(("redaction", "off (--no-redact): strings written as stored"))
    else:
        kinds = ", ".join(f"{k} {fmt_int(v)}" for k, v in red["by_kind"].items())
        rows.append(("redaction", f"{red['mode']}: " + (f"{kinds} in {fmt_int(red['examples'])} example(s)"
                                                         if kinds else "nothing found")))
    rows.append(("tokens", f"≈ {fmt_int(data['token_estimate'])} (estimate: 4 bytes of JSON per token, 765 per image)"))
    if data["malformed_rows"]["count"]:
        rows.append(("malformed rows", fmt_int(data["malformed_rows"]["count"])))
    if stats.limit_reached:
        rows.append(("limit", "reached (--limit)"))
    out.kv(rows)

    histogram = data["reward_histogram"]
    if histogram:
        top = max(b["sessions"] for b in histogram)
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(justify="right")
        table.add_column()
        table.add_column(justify="right")
        for b in histogram:
            label = _fmt_num(b["min"]) if b["min"] == b["max"] else f"{_fmt_num(b['min'])}–{_fmt_num(b['max'])}"
            kept = _bar(b["kept"], top)
            total = _bar(b["sessions"], top)
            bar = Text()
            bar.append(kept, style="green")
            bar.append("░" * max(0, len(total) - len(kept)), style="dim")
            table.add_row(label, bar, f"{fmt_int(b['kept'])}/{fmt_int(b['sessions'])}")
        out.print()
        out.print(Text("Total reward per session  (█ kept, ░ dropped)", style="bold"))
        out.print(table)

    models = data["models"]
    if models:
        top = max(models.values())
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column()
        table.add_column()
        table.add_column(justify="right")
        for name, count in models.items():
            table.add_row(name, Text(_bar(count, top), style="cyan"), fmt_int(count))
        out.print()
        out.print(Text("Examples per model", style="bold"))
        out.print(table)


def _fmt_num(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _fmt_filter(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(f"{v[0]}={v[1]}" if isinstance(v, (tuple, list)) else str(v) for v in value)
    return _fmt_num(value) if isinstance(value, (int, float)) else str(value)


def register(app: typer.Typer) -> None:
    app.command("filter", help=HELP, short_help=SUMMARIES["filter"])(
        filter_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'filter': [
        ('synth-ai filter --db traces.db --min-reward 1 -o train.jsonl',
         'One example per LLM call of the sessions whose rewards sum to 1 or more.'),
        ('synth-ai filter --db http://127.0.0.1:8080 --mode sessions --val-fraction 0.1 -o data/crafter.jsonl',
         'One example per conversation, from a libSQL server; 10% of the sessions in data/crafter.val.jsonl.'),
        ('synth-ai filter --db traces.db --where task_split=train --since 7d --model gpt-4o-mini --dry-run',
         'What a selection would give (stats only, nothing written).'),
        ('synth-ai filter --config filter.toml --json',
         'Settings from a TOML file (a [filter] table); the stats as one JSON object.'),
    ],
}
