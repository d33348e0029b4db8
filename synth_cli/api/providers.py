"""Which training provider a command talks to, and opening it: `--provider`, then
$SYNTH_PROVIDER, then a well-known base URL, then the OpenAI-compatible default.

The interface lives in :mod:`synth_cli.api.provider`; the implementations
(:mod:`synth_cli.api.openai_compat`, :mod:`synth_cli.api.together`) import only it, and this
module is the one place that knows them all (so nothing imports in a loop).
"""

from __future__ import annotations

import os
from typing import Any

from synth_cli.api.provider import PROVIDER_VAR, PROVIDERS, Provider
from synth_cli.errors import UsageError


def infer_provider(base_url: str | None) -> str | None:
    """The provider a well-known base URL belongs to (None: not known)."""
    if not base_url:
        return None
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(base_url.strip())
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if host.endswith("together.xyz") or host.endswith("together.ai"):
        return "together"
    if host == "api.openai.com":
        return "openai"
    if parts.path.rstrip("/").endswith("/together/v1") or parts.path.rstrip("/").endswith("/together"):
        return "together"
    return None


def choose_provider(flag: str | None, base_url_flag: str | None = None) -> tuple[str, str]:
    """(provider name, where the choice came from)."""
    from synth_cli import config

    if flag:
        name, source = flag.strip().lower(), "--provider"
    elif os.environ.get(PROVIDER_VAR, "").strip():
        name, source = os.environ[PROVIDER_VAR].strip().lower(), f"env {PROVIDER_VAR}"
    else:
        base = config.resolve(config.BASE_URL_VARS, base_url_flag, "--base-url")
        inferred = infer_provider(base.value if base else None)
        if inferred:
            return inferred, f"inferred from the base URL ({base.source})"
        return "openai", "default"
    if name not in PROVIDERS:
        raise UsageError(f"unknown provider {name!r} (from {source}); expected one of: {', '.join(PROVIDERS)}")
    return name, source


def provider_class(name: str) -> type[Provider]:
    if name == "together":
        from synth_cli.api.together import TogetherProvider

        return TogetherProvider
    from synth_cli.api.openai_compat import OpenAIProvider

    return OpenAIProvider


def open_provider(provider: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
                  max_retries: int | None = None) -> Provider:
    """The provider for this command: one `ApiClient` (one connection pool) for all its requests."""
    from synth_cli import config
    from synth_cli.api.client import ApiClient

    base_url = base_url or config.root_flag("--base-url")  # `synth-ai --base-url URL sft …`
    api_key = api_key or config.root_flag("--api-key")
    name, source = choose_provider(provider, base_url)
    cls = provider_class(name)
    base = config.resolve(config.BASE_URL_VARS, base_url, "--base-url", default=cls.default_base_url)
    assert base is not None
    base = config.Setting(config.normalize_base_url(base.value, f"base URL from {base.source}"), base.source)
    key_vars = (*config.API_KEY_VARS[:2], cls.key_var, *config.API_KEY_VARS[2:])
    key = config.resolve(key_vars, api_key, "--api-key")
    if key is not None:
        config.register_secret(key.value)
    elif base.value == config.DEFAULT_BASE_URL:  # the local `synth-ai serve`: its public dev key
        key = config.Setting(config.DEFAULT_DEV_KEY, config.DEV_KEY_SOURCE)
    kwargs: dict[str, Any] = {}
    if max_retries is not None:
        kwargs["max_retries"] = max_retries
    client = ApiClient(base_url=base, api_key=key, key_vars=key_vars, provider_label=cls.label, **kwargs)
    instance = cls(client)
    instance.choice_source = source  # type: ignore[attr-defined]
    return instance
