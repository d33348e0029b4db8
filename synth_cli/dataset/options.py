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

import sys
from dataclasses import field, fields, make_dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from synth_cli.dataset.settings import (BY_KEY, CONFIG_KEYS, PUBLISHED_MODES, REDACT_MODES, SETTINGS, parse_when,
                                        parse_where)
from synth_cli.errors import UsageError

MODES = ("calls", "sessions")
#: the session filters, in table order (the stats' and the manifest's `filters`)
SESSION_FILTERS = tuple(s.field for s in SETTINGS if s.summary)


def _session_filters(self: Any) -> dict[str, Any]:
    """The session-level filters in effect (for the summary)."""
    out: dict[str, Any] = {}
    for name in SESSION_FILTERS:
        value = getattr(self, name)
        if value not in (None, [], ()):
            out[name] = value.isoformat(sep=" ") if isinstance(value, datetime) else value
    return out


def _fields() -> list[tuple[str, str, Any]]:
    seen: set[str] = set()
    out: list[tuple[str, str, Any]] = []
    for s in SETTINGS:
        if s.field is None or s.field in seen:  # `--no-redact` fills `redact`, declared by its own row
            continue
        seen.add(s.field)
        out.append((s.field, s.annotation, field(default_factory=list) if s.many else field(default=s.default)))
    #: what the config file asked for that has no equivalent here (reported as warnings)
    out.append(("ignored", "list[str]", field(default_factory=list)))
    return out


#: Every setting of one `filter` run: one field per row of :data:`~synth_cli.dataset.settings.SETTINGS`
#: (its `field`, `annotation` and `default`), plus `ignored`.
FilterOptions: Any = make_dataclass("FilterOptions", _fields(), namespace={"session_filters": _session_filters})
FilterOptions.__module__ = __name__  # pickled by name into filter's worker processes


# --------------------------------------------------------------------------- building options

#: keys of the `[filter]` table (the rows of SETTINGS a config file may set)
FILTER_KEYS = CONFIG_KEYS
PUBLISHED_FILTERS_KEYS = ("min_total_reward", "min_achievements", "max_cost", "max_tokens", "models")
PUBLISHED_TOP_KEYS = ("mode", "filters", "window", "output")
PUBLISHED_OUTPUT_KEYS = ("include_metadata", "max_context_length")
PUBLISHED_WINDOW_KEYS = ("window_size", "stride", "min_window_reward")


def build(values: dict[str, Any], *, source: str = "flag") -> dict[str, Any]:
    """Validate raw values (keys of SETTINGS, flag or config spelling) into FilterOptions fields.

    Values None (and, from flags, empty lists) mean "not given"; each row's `parse` checks the
    value, naming the flag (`--max-cost`) or the config key (`f.toml [filter]: max_cost`).
    Returns only the fields given.
    """
    out: dict[str, Any] = {}
    for key, value in values.items():
        setting = BY_KEY.get(key)
        if setting is None or setting.field is None:  # pragma: no cover - callers pass known keys only
            raise UsageError(f"{key}: unknown setting")
        if value is None or (source == "flag" and setting.many and not value):
            continue
        parsed = setting.parse(value, setting.flag if source == "flag" else f"{source}: {key}")
        if parsed is not None:
            out[setting.field] = parsed
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


__all__ = ["FilterOptions", "MODES", "PUBLISHED_MODES", "REDACT_MODES", "build", "load_config", "merge",
           "parse_when", "parse_where"]
