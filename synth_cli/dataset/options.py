"""What `filter` is asked to do: options from flags and from a TOML config file.

:class:`FilterOptions` holds every setting; :func:`load_config` reads a TOML file in
either shape:

* ours: a `[filter]` table whose keys are the flags in snake_case
  (`min_reward = 1`, `model = ["gpt-4o-mini"]`, `where = {task_split = "train"}`…);
* the published `synth-ai` package's: top-level `mode` ("trajectory" → sessions,
  "window" → calls) and a `[filters]` table with `min_total_reward`,
  `min_achievements`, `max_cost`, `max_tokens`, `models` (its `[window]` and
  `[output]` tables are read too: `include_metadata` is honoured, the rest reported
  as ignored).

Unknown keys are a :class:`~synth_cli.errors.UsageError` naming the allowed ones.
:func:`merge` lets flags override the file. Nothing here prints.
"""

from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from synth_cli.config import INT64_MAX, INT64_MIN
from synth_cli.errors import UsageError
from synth_cli.timespan import after, before, clamp

MODES = ("calls", "sessions")
PUBLISHED_MODES = {"trajectory": "sessions", "window": "calls", "calls": "calls", "sessions": "sessions"}


@dataclass
class FilterOptions:
    dbs: list[str] = field(default_factory=list)
    output: str | None = None
    mode: str = "calls"
    min_reward: float | None = None
    max_reward: float | None = None
    min_achievements: int | None = None
    max_cost: float | None = None
    max_tokens: int | None = None
    experiments: list[str] = field(default_factory=list)
    since: datetime | None = None
    until: datetime | None = None
    where: list[tuple[str, str]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    include_errors: bool = False
    val_fraction: float = 0.0
    seed: int = 0
    limit: int | None = None
    include_metadata: bool = False
    dry_run: bool = False
    strict: bool = False
    #: what `filter` scrubs from the examples: "secrets" (default), "pii" (secrets + e-mails, phones), "off"
    redact: str = "secrets"
    #: processes that convert the call records (`--workers`); None: the CPU count, one for small DBs
    workers: int | None = None
    #: create missing parent directories of the output (`--parents`)
    parents: bool = False
    #: what the config file asked for that has no equivalent here (reported as warnings)
    ignored: list[str] = field(default_factory=list)

    def session_filters(self) -> dict[str, Any]:
        """The session-level filters in effect (for the summary)."""
        out: dict[str, Any] = {}
        for name in ("experiments", "since", "until", "where", "min_reward", "max_reward", "min_achievements",
                     "max_cost", "max_tokens"):
            value = getattr(self, name)
            if value not in (None, [], ()):
                out[name] = value.isoformat(sep=" ") if isinstance(value, datetime) else value
        return out


# --------------------------------------------------------------------------- value parsing

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


def _number(value: Any, name: str, *, integer: bool = False, minimum: float | None = None) -> Any:
    if value is None:
        return None
    if isinstance(value, bool):
        raise UsageError(f"{name}: expected a number, got {value!r}")
    try:
        number = int(value) if integer and not isinstance(value, float) else float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: expected {'an integer' if integer else 'a number'}, got {value!r}") from None
    if integer and isinstance(number, float):
        if not number.is_integer():
            raise UsageError(f"{name}: expected an integer, got {value!r}")
        number = int(number)
    if isinstance(number, float) and not math.isfinite(number):
        raise UsageError(f"{name}: expected a finite number, got {value!r}")
    if isinstance(number, int) and not INT64_MIN <= number <= INT64_MAX:
        raise UsageError(f"{name}: {value!r} is out of range (a 64-bit integer, at most {INT64_MAX})")
    if minimum is not None and number < minimum:
        raise UsageError(f"{name}: must be >= {minimum:g}, got {value!r}")
    return number


def _str_list(value: Any, name: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise UsageError(f"{name}: expected a string or a list of strings")


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    raise UsageError(f"{name}: expected true or false, got {value!r}")


# --------------------------------------------------------------------------- building options

#: keys of the `[filter]` table → how to read them
FILTER_KEYS = (
    "db", "output", "mode", "min_reward", "max_reward", "min_achievements", "max_cost", "max_tokens",
    "experiment", "since", "until", "where", "model", "include_errors", "val_fraction", "seed", "limit",
    "include_metadata", "strict", "redact", "parents", "workers",
)
#: spellings of the redaction setting (a config file may say `redact = false`)
REDACT_MODES = {"secrets": "secrets", "true": "secrets", "pii": "pii", "off": "off", "none": "off", "false": "off"}
PUBLISHED_FILTERS_KEYS = ("min_total_reward", "min_achievements", "max_cost", "max_tokens", "models")
PUBLISHED_TOP_KEYS = ("mode", "filters", "window", "output")
PUBLISHED_OUTPUT_KEYS = ("include_metadata", "max_context_length")
PUBLISHED_WINDOW_KEYS = ("window_size", "stride", "min_window_reward")


def build(values: dict[str, Any], *, source: str = "flag") -> dict[str, Any]:
    """Validate raw values (flag or config spelling, snake_case) into FilterOptions fields.

    Keys: those of FILTER_KEYS; values None mean "not given". Returns only given keys.
    """
    out: dict[str, Any] = {}

    def name(key: str) -> str:
        return f"--{key.replace('_', '-')}" if source == "flag" else f"{source}: {key}"

    for key, value in values.items():
        if value is None:
            continue
        if key == "db":
            out["dbs"] = _str_list(value, name(key))
        elif key == "output":
            if not isinstance(value, str) or not value:
                raise UsageError(f"{name(key)}: expected a file path")
            out["output"] = value
        elif key == "mode":
            mode = PUBLISHED_MODES.get(str(value).lower()) if isinstance(value, str) else None
            if mode is None:
                raise UsageError(f"{name(key)} {value!r}: expected calls or sessions")
            out["mode"] = mode
        elif key in ("min_reward", "max_reward"):
            out[key] = _number(value, name(key))
        elif key == "max_cost":
            out[key] = _number(value, name(key), minimum=0)
        elif key in ("min_achievements", "max_tokens"):
            out[key] = _number(value, name(key), integer=True, minimum=0)
        elif key == "experiment":
            out["experiments"] = _str_list(value, name(key))
        elif key == "since":
            out["since"] = parse_when(value, name(key))
        elif key == "until":
            out["until"] = parse_when(value, name(key), end_of_day=True)
        elif key == "where":
            out["where"] = parse_where(value, name(key))
        elif key == "model":
            out["models"] = _str_list(value, name(key))
        elif key in ("include_errors", "include_metadata", "strict", "dry_run", "parents"):
            out[key] = _bool(value, name(key))
        elif key == "val_fraction":
            fraction = _number(value, name(key))
            if not 0 <= fraction < 1:
                raise UsageError(f"{name(key)} {value}: must be at least 0 and below 1",
                                 hint="e.g. --val-fraction 0.1 keeps 10% of the sessions for validation")
            out[key] = fraction
        elif key == "seed":
            out[key] = _number(value, name(key), integer=True)
        elif key in ("limit", "workers"):
            out[key] = _number(value, name(key), integer=True, minimum=1)
        elif key == "redact":
            mode = REDACT_MODES.get(str(value).lower()) if isinstance(value, (str, bool)) else None
            if mode is None:
                raise UsageError(f"{name(key)} {value!r}: expected secrets, pii or off")
            out[key] = mode
        else:  # pragma: no cover - callers pass known keys only
            raise UsageError(f"{name(key)}: unknown setting")
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML config file → FilterOptions fields (plus `ignored` notes)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - Python 3.10
        import tomli as tomllib

    p = Path(path).expanduser()
    if not p.is_file():
        raise UsageError(f"--config {path}: no such file")
    try:
        with open(p, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"--config {path}: invalid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"--config {path}: not UTF-8 text (byte {exc.start}); a TOML file is UTF-8") from None
    except OSError as exc:
        raise UsageError(f"--config {path}: cannot read ({exc.strerror or exc})") from None
    label = p.name
    if "filter" in data:
        extra = sorted(k for k in data if k != "filter")
        if extra:
            raise UsageError(f"{label}: unknown top-level key(s) {', '.join(extra)} next to [filter]",
                             hint="put every setting in the [filter] table")
        table = data["filter"]
        if not isinstance(table, dict):
            raise UsageError(f"{label}: [filter] must be a table")
        _check_keys(table, FILTER_KEYS, f"{label} [filter]")
        return build(table, source=f"{label} [filter]")
    return _load_published(data, label)


def _check_keys(table: dict, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(k for k in table if k not in allowed)
    if unknown:
        raise UsageError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}")


def _load_published(data: dict[str, Any], label: str) -> dict[str, Any]:
    """The published package's shape: `mode` + `[filters]` (+ `[window]`, `[output]`)."""
    if not data:
        raise UsageError(f"{label}: empty config", hint="add a [filter] table, e.g. min_reward = 1")
    _check_keys(data, PUBLISHED_TOP_KEYS + ("filter",), label)
    values: dict[str, Any] = {}
    ignored: list[str] = []
    if "mode" in data:
        values["mode"] = data["mode"]
    filters = data.get("filters", {})
    if not isinstance(filters, dict):
        raise UsageError(f"{label}: [filters] must be a table")
    _check_keys(filters, PUBLISHED_FILTERS_KEYS, f"{label} [filters]")
    if "min_total_reward" in filters:
        values["min_reward"] = filters["min_total_reward"]
    for key in ("min_achievements", "max_cost", "max_tokens"):
        if key in filters:
            values[key] = filters[key]
    if filters.get("models"):
        values["model"] = filters["models"]
    window = data.get("window", {})
    if not isinstance(window, dict):
        raise UsageError(f"{label}: [window] must be a table")
    _check_keys(window, PUBLISHED_WINDOW_KEYS, f"{label} [window]")
    if window and PUBLISHED_MODES.get(str(data.get("mode", "")).lower()) == "calls":
        ignored.extend(f"[window] {k}" for k in window)
    output = data.get("output", {})
    if not isinstance(output, dict):
        raise UsageError(f"{label}: [output] must be a table")
    _check_keys(output, PUBLISHED_OUTPUT_KEYS, f"{label} [output]")
    if "include_metadata" in output:
        values["include_metadata"] = output["include_metadata"]
    if "max_context_length" in output:
        ignored.append("[output] max_context_length")
    result = build(values, source=label)
    if ignored:
        result["ignored"] = ignored
    return result


def merge(config: dict[str, Any], flags: dict[str, Any]) -> FilterOptions:
    """FilterOptions from the config file's values overridden by the flags given."""
    options = FilterOptions()
    known = {f.name for f in fields(FilterOptions)}
    values = {k: v for k, v in {**config, **flags}.items() if k in known}
    return replace(options, **values)


__all__ = ["FilterOptions", "MODES", "build", "load_config", "merge", "parse_when", "parse_where"]
