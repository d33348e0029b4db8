"""The one output sink of the CLI.

* human mode: rich tables and panels on stdout (thousands separators, human sizes);
* `--json`: exactly one JSON document on stdout (or NDJSON lines for streams), nothing else;
* errors, warnings and hints: one line each on stderr, in every mode.

Commands get the current sink with :func:`get_output`; the root callback sets it.
`rich` is imported lazily so that `--help` and fast commands stay fast.
"""

from __future__ import annotations

import json
import sys
from datetime import date, datetime
from typing import Any, Callable, Iterable, Sequence


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (datetime, date)):
        return obj.isoformat()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    return str(obj)


def dumps(obj: Any, *, indent: int | None = None) -> str:
    return json.dumps(obj, default=_json_default, ensure_ascii=False, indent=indent)


# --------------------------------------------------------------------------- formatting helpers


def fmt_int(value: Any) -> str:
    if value is None:
        return "–"
    try:
        return f"{int(value):,}"
    except (TypeError, ValueError):
        return str(value)


def fmt_float(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    return f"{float(value):,.{digits}f}"


def fmt_usd(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value != 0 and abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def fmt_bytes(value: Any) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def fmt_time(value: Any) -> str:
    if value is None or value == "":
        return "–"
    text = value.isoformat(sep=" ") if isinstance(value, datetime) else str(value)
    return text.replace("T", " ")[:19]


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = float(seconds)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


# --------------------------------------------------------------------------- the sink


class Output:
    """Human or JSON rendering; stderr for diagnostics."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False, debug: bool = False):
        self.json_mode = json_mode
        self.quiet = quiet
        self.debug = debug
        self._showing_result = False  # a report being rendered in --quiet mode
        self._console = None
        self._err_console = None

    # -- consoles (rich imported on first use) ---------------------------------
    @property
    def console(self):
        if self._console is None:
            self._console = _make_console(sys.stdout)
        return self._console

    @property
    def err_console(self):
        if self._err_console is None:
            self._err_console = _make_console(sys.stderr)
        return self._err_console

    @property
    def is_terminal(self) -> bool:
        try:
            return sys.stdout.isatty()
        except (AttributeError, ValueError):
            return False

    # -- structured output -------------------------------------------------------
    def json(self, obj: Any) -> None:
        """One JSON document on stdout."""
        sys.stdout.write(dumps(obj, indent=2) + "\n")
        sys.stdout.flush()

    def ndjson(self, obj: Any) -> None:
        """One line of a JSON stream on stdout."""
        sys.stdout.write(dumps(obj) + "\n")
        sys.stdout.flush()

    def result(self, data: Any, human: Callable[[], None], *, essential: Iterable[Any] | None = None) -> None:
        """`--json` prints `data`; otherwise `human()` renders it.

        `--quiet` keeps only the essential result: the `essential` lines when the command has them
        (ids of a listing, one per line, for `$(...)` and `xargs`; an empty list for commands whose
        result is a file or an exit code), else the whole report, which then is the essential result.
        Progress lines (`status`) stay suppressed either way.
        """
        if self.json_mode:
            self.json(data)
        elif not self.quiet:
            human()
        elif essential is not None:
            for item in essential:
                sys.stdout.write(f"{item}\n")
            sys.stdout.flush()
        else:
            self._showing_result = True
            try:
                human()
            finally:
                self._showing_result = False

    @property
    def _silent(self) -> bool:
        return self.json_mode or (self.quiet and not self._showing_result)

    # -- human output -----------------------------------------------------------
    def print(self, *objects: Any, **kwargs: Any) -> None:
        if self._silent:
            return
        self.console.print(*objects, **kwargs)

    def line(self, text: str = "") -> None:
        """Plain text on stdout with no markup processing (human mode only)."""
        if self._silent:
            return
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    def table(self, columns: Sequence[str | tuple[str, str]], rows: Iterable[Sequence[Any]], *,
              title: str | None = None, caption: str | None = None) -> None:
        """Columns are names or (name, justify); cells are pre-formatted strings."""
        if self._silent:
            return
        from rich.table import Table

        table = Table(title=title, caption=caption, header_style="bold", title_justify="left",
                      caption_justify="left", show_edge=False, pad_edge=False)
        for col in columns:
            name, justify = (col, "left") if isinstance(col, str) else col
            table.add_column(name, justify=justify, overflow="fold")
        for row in rows:
            table.add_row(*("" if c is None else str(c) for c in row))
        self.console.print(table)

    def kv(self, pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
        if self._silent:
            return
        from rich.table import Table

        table = Table(show_header=False, box=None, title=title, title_justify="left", pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(key, "" if value is None else str(value))
        self.console.print(table)

    # -- diagnostics (stderr, every mode) ---------------------------------------------
    def error(self, message: str, hint: str | None = None) -> None:
        from synth_cli.config import redact

        _err_line("error: " + redact(_one_line(message)))
        if hint:
            self.hint(hint)

    def warn(self, message: str) -> None:
        from synth_cli.config import redact

        _err_line("warning: " + redact(_one_line(message)))

    def hint(self, message: str) -> None:
        from synth_cli.config import redact

        _err_line("hint: " + redact(_one_line(message)))

    def tip(self, message: str) -> None:
        """A `hint:` that is advice, not part of an error: dropped by --quiet."""
        if not self.quiet:
            self.hint(message)

    def status(self, message: str) -> None:
        """Progress chatter for people: stderr, suppressed by --quiet and --json."""
        if self.quiet or self.json_mode:
            return
        _err_line(message)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _err_line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _make_console(stream):
    from rich.console import Console

    is_tty = False
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):
        pass
    # Off a terminal: no colour codes, and a wide virtual width so tables are not folded in logs.
    return Console(file=stream, highlight=False, soft_wrap=False,
                   width=None if is_tty else 160, no_color=not is_tty, force_terminal=None if is_tty else False)


_current: Output | None = None


def set_output(output: Output) -> Output:
    global _current
    _current = output
    return output


def get_output() -> Output:
    global _current
    if _current is None:
        _current = Output()
    return _current
