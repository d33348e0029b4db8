"""Regenerate or check the man pages in the repository from the app::

    python -m synth_cli.manpages man/            # write the pages that changed
    python -m synth_cli.manpages --check man/    # exit 1 when man/ drifts from the app

`synth-ai man --write DIR` does the same from the installed command. The manual itself lives in
:mod:`synth_cli.manual`; this module is the developer entry point, and the only one that imports
the app to build it.
"""

from __future__ import annotations

import sys
from typing import Any

from synth_cli.manual.files import check_pages, render_all, write_pages


def root_command() -> Any:
    """The click command behind the root Typer app."""
    import typer

    from synth_cli.app import app

    return typer.main.get_command(app)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    check = "--check" in args
    args = [a for a in args if a != "--check"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        sys.stderr.write("usage: python -m synth_cli.manpages [--check] DIR\n"
                         "  write (or with --check: verify) the roff man pages of synth-ai in DIR\n")
        return 2
    if check:
        problems = check_pages(args[0], root_command())
        for problem in problems:
            sys.stderr.write(f"{args[0]}: {problem}\n")
        return 1 if problems else 0
    root = root_command()
    changed = write_pages(args[0], root)
    total = len(render_all(root))
    sys.stderr.write(f"{total} pages in {args[0]} ({len(changed)} written or removed)\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
