"""`synth-ai man`: the manual in the terminal, built from the app itself."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.output import get_output


def man(
    command: Optional[List[str]] = typer.Argument(
        None, metavar="[COMMAND]...", help="A command or group, e.g. `sft` or `sft run`; default: the whole tool."),
    no_pager: bool = typer.Option(False, "--no-pager", help="Print straight to stdout even on a terminal."),
    install: bool = typer.Option(
        False, "--install",
        help="Write the roff pages into ~/.local/share/man/man1 (or $XDG_DATA_HOME/man/man1), where man(1) "
             "finds them when ~/.local/bin is on PATH, as after `uv tool install` or `pip install --user`."),
    write: Optional[str] = typer.Option(
        None, "--write", metavar="DIR", hidden=True,
        help="Write the roff pages (synth-ai.1, synth-ai-CMD.1, …) into DIR and exit."),
) -> None:
    """The manual: every command with a one-line summary, every environment variable, examples.

    `synth-ai man COMMAND` shows one command or group in full: synopsis, arguments,
    options, the variables it reads, examples. The same pages ship as roff files
    (`man synth-ai`, `man synth-ai-sft`), generated from the app.
    """
    import shutil

    from synth_cli.errors import UsageError
    from synth_cli.manual.files import render_all, write_pages
    from synth_cli.manual.pages import PROG, build_pages
    from synth_cli.manual.text import to_text

    out = get_output()
    if install:
        if command or write is not None:
            raise UsageError("--install takes no COMMAND and no --write")
        write = str(_user_man_dir())
    from synth_cli.manpages import root_command

    root = root_command()  # every command: `synth-ai man` runs with only its own module loaded
    if write is not None:
        if command:
            raise UsageError("--write takes no COMMAND")
        changed = write_pages(write, root)
        total = len(render_all(root))
        out.result({"directory": write, "pages": total, "changed": [str(p) for p in changed]},
                   lambda: out.line(f"{total} man pages in {write} ({len(changed)} written or removed)"),
                   essential=[str(p) for p in changed])
        if install:
            out.tip(f"`man synth-ai` finds them when {Path.home() / '.local' / 'bin'} is on PATH (man-db searches "
                    f"../share/man of every PATH entry); else add {Path(write).parent} to MANPATH")
        return

    words = [w for part in (command or []) for w in part.split()]
    if words and words[0] == PROG:
        words = words[1:]
    wanted = tuple(words)
    pages = {page.path: page for page in build_pages(root)}
    page = pages.get(wanted)
    if page is None:
        import difflib

        names = [" ".join(path) for path in pages if path]
        close = difflib.get_close_matches(" ".join(wanted), names, n=3, cutoff=0.5)
        hint = (f"did you mean: {', '.join(close)}? " if close else "") + "`synth-ai man` lists every command"
        raise UsageError(f"no command {' '.join(wanted)!r} in synth-ai", hint=hint)

    if out.json_mode:
        out.json({
            "page": page.name,
            "command": page.command,
            "summary": page.summary,
            "sections": [{"title": sec.title,
                          "blocks": [{k: v for k, v in (("kind", b.kind), ("term", b.term), ("text", b.text)) if v}
                                     for b in sec.blocks]} for sec in page.sections],
        })
        return
    width = min(shutil.get_terminal_size((80, 24)).columns, 100)
    text = to_text(page, width=width)
    if out.is_terminal and not no_pager:
        import pydoc

        pydoc.pager(text)
    else:
        out.result(None, lambda: out.line(text.rstrip("\n")))  # --quiet too: the page is the result


def _user_man_dir() -> Path:
    """`$XDG_DATA_HOME/man/man1`, else `~/.local/share/man/man1` (uv and pip --user put scripts in ~/.local/bin)."""
    import os

    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "man" / "man1"


def register(app: typer.Typer) -> None:
    app.command("man", short_help=SUMMARIES["man"])(man)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'man': [
        ('synth-ai man',
         'This manual.'),
        ('synth-ai man sft run',
         'The manual of one command.'),
        ('man -l man/synth-ai.1',
         'The same pages with man(1), from a checkout.'),
    ],
}
