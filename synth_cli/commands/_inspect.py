"""What the inspection commands share: which DBs to read, opening them, small renderers.

Not a command module (nothing registers it). Light at import time: only typer and
the stdlib; the trace store and the queries are imported inside the functions.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, List, Optional, Sequence

import typer

from synth_cli.errors import SynthError

DB_HELP = ("Trace DB: SQLite file, sqld dir, sqlite:/// or libSQL URL (http://, https://, libsql://…). "
           "Repeatable. Default: $SYNTH_TRACES_DB, else the DBs `synth-ai traces` finds.")
NO_DB_HINT = ("pass --db PATH_OR_URL or set SYNTH_TRACES_DB; `synth-ai demo` writes an example DB, "
              "and SessionTracer records your own agent's runs")


def help_text(*paragraphs: str) -> str:
    """A command's help: one string per paragraph (typer's rich help keeps line breaks as written)."""
    return "\n\n".join(paragraphs)


def db_option() -> Any:
    return typer.Option(None, "--db", metavar="PATH_OR_URL", help=DB_HELP, show_default=False)


@dataclass
class Target:
    """A DB to read: what to open, how to name it, and whether the user named it (errors are fatal then)."""

    target: str
    label: str
    explicit: bool


def _root_targets(root_flag: Optional[str]) -> tuple[str, list[Target]]:
    """The DBs under the traces root (`--root`, SYNTH_TRACES_ROOT, ./synth_ai.db/dbs)."""
    from synth_cli import config
    from synth_cli.store.locate import find_dbs

    setting = config.traces_root(root_flag)
    root = Path(setting.value).expanduser()
    if setting.source == "default" and not root.is_dir():
        return setting.value, []  # nothing recorded here yet: not an error
    found = find_dbs(root)  # a named root that does not exist raises
    targets = []
    for path in found:
        label = str(path.parent) if path.name == "data" else str(path)
        targets.append(Target(str(path), label, explicit=False))
    return setting.value, targets


def _dedupe(targets: Sequence[Target]) -> list[Target]:
    from synth_cli.store.locate import target_key

    seen: dict[str, Target] = {}
    for t in targets:
        key = target_key(t.target)
        if key in seen:
            seen[key].explicit = seen[key].explicit or t.explicit
            continue
        seen[key] = t
    return list(seen.values())


def inventory_targets(db: Optional[List[str]], root: Optional[str]) -> tuple[str, list[Target]]:
    """`traces`/`status`: the root's DBs, plus every --db, plus SYNTH_TRACES_DB."""
    from synth_cli import config

    root_value, found = _root_targets(root)
    named = [Target(d, _label(d), explicit=True) for d in (db or [])]
    named += [Target(d, _label(d), explicit=True) for d in config.default_dbs()]
    return root_value, _dedupe(found + named)


def read_targets(db: Optional[List[str]]) -> list[Target]:
    """Commands that read DBs: --db, else SYNTH_TRACES_DB, else what `traces` would find; else an error."""
    from synth_cli import config

    if db:
        return _dedupe([Target(d, _label(d), explicit=True) for d in db])
    env = config.default_dbs()
    if env:
        return _dedupe([Target(d, _label(d), explicit=True) for d in env])
    root_value, found = _root_targets(None)
    if not found:
        raise SynthError(f"no trace DB given and none found in {root_value}", hint=NO_DB_HINT)
    return found


def _label(target: str) -> str:
    from synth_cli.store.locate import is_remote

    if is_remote(target):
        from synth_cli.store.locate import strip_credentials

        return strip_credentials(target)
    return os.fspath(target)


@contextmanager
def opened(targets: Sequence[Target], *, on_skip: Any = None) -> Iterator[list[tuple[Target, Any]]]:
    """Open every target read-only; a DB the user named that fails is an error, a found one is skipped.

    `on_skip(target, error)` hears about skipped DBs. Every store is closed on exit.
    """
    from synth_cli.errors import TraceStoreError
    from synth_cli.output import get_output
    from synth_cli.store.reader import TraceStore

    stores: list[tuple[Target, Any]] = []
    try:
        for t in targets:
            try:
                store = TraceStore.open(t.target)
                store.label = t.label  # errors and rows name the DB the way the user did
                stores.append((t, store))
                for warning in store.warnings:  # e.g. a WAL in a read-only directory that could not be read
                    get_output().warn(warning)
            except TraceStoreError as exc:
                if t.explicit or on_skip is None:
                    raise
                on_skip(t, exc)
        yield stores
    finally:
        for _, store in stores:
            store.close()



def read_each(stores: Sequence[tuple[Target, Any]], read: Any, *, on_skip: Any = None) -> list[Any]:
    """`read(target, store)` for every opened DB, in order.

    A DB found under the root whose reading fails (a corrupt page past the header, a
    truncated file) is skipped with `on_skip(target, error)` like one that fails to open,
    so one bad file does not abort an inventory; a DB the user named is still an error.
    """
    from synth_cli.errors import TraceStoreError

    results = []
    for t, store in stores:
        try:
            results.append(read(t, store))
        except TraceStoreError as exc:
            if t.explicit or on_skip is None:
                raise
            on_skip(t, exc)
    return results


def fmt_reward(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    return f"{value:g}" if value == int(value) else f"{value:.3f}"


def fmt_ms(value: Any) -> str:
    if value is None:
        return "–"
    value = float(value)
    if value >= 10_000:
        return f"{value / 1000:,.1f} s"
    return f"{value:,.0f} ms"


def parse_since(value: Optional[str], flag: str = "--since") -> Any:
    """ISO date/time (naive = UTC) or a relative span (24h, 7d, 30m, 2w) → naive UTC datetime."""
    if value is None:
        return None
    from synth_cli.dataset.options import parse_when

    return parse_when(value, flag)
