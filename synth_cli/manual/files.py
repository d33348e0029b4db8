"""The roff pages as files: render them all, write them (only when changed), check them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from synth_cli.manual.pages import MAN_SECTION, PROG, build_pages
from synth_cli.manual.roff import to_roff


# --------------------------------------------------------------------------- files


def render_all(cmd: Any) -> dict[str, str]:
    """{filename: roff text} for every page."""
    return {page.filename: to_roff(page) for page in build_pages(cmd)}


def write_pages(directory: str | os.PathLike, cmd: Any, *, prune: bool = True) -> list[Path]:
    """Write every page into `directory` (atomically, only when changed); remove stale `synth-ai*.1` pages."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    pages = render_all(cmd)
    written = []
    for filename, text in pages.items():
        path = target / filename
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        tmp = path.with_name(f".{filename}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        written.append(path)
    if prune:
        for stale in target.glob(f"{PROG}*.{MAN_SECTION}"):
            if stale.name not in pages:
                stale.unlink()
                written.append(stale)
    return written


def check_pages(directory: str | os.PathLike, cmd: Any) -> list[str]:
    """Problems between `directory` and the app: missing, stale or different pages (empty list = in sync)."""
    target = Path(directory)
    pages = render_all(cmd)
    problems = []
    for filename, text in pages.items():
        path = target / filename
        if not path.exists():
            problems.append(f"{filename} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{filename} differs from the app")
    for existing in sorted(target.glob(f"{PROG}*.{MAN_SECTION}")):
        if existing.name not in pages:
            problems.append(f"{existing.name} documents a command the app no longer has")
    return problems
