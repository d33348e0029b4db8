"""Which training provider a command talks to, and opening it: `--provider`, then
$SYNTH_PROVIDER, then a well-known base URL, then the OpenAI-compatible default.

The interface lives in :mod:`synth_cli.api.provider`; the implementations
(:mod:`synth_cli.api.openai_compat`, :mod:`synth_cli.api.together`) import only it, and this
module is the one place that knows them all (so nothing imports in a loop).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
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


@dataclass
class Target:
    """Which provider a command talks to, at which base URL, with which key: each with its source."""

    name: str
    label: str
    source: str  # where the provider choice came from
    base: Any  # config.Setting, normalised
    key: Any  # config.Setting | None
    key_vars: tuple[str, ...]


#: name -> (label, the provider's own key variable, default base URL); the provider classes carry the
#: same (test_providers checks they agree), this table keeps `status` from importing httpx.
PROVIDER_INFO = {
    "openai": ("the OpenAI-compatible backend", "OPENAI_API_KEY", "http://127.0.0.1:8000/v1"),
    "together": ("Together AI", "TOGETHER_API_KEY", "https://api.together.xyz/v1"),
}


def provider_info(name: str) -> tuple[str, str, str]:
    return PROVIDER_INFO[name]


def resolve_target(provider: str | None = None, base_url: str | None = None, api_key: str | None = None) -> Target:
    """The provider, base URL and key rules every backend command shares (no network, no heavy import):
    the provider from the flag, SYNTH_PROVIDER or a well-known base URL; the base URL from the flag,
    SYNTH_BACKEND_BASE_URL, SYNTH_BASE_URL, else the provider's default; the key from the flag,
    SYNTH_BACKEND_API_KEY, SYNTH_API_KEY, the provider's own variable, DEFAULT_DEV_API_KEY (and the
    local serve's public dev key at the default URL)."""
    from synth_cli import config

    base_url = base_url or config.root_flag("--base-url")  # `synth-ai --base-url URL sft …`
    api_key = api_key or config.root_flag("--api-key")
    name, source = choose_provider(provider, base_url)
    label, key_var, default_base = provider_info(name)
    base = config.resolve(config.BASE_URL_VARS, base_url, "--base-url", default=default_base)
    assert base is not None
    base = config.Setting(config.normalize_base_url(base.value, f"base URL from {base.source}"), base.source)
    key_vars = (*config.API_KEY_VARS[:2], key_var, *config.API_KEY_VARS[2:])
    key = config.resolve(key_vars, api_key, "--api-key")
    if key is not None:
        config.register_secret(key.value)
        config.register_secret(key.value.strip())
    elif base.value == config.DEFAULT_BASE_URL:  # the local `synth-ai serve`: its public dev key
        key = config.Setting(config.DEFAULT_DEV_KEY, config.DEV_KEY_SOURCE)
    return Target(name, label, source, base, key, key_vars)


def open_provider(provider: str | None = None, base_url: str | None = None, api_key: str | None = None, *,
                  max_retries: int | None = None) -> Provider:
    """The provider for this command: one `ApiClient` (one connection pool) for all its requests."""
    from synth_cli.api.client import ApiClient

    target = resolve_target(provider, base_url, api_key)
    cls = provider_class(target.name)
    kwargs: dict[str, Any] = {}
    if max_retries is not None:
        kwargs["max_retries"] = max_retries
    client = ApiClient(base_url=target.base, api_key=target.key, key_vars=target.key_vars, provider_label=cls.label,
                       **kwargs)
    return cls(client)
