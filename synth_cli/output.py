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
        return json_time(obj)
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


# --------------------------------------------------------------------------- time (docs/json.md)
#
# One clock. Machines (`--json`): RFC 3339 in UTC with `Z` and milliseconds, the
# shape of JavaScript's `Date.toISOString()`: `2026-11-22T22:23:49.837Z`.
# People: UTC, labelled (`2026-11-22 22:23:49 UTC`; in a table the column header
# says `(UTC)`). Trace DBs store naive UTC, APIs send epoch seconds: both are read
# here, by :func:`to_utc`, and nowhere else.


def to_utc(value: Any) -> datetime | None:
    """A moment from a datetime (naive = UTC), a date, epoch seconds or an ISO 8601 string; else None."""
    from datetime import timezone

    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc)
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(float(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    text = str(value).strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        return to_utc(datetime.fromisoformat(text))
    except ValueError:
        try:
            return to_utc(float(text))
        except ValueError:
            return None


def json_time(value: Any) -> str | None:
    """RFC 3339 UTC with `Z`, always milliseconds: `2026-11-22T22:23:49.837Z` (None stays None).

    A value that is no time at all is passed through as text rather than lost.
    """
    moment = to_utc(value)
    if moment is None:
        return None if value is None or value == "" else str(value)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def fmt_time(value: Any, *, seconds: bool = True, label: bool = True) -> str:
    """For people: `2026-11-22 22:23:49 UTC`; `seconds=False` drops the seconds, `label=False` the
    ` UTC` (for table cells whose column header says `(UTC)`)."""
    if value is None or value == "":
        return "–"
    moment = to_utc(value)
    if moment is None:
        return str(value)
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    return text + " UTC" if label else text


def fmt_clock(value: Any = None) -> str:
    """A line stamp in a stream: `22:23:49Z` (UTC; now when `value` is None)."""
    from datetime import timezone

    moment = to_utc(value) if value is not None else datetime.now(timezone.utc)
    return (moment or datetime.now(timezone.utc)).strftime("%H:%M:%SZ")


# --------------------------------------------------------------------------- numbers, money, sizes


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


def fmt_usd(value: Any, *, exact: bool = False) -> str:
    """The one money formatter: `$1,234.50`, `$0.50`, `$0.0068`, `$0.000156`.

    At least cents; below one dollar up to 6 decimals (LLM calls cost fractions of a cent);
    `exact=True` (a price calculation) keeps every digit down to 1e-9 at any size.
    """
    if value is None:
        return "–"
    from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

    try:
        dec = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not dec.is_finite():
        return str(value)
    places = Decimal("1e-9") if exact else (Decimal("0.01") if abs(dec) >= 1 else Decimal("1e-6"))
    rounded = dec.quantize(places, rounding=ROUND_HALF_UP)
    if rounded == 0 and dec != 0:
        return f"{'-' if dec < 0 else ''}<${format(places, 'f')}"
    sign = "-" if rounded < 0 else ""
    text = format(abs(rounded).normalize(), ",f")
    whole, _, frac = text.partition(".")
    return f"{sign}${whole}.{frac.ljust(2, '0')}"


def usd_number(value: Any, *, exact: bool = False) -> str:
    """A single amount for `--quiet`: a bare number (`99.92`, `0.0068`), no `$`, no separators."""
    return fmt_usd(value, exact=exact).replace("$", "").replace(",", "")


#: sizes are SI (docs/json.md): 1 kB = 1,000 B, 1 MB = 10^6 B, like rich's transfer columns.
_SIZE_UNITS = ("B", "kB", "MB", "GB", "TB")


def fmt_bytes(value: Any) -> str:
    if value is None:
        return "–"
    size = float(value)
    for unit in _SIZE_UNITS:
        if abs(size) < 1000 or unit == "TB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"  # pragma: no cover


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


# --------------------------------------------------------------------------- table columns


class Col:
    """A table column. Cells never wrap unless `wrap=True` (prose: wraps at spaces). A column with
    `drop > 0` is left out when the table does not fit the terminal, highest `drop` first."""

    __slots__ = ("name", "justify", "wrap", "drop")

    def __init__(self, name: str, justify: str = "left", *, wrap: bool = False, drop: int = 0):
        self.name, self.justify, self.wrap, self.drop = name, justify, wrap, drop

    @classmethod
    def of(cls, spec: Any) -> "Col":
        if isinstance(spec, Col):
            return spec
        if isinstance(spec, str):
            return cls(spec)
        return cls(*spec)


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

    def result(self, data: Any, human: Callable[[], None], *, essential: Iterable[Any] | None = None,
               stream: bool = False) -> None:
        """`--json` prints `data` (`stream=True`: as one NDJSON line, the end of a stream); otherwise
        `human()` renders it.

        `--quiet` keeps only the essential result: the `essential` lines when the command has them
        (ids of a listing, one per line, for `$(...)` and `xargs`; an empty list for commands whose
        result is a file or an exit code), else the whole report, which then is the essential result.
        Progress lines (`status`) stay suppressed either way.
        """
        if self.json_mode:
            (self.ndjson if stream else self.json)(data)
        elif not self.quiet:
            human()
        elif essential is not None:
            for item in essential:
                sys.stdout.write(inert(item) + "\n")  # ids and names from servers: shown inert
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

    def table(self, columns: Sequence[Any], rows: Iterable[Sequence[Any]], *,
              title: str | None = None, caption: str | None = None) -> None:
        """Columns are names, `(name, justify)` tuples or :class:`Col`; cells are pre-formatted strings.

        Ids, numbers, money and times never wrap: only `Col(wrap=True)` (prose) columns wrap. When
        the table is wider than the terminal, `Col(drop=N)` columns are left out (highest N first)
        and the caption says which; when the ids alone are still too wide, each row is printed as
        a record instead (its first cell, then one `column  value` line per cell), never folded.
        """
        if self._silent:
            return
        specs = [Col.of(c) for c in columns]
        cells = [list(row) for row in rows]
        keep = list(range(len(specs)))
        width = self.console.width
        while True:
            table = self._build_table(specs, cells, keep, title=title, caption=caption)
            droppable = [i for i in keep if specs[i].drop > 0]
            if not droppable or self._min_width(table) <= width:
                break
            keep.remove(max(droppable, key=lambda i: (specs[i].drop, i)))
        if self._min_width(table) > width:  # the ids alone do not fit side by side
            self._records(specs, cells, width, title=title, caption=caption)
            return
        hidden = [specs[i].name for i in range(len(specs)) if i not in keep]
        if hidden:
            note = f"hidden to fit {width} columns: {', '.join(hidden)} (--json has them)"
            caption = f"{caption}; {note}" if caption else note
            table = self._build_table(specs, cells, keep, title=title, caption=caption)
        self.console.print(table)

    def _records(self, specs: list["Col"], cells: list[list[Any]], width: int, *, title: str | None,
                 caption: str | None) -> None:
        """A table too wide for the terminal, one row after the other: every value whole."""
        lines = [title] if title else []
        pad = max((_cell_len(s.name) for s in specs[1:]), default=0)
        for n, row in enumerate(cells):
            values = [_plain(row[i]) if i < len(row) else "" for i in range(len(specs))]
            if n:
                lines.append("")
            lines.append(values[0] if values else "")
            for spec, value in zip(specs[1:], values[1:]):
                if not value:
                    continue
                line = f"  {spec.name.ljust(pad)}  {value}"
                if _cell_len(line) > width:  # a long id gets a line of its own (no indent if need be)
                    lines.extend([f"  {spec.name}", f"    {value}" if _cell_len(value) + 4 <= width else value])
                else:
                    lines.append(line)
        if caption:
            lines += ["", caption]
        for line in lines:
            self.line(line)

    def _build_table(self, specs: list["Col"], cells: list[list[str]], keep: list[int], *,
                     title: str | None, caption: str | None) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(title=None if title is None else Text(inert(title)),
                      caption=None if caption is None else Text(inert(caption)), header_style="bold",
                      title_justify="left", caption_justify="left", show_edge=False, pad_edge=False)
        widths = {i: max([_cell_len(specs[i].name)] + [_cell_len(_plain(row[i])) for row in cells if i < len(row)])
                  for i in keep}
        for i in keep:
            spec = specs[i]
            if spec.wrap:
                table.add_column(Text(inert(spec.name)), justify=spec.justify, overflow="fold")
            else:  # the whole value on one line: rich shrinks the prose columns first
                table.add_column(Text(inert(spec.name)), justify=spec.justify, no_wrap=True, overflow="ellipsis",
                                 min_width=widths[i], max_width=widths[i])
        for row in cells:
            table.add_row(*(_cell(row[i] if i < len(row) else None) for i in keep))
        return table

    def _min_width(self, table: Any) -> int:
        from rich.measure import Measurement

        return Measurement.get(self.console, self.console.options.update_width(100_000), table).minimum

    def kv(self, pairs: Iterable[tuple[str, Any]], *, title: str | None = None) -> None:
        """`key  value` lines. Prose values wrap under their column; a value that is one long token
        (an id, a model name, a URL) is never folded: it gets a line of its own when it does not fit."""
        if self._silent:
            return
        from rich.table import Table
        from rich.text import Text

        pairs = list(pairs)
        pad = max((_cell_len(_plain(k)) for k, _ in pairs), default=0)
        room = self.console.width - pad - 2
        table: Any = None

        def flush() -> None:
            nonlocal table
            if table is not None:
                self.console.print(table)
                table = None

        for n, (key, value) in enumerate(pairs):
            text = _plain(value)
            if text and not any(c.isspace() for c in text) and _cell_len(text) > room:
                flush()  # one long token: the key, then the whole value on the next line
                self.console.print(Text(inert(_plain(key)), style="bold"))
                self.console.print(Text(("  " if _cell_len(text) + 2 <= self.console.width else "") + text))
                continue
            if table is None:
                table = Table(show_header=False, box=None, pad_edge=False,
                              title=None if title is None or n else Text(inert(title)), title_justify="left")
                table.add_column(style="bold", min_width=pad)
                table.add_column(overflow="fold")
            table.add_row(_cell(key), _cell(value))
        flush()

    # -- diagnostics (stderr, every mode) ---------------------------------------------
    def fail(self, message: str, hint: str | None = None, exit_code: int = 1) -> None:
        """The error formatter: `error:`/`hint:` on stderr; under --json also, on stdout,
        `{"error": {"message", "hint", "exit_code"}}` so a script never parses an empty stdout."""
        self.error(message, hint)
        if self.json_mode:
            from synth_cli.config import redact

            self.json({"error": {"message": redact(_one_line(message)),  # JSON escapes controls itself
                                 "hint": redact(_one_line(hint)) if hint else None, "exit_code": int(exit_code)}})

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


def _plain(value: Any) -> str:
    """What a cell shows, as text (for its width)."""
    if value is None:
        return ""
    plain = getattr(value, "plain", None)
    return inert(plain if isinstance(plain, str) else str(value))


def _cell_len(text: str) -> int:
    from rich.cells import cell_len

    return max((cell_len(line) for line in text.splitlines()), default=0)


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
    # Off a terminal: no colour codes, and a wide virtual width so tables are not cut in logs,
    # unless COLUMNS says how wide (what `COLUMNS=80 synth-ai traces | less` asks for).
    width = None
    if not is_tty:
        import os

        columns = os.environ.get("COLUMNS", "")
        width = int(columns) if columns.isdigit() and int(columns) > 0 else 160
    # markup/emoji off: text from traces and servers is never interpreted (`[bold]`, `:smile:`);
    # the CLI's own markup asks for it per call (`Output.print(..., markup=True)`).
    return _safe_console_class()(file=stream, highlight=False, soft_wrap=False, markup=False, emoji=False,
                                 width=width, no_color=not is_tty,
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
