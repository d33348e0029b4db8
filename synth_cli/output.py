"""The one output sink of the CLI.

* human mode: rich tables and panels on stdout (thousands separators, human sizes);
* `--json`: exactly one JSON document on stdout (or NDJSON lines for streams), nothing else;
* errors, warnings and hints: one line each on stderr, in every mode.

Commands get the current sink with :func:`get_output`; the root callback sets it.
`rich` is imported lazily so that `--help` and fast commands stay fast.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from typing import Any


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


#: escaped as \uXXXX in JSON output (the same string to a JSON reader): lone surrogates (a non-UTF-8
#: file name, which would make the document invalid UTF-8), DEL and C1 controls and bidi overrides,
#: which json.dumps leaves raw and a terminal showing the document might act on.
_JSON_ESCAPE = re.compile("[\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def dumps(obj: Any, *, indent: int | None = None) -> str:
    text = json.dumps(obj, default=_json_default, ensure_ascii=False, indent=indent)
    return _JSON_ESCAPE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text) if _JSON_ESCAPE.search(text) else text


# --------------------------------------------------------------------------- inert text

#: what a terminal would act on instead of showing: C0 controls but tab and newline (ESC starts
#: title changes, screen clears, hidden text; CR overwrites the line), DEL, C1 controls (CSI 0x9b),
#: bidirectional overrides and marks (text shown in another order), and lone surrogates (bytes of
#: a non-UTF-8 name, which would make the write itself fail).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")


def _visible(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    if 0xDC80 <= code <= 0xDCFF:  # a byte of a non-UTF-8 file name (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def inert(text: Any) -> str:
    """`text` made safe to show: control characters as visible escapes (`\\x1b`), tab and newline kept.

    Every string the CLI shows passes through here (tables, key-value lists, plain lines,
    errors, the live view); rich markup is never interpreted in data (the consoles are
    created with `markup=False`), so `lr [bold] sweep` shows as written.
    """
    text = text if isinstance(text, str) else str(text)
    return _UNSAFE.sub(_visible, text) if _UNSAFE.search(text) else text


def _inert_renderable(obj: Any) -> Any:
    """Strings and rich Text made inert before layout (so column widths count what is shown)."""
    if isinstance(obj, str):
        return inert(obj)
    plain = getattr(obj, "plain", None)
    if isinstance(plain, str) and _UNSAFE.search(plain) and type(obj).__name__ == "Text":
        from rich.text import Text

        return Text(inert(plain), style=obj.style, justify=obj.justify, overflow=obj.overflow,
                    no_wrap=obj.no_wrap, end=obj.end)
    return obj


def write_line(text: str, *, stderr: bool = False) -> None:
    """One inert line on stdout (or stderr), in every mode: for renderers that print without a console."""
    stream = sys.stderr if stderr else sys.stdout
    stream.write(inert(text) + "\n")
    stream.flush()


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
    def print(self, *objects: Any, markup: bool = False, **kwargs: Any) -> None:
        """Rich renderables; a string is shown literally unless `markup=True` (only for the CLI's own text)."""
        if self._silent:
            return
        self.console.print(*(_inert_renderable(o) for o in objects), markup=markup, **kwargs)

    def line(self, text: str = "") -> None:
        """Plain text on stdout with no markup processing (human mode only)."""
        if self._silent:
            return
        sys.stdout.write(inert(text) + "\n")
        sys.stdout.flush()

    def table(self, columns: Sequence[str | tuple[str, str]], rows: Iterable[Sequence[Any]], *,
              title: str | None = None, caption: str | None = None) -> None:
        """Columns are names or (name, justify); cells are pre-formatted strings."""
        if self._silent:
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(title=None if title is None else Text(inert(title)),
                      caption=None if caption is None else Text(inert(caption)), header_style="bold",
                      title_justify="left", caption_justify="left", show_edge=False, pad_edge=False)
        for col in columns:
            name, justify = (col, "left") if isinstance(col, str) else col
            table.add_column(Text(inert(name)), justify=justify, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(c) for c in row))
        self.console.print(table)

    def kv(self, pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
        if self._silent:
            return
        from rich.table import Table
        from rich.text import Text

        table = Table(show_header=False, box=None, title=None if title is None else Text(inert(title)),
                      title_justify="left", pad_edge=False)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in pairs:
            table.add_row(_cell(key), _cell(value))
        self.console.print(table)

    # -- diagnostics (stderr, every mode) ---------------------------------------------
    def error(self, message: str, hint: str | None = None) -> None:
        from synth_cli.config import redact

        _err_line("error: " + inert(redact(_one_line(message))))
        if hint:
            self.hint(hint)

    def warn(self, message: str) -> None:
        from synth_cli.config import redact

        _err_line("warning: " + inert(redact(_one_line(message))))

    def hint(self, message: str) -> None:
        from synth_cli.config import redact

        _err_line("hint: " + inert(redact(_one_line(message))))

    def tip(self, message: str) -> None:
        """A `hint:` that is advice, not part of an error: dropped by --quiet."""
        if not self.quiet:
            self.hint(message)

    def status(self, message: str) -> None:
        """Progress chatter for people: stderr, suppressed by --quiet and --json."""
        if self.quiet or self.json_mode:
            return
        _err_line(inert(message))


def _cell(value: Any) -> Any:
    """A table cell: None empty, strings literal and inert (never markup), rich renderables as they are."""
    from rich.text import Text

    if value is None:
        return Text("")
    if isinstance(value, str):
        return Text(inert(value))
    if type(value).__name__ == "Text":
        return _inert_renderable(value)
    if hasattr(value, "__rich_console__") or hasattr(value, "__rich__"):
        return value
    return Text(inert(str(value)))


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _err_line(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _make_console(stream):
    is_tty = False
    try:
        is_tty = stream.isatty()
    except (AttributeError, ValueError):
        pass
    # Off a terminal: no colour codes, and a wide virtual width so tables are not folded in logs.
    # markup/emoji off: text from traces and servers is never interpreted (`[bold]`, `:smile:`);
    # the CLI's own markup asks for it per call (`Output.print(..., markup=True)`).
    return _safe_console_class()(file=stream, highlight=False, soft_wrap=False, markup=False, emoji=False,
                                 width=None if is_tty else 160, no_color=not is_tty,
                                 force_terminal=None if is_tty else False)


_SafeConsole: Any = None


def _safe_console_class() -> Any:
    """A rich Console whose every text segment is made inert as it is written (a renderer that
    builds its own rich objects, e.g. the live view, is covered too); its own control segments
    (cursor moves of a live display) and the colour codes of styles pass."""
    global _SafeConsole
    if _SafeConsole is None:
        from rich.console import Console
        from rich.segment import Segment

        class SafeConsole(Console):
            def _render_buffer(self, buffer: Iterable[Any]) -> str:
                return super()._render_buffer(
                    seg if seg.control or not _UNSAFE.search(seg.text) else Segment(inert(seg.text), seg.style)
                    for seg in buffer)

        _SafeConsole = SafeConsole
    return _SafeConsole


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
