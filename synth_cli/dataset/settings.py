"""The one table of `filter`'s settings: :data:`SETTINGS`.

Each row is one setting: its flag (`--min-reward`, from the key), the type and metavar
the flag takes, its `--help` text, whether the `--config` file's `[filter]` table may
set it (under the same key), the :class:`~synth_cli.dataset.options.FilterOptions`
field it fills and its default, and the validation both spellings go through
(`parse(value, name)`, raising a :class:`~synth_cli.errors.UsageError` that names the
flag or the config key). `commands/filter.py` builds the command's signature from it,
`dataset/options.py` the FilterOptions dataclass, the config keys and their checks.
Adding a filter setting = one row here, plus its use (the query in `store/selection.py`).

Light on purpose (stdlib, no dataclasses): the CLI imports it at start-up to build
`filter`'s options. Nothing here prints.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from functools import partial
from typing import Any, Callable

from synth_cli.config import INT64_MAX, INT64_MIN
from synth_cli.errors import UsageError
from synth_cli.timespan import after, before, clamp

#: how `--mode` (and the published package's `mode`) may be spelled
PUBLISHED_MODES = {"trajectory": "sessions", "window": "calls", "calls": "calls", "sessions": "sessions"}
#: spellings of the redaction setting (a config file may say `redact = false`)
REDACT_MODES = {"secrets": "secrets", "true": "secrets", "pii": "pii", "off": "off", "none": "off", "false": "off"}


# --------------------------------------------------------------------------- value checks
# Each takes (value, name): the flag's value (a string, number or list, as click parsed it) or the
# TOML value, and the name to blame (`--max-cost` or `f.toml [filter]: max_cost`).

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|sec|secs|m|min|mins|h|hr|hrs|hours?|d|days?|w|weeks?)\s*$", re.I)
_SPAN_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(value: Any, flag: str, *, end_of_day: bool = False, now: datetime | None = None) -> datetime:
    """An ISO date/time (naive = UTC) or a relative span (`30m`, `24h`, `7d`, `2w`) → naive UTC.

    A bare date given to `--until` means the end of that day (`--until 2025-08-08`
    includes the 8th), like `gh search --created '<=2025-08-08'`.
    """
    if isinstance(value, datetime):
        parsed = value
    else:
        text = str(value).strip()
        match = _SPAN.match(text)
        if match:
            amount = float(match.group(1))
            unit = match.group(2).lower()
            seconds = amount * _SPAN_SECONDS["m" if unit.startswith("mi") or unit == "m" else unit[0]]
            base = now or datetime.now(timezone.utc).replace(tzinfo=None)
            return before(base, seconds)
        iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
        try:
            parsed = datetime.fromisoformat(iso)
        except ValueError:
            raise UsageError(f"{flag} {text!r}: not a date/time or a relative span",
                             hint="use e.g. 2025-08-08, '2025-08-08 16:00', 2025-08-08T16:00:00Z, 24h or 7d") from None
        if end_of_day and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed = after(parsed, 86400 - 1e-6)
    if parsed.tzinfo is not None:
        try:
            parsed = parsed.astimezone(timezone.utc).replace(tzinfo=None)
        except OverflowError:  # 9999-12-31T23:00-05:00 is past the calendar in UTC
            parsed = datetime.max if parsed.year > 1 else datetime.min
    return clamp(parsed)  # 9999-12-31 ends where SQLite's calendar does


def parse_where(items: Any, flag: str = "--where") -> list[tuple[str, str]]:
    """`KEY=VALUE` strings (or a TOML table) → [(key, value)]."""
    if items is None:
        return []
    if isinstance(items, dict):
        pairs = list(_flatten(items))
    else:
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, (list, tuple)):
            raise UsageError(f"{flag}: expected KEY=VALUE strings or a table, got {items!r}",
                             hint="e.g. where = { task_split = \"train\" }")
        pairs = []
        for item in items:
            if not isinstance(item, str) or "=" not in item:
                raise UsageError(f"{flag} {item!r}: expected KEY=VALUE", hint="e.g. --where task_split=train")
            key, _, value = item.partition("=")
            pairs.append((key, value))
    out = []
    for key, value in pairs:
        key = str(key).strip()
        if not key:
            raise UsageError(f"{flag}: empty key", hint="e.g. --where task_split=train")
        out.append((key, _where_value(value, f"{flag} {key}")))
    return out


def _flatten(table: dict, prefix: str = "") -> Any:
    """A TOML table as (dotted key, value) pairs: `task.split = "train"` (a nested table) → `task.split`."""
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _where_value(value: Any, name: str) -> str:
    if isinstance(value, (list, tuple)):
        raise UsageError(f"{name}: expected a string, number or boolean to compare with, got {value!r}",
                         hint="one KEY = VALUE per metadata key, e.g. where = { task_split = \"train\" }")
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    return str(value)


def number(value: Any, name: str, *, integer: bool = False, minimum: float | None = None) -> Any:
    """A finite number (an integer within 64 bits when `integer`), at least `minimum`."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"{name}: expected a number, got {value!r}")
    try:
        num = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}") from None
    if integer and isinstance(num, float):
        if not num.is_integer():
            raise UsageError(f"{name}: expected an integer, got {value!r}")
        num = int(num)
    if isinstance(num, float) and not math.isfinite(num):
        raise UsageError(f"{name}: expected a finite number, got {value!r}")
    if isinstance(num, int) and not INT64_MIN <= num <= INT64_MAX:
        raise UsageError(f"{name}: {value!r} is out of range (a 64-bit integer, at most {INT64_MAX})")
    if minimum is not None and num < minimum:
        raise UsageError(f"{name}: must be >= {minimum:g}, got {value!r}")
    return num


