"""`synth-ai sft`: validate datasets and run fine-tuning jobs.

This module only assembles the group; subcommands live in `sft_*.py` modules,
each with `register(sft_app)`.
"""

from __future__ import annotations

import importlib

import typer

sft_app = typer.Typer(
    name="sft",
    help="Supervised fine-tuning: validate a dataset, run and follow jobs.",
    no_args_is_help=True,
)

SFT_MODULES = ("sft_validate", "sft_jobs")


def register(app: typer.Typer) -> None:
    for name in SFT_MODULES:
        try:
            module = importlib.import_module(f"synth_cli.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"synth_cli.commands.{name}":
                continue
            raise
        module.register(sft_app)
    app.add_typer(sft_app, name="sft")
