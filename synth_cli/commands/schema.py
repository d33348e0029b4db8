"""`synth-ai schema [COMMAND]`: the JSON Schema of a command's `--json` output."""

from __future__ import annotations

from typing import List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.output import Col, get_output


def schema_command(
    command: Optional[List[str]] = typer.Argument(
        None, metavar="[COMMAND]...", help="A command, e.g. `traces` or `sft list`; none: list them."),
) -> None:
    """Print the JSON Schema (draft 2020-12) of a command's --json output.

    Every document follows the rules of docs/json.md: an object; listings under a
    named key; times RFC 3339 UTC with `Z`; money as `..._usd` numbers; counts as
    integers; a backend's own objects under `raw`. `synth-ai schema error` is the
    object every command prints on stdout under --json when it fails. Without
    COMMAND: the commands that have a schema.
    """
    from synth_cli import schemas

    out = get_output()
    words = [w for part in (command or []) for w in part.split()]
    if not words:
        rows = schemas.listing()
        out.result({"schemas": rows},
                   lambda: out.table(["command", Col("schema", wrap=True)], [(r["command"], r["title"]) for r in rows]),
                   essential=[r["command"] for r in rows])
        return
    out.json(schemas.load(" ".join(words)))  # the schema is the result, in every mode


def register(app: typer.Typer) -> None:
    app.command("schema", short_help=SUMMARIES["schema"])(schema_command)