def str_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"{name}: expected a string or a list of strings")


def boolean(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"{name}: expected true or false, got {value!r}")


def _path(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{name}: expected a file path")
    return value


def _mode(value: Any, name: str) -> str:
    mode = PUBLISHED_MODES.get(value.lower()) if isinstance(value, str) else None
    if mode is None:
        raise UsageError(f"{name} {value!r}: expected calls or sessions")
    return mode


def _fraction(value: Any, name: str) -> float:
    fraction = number(value, name)
    if not 0 <= fraction < 1:
        raise UsageError(f"{name} {value}: must be at least 0 and below 1",
                         hint="e.g. --val-fraction 0.1 keeps 10% of the sessions for validation")
    return fraction


def _redact(value: Any, name: str) -> str:
    mode = REDACT_MODES.get(str(value).lower()) if isinstance(value, (str, bool)) else None
    if mode is None:
        raise UsageError(f"{name} {value!r}: expected secrets, pii or off")
    return mode


def _no_redact(value: Any, name: str) -> str | None:
    return "off" if value else None  # not given: leave `redact` alone


# --------------------------------------------------------------------------- the table


class Setting:
    """One row of :data:`SETTINGS` (see the module docstring)."""

    __slots__ = ("key", "type", "help", "metavar", "short", "many", "negatable", "config", "field",
                 "annotation", "default", "parse", "summary")

    def __init__(self, key: str, type: type, help: str, *, metavar: str | None = None, short: str | None = None,
                 many: bool = False, negatable: bool = False, config: bool = True, field: str | None = "",
                 annotation: str = "", default: Any = None, parse: Callable[[Any, str], Any] | None = None,
                 summary: bool = False) -> None:
        self.key = key                    # the config key; the flag is --key-with-dashes
        self.type = type                  # what the flag takes (str, int, float, bool)
        self.help = help                  # its --help text
        self.metavar = metavar
        self.short = short                # e.g. -o
        self.many = many                  # repeatable flag / a list in the config file
        self.negatable = negatable        # --x/--no-x (a bool row without it is a plain switch)
        self.config = config              # the [filter] table may set it
        self.field = key if field == "" else field   # the FilterOptions field it fills (None: the command's own)
        self.annotation = annotation or (f"list[{type.__name__}]" if many else f"{type.__name__} | None")
        self.default = default            # the FilterOptions field's default (a list row: [])
        self.parse = parse or (boolean if type is bool else partial(number, integer=type is int))
        self.summary = summary            # a session filter: shown in the stats' `filters`

    @property
    def flag(self) -> str:
        return "--" + self.key.replace("_", "-")

    def __repr__(self) -> str:
        return f"Setting({self.key!r})"


def _at_least(minimum: float, *, integer: bool = False) -> Callable[[Any, str], Any]:
    return partial(number, integer=integer, minimum=minimum)


#: every setting of `filter`, in the order `--help` lists them
SETTINGS: tuple[Setting, ...] = (
    Setting("db", str, "Trace DB: SQLite file, sqld dir, sqlite:/// or libSQL URL. Repeatable. Default: "
            "$SYNTH_TRACES_DB.", metavar="PATH_OR_URL", many=True, field="dbs", parse=str_list),
    Setting("output", str, "JSONL file to write (required unless --dry-run).", metavar="FILE", short="-o",
            parse=_path),
    Setting("mode", str, "One example per call (default) or per conversation.", metavar="calls|sessions",
            annotation="str", default="calls", parse=_mode),
    Setting("config", str, "Read settings from a TOML file: a `filter` table, or the published package's "
            "`mode` + `filters` table; flags override it.", metavar="FILE.toml", config=False, field=None,
            parse=_path),
    Setting("min_reward", float, "Keep sessions whose environment rewards sum to >= R.", metavar="R",
            summary=True),
    Setting("max_reward", float, "Keep sessions whose environment rewards sum to <= R.", metavar="R",
            summary=True),
    Setting("min_achievements", int, "Keep sessions with >= N achievements unlocked (last environment state).",
            metavar="N", parse=_at_least(0, integer=True), summary=True),
    Setting("max_cost", float, "Keep sessions whose LLM calls cost <= USD.", metavar="USD", parse=_at_least(0),
            summary=True),
    Setting("max_tokens", int, "Keep sessions whose LLM calls used <= N tokens.", metavar="N",
            parse=_at_least(0, integer=True), summary=True),
    Setting("experiment", str, "Keep sessions of this experiment. Repeatable.", metavar="ID_OR_NAME", many=True,
            field="experiments", parse=str_list, summary=True),
    Setting("since", str, "Sessions created at/after WHEN: ISO date/time (UTC) or 24h, 7d…", metavar="WHEN",
            annotation="datetime | None", parse=parse_when, summary=True),
    Setting("until", str, "Sessions created at/before WHEN (a bare date includes that day).", metavar="WHEN",
            annotation="datetime | None", parse=partial(parse_when, end_of_day=True), summary=True),
    Setting("where", str, "Session metadata must match, e.g. task_split=train. Repeatable.", metavar="KEY=VALUE",
            many=True, annotation="list[tuple[str, str]]", parse=parse_where, summary=True),
    Setting("model", str, "Use only calls to this model. Repeatable.", metavar="NAME", many=True, field="models",
            parse=str_list),
    Setting("include_errors", bool, "Also use calls whose outcome is not success.", negatable=True,
            annotation="bool", default=False),
    Setting("val_fraction", float, "Also write <output stem>.val.jsonl with ~F of the sessions.", metavar="F",
            annotation="float", default=0.0, parse=_fraction),
    Setting("seed", int, "Seed of the train/val split (default 0).", metavar="N", annotation="int", default=0),
    Setting("limit", int, "Write at most N examples.", metavar="N", parse=_at_least(1, integer=True)),
    Setting("include_metadata", bool, "Add a metadata object (session, call, model, reward, experiment) to each "
            "line.", negatable=True, annotation="bool", default=False),
    Setting("redact", str, "Scrub secrets (default: API keys, tokens, private keys, KEY=value secrets) from every "
            "string written; pii also e-mail addresses and phone numbers.", metavar="secrets|pii",
            annotation="str", default="secrets", parse=_redact),
    Setting("no_redact", bool, "Write strings as stored: no scrubbing.", config=False, field="redact",
            parse=_no_redact),
    Setting("parents", bool, "Create the output's missing parent directories (default: a missing directory is an "
            "error).", negatable=True, annotation="bool", default=False),
    Setting("dry_run", bool, "Compute everything, write nothing.", config=False, annotation="bool", default=False),
    Setting("strict", bool, "Malformed call records and invalid examples are errors.", negatable=True,
            annotation="bool", default=False),
    Setting("workers", int, "Processes converting a DB's call records (default: the CPU count; 1 for small "
            "DBs, --limit or --strict). Output is identical whatever N.", metavar="N",
            parse=_at_least(1, integer=True)),
)

BY_KEY: dict[str, Setting] = {s.key: s for s in SETTINGS}
#: keys of the config file's `[filter]` table, in table order
CONFIG_KEYS: tuple[str, ...] = tuple(s.key for s in SETTINGS if s.config)
