"""`synth-ai sft`: validate datasets and run fine-tuning jobs.

This module only assembles the group; subcommands live in `sft_*.py` modules,
each with `register(sft_app)`.
"""

from __future__ import annotations

import typer

from synth_cli.commands._index import SUMMARIES

sft_app = typer.Typer(
    name="sft",
    help="Supervised fine-tuning: validate a dataset, run and follow jobs.",
    no_args_is_help=True,
)

def register(app: typer.Typer) -> None:
    from synth_cli.commands import sft_jobs, sft_validate

    for module in (sft_validate, sft_jobs):
        module.register(sft_app)
    app.add_typer(sft_app, name="sft", short_help=SUMMARIES["sft"])
