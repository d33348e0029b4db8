"""Options several commands share, declared once (like `huggingface_hub`'s `TokenOpt`).

Each factory returns a fresh `typer.Option` so a command can say in one phrase what the
option is for there (`when`); the name, metavar and the resolution chain are the same
everywhere, and so is what config.py does with the value.
"""

from __future__ import annotations

from typing import Any

import typer

BASE_URL_HELP = ("Backend base URL (else SYNTH_BACKEND_BASE_URL, SYNTH_BASE_URL, the provider's default: "
                 "http://127.0.0.1:8000/v1 for openai, https://api.together.xyz/v1 for together)")
API_KEY_HELP = ("API key (else SYNTH_BACKEND_API_KEY, SYNTH_API_KEY, then the provider's own "
                "OPENAI_API_KEY / TOGETHER_API_KEY, then DEFAULT_DEV_API_KEY)")
PROVIDER_HELP = ("Training service: openai (the OpenAI-compatible contract: OpenAI, Synth backends, "
                 "`synth-ai serve`) or together (else SYNTH_PROVIDER, else inferred from a well-known "
                 "base URL, else openai)")


def _help(text: str, when: str) -> str:
    return f"{text}{'; ' + when if when else ''}."


def base_url_option(when: str = "") -> Any:
    return typer.Option(None, "--base-url", metavar="URL", show_default=False, help=_help(BASE_URL_HELP, when))


def api_key_option(when: str = "") -> Any:
    return typer.Option(None, "--api-key", metavar="KEY", show_default=False, help=_help(API_KEY_HELP, when))


def provider_option(when: str = "") -> Any:
    return typer.Option(None, "--provider", metavar="NAME", show_default=False, help=_help(PROVIDER_HELP, when))
