"""Settings: flag > environment > .env > default, with the source of every value.

Nothing here is heavy: `python-dotenv` is imported only when there is a `.env`
file to read. API keys are registered as secrets so that every printed text
(errors, `--debug` tracebacks) can be passed through :func:`redact`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from synth_cli.errors import UsageError

DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"
DEFAULT_TRACES_ROOT = "synth_ai.db/dbs"
#: The key the local backend (`synth-ai serve`) accepts when SYNTH_DEV_API_KEYS is unset. Not a secret.
DEFAULT_DEV_KEY = "sk-synth-local-dev-key"

#: the integers SQLite (and every API the CLI talks to) can hold: larger ones are a usage error.
INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

API_KEY_VARS = ("SYNTH_BACKEND_API_KEY", "SYNTH_API_KEY", "DEFAULT_DEV_API_KEY")
BASE_URL_VARS = ("SYNTH_BACKEND_BASE_URL", "SYNTH_BASE_URL")

#: Every environment variable the CLI reads, with what reads it (used by `man` and .env.example).
ENV_VARS: dict[str, str] = {
    "SYNTH_BACKEND_API_KEY": "API key for the fine-tuning/account backend (first in the key chain)",
    "SYNTH_API_KEY": "API key, second in the chain",
    "DEFAULT_DEV_API_KEY": "API key, last in the chain (e.g. the local backend's dev key)",
    "SYNTH_BACKEND_BASE_URL": "backend base URL (first in the chain); `/v1` is appended when missing",
    "SYNTH_BASE_URL": "backend base URL, second in the chain",
    "SYNTH_TRACES_ROOT": "directory scanned by `traces` for trace DBs (default ./synth_ai.db/dbs)",
    "SYNTH_TRACES_DB": "default trace DB (path or URL) for commands that take --db",
    "SYNTH_TRACES_BUSY_TIMEOUT": "seconds a SessionTracer write waits for another writer's lock before "
                                 "it is retried, then spooled (default 30)",
    "SYNTH_TRACES_SPOOL_DIR": "where sessions that could not be written to a libSQL server are kept until "
                              "the next writer on that server (default: the user data dir's spool/)",
    "LIBSQL_AUTH_TOKEN": "auth token for remote libSQL servers",
    "TURSO_AUTH_TOKEN": "auth token for Turso (used when LIBSQL_AUTH_TOKEN is unset)",
    "SYNTH_DEBUG": "set to 1 to print tracebacks (same as --debug)",
    "SYNTH_PRICING_FILE": "price table used by `calc` instead of the bundled one",
    "SYNTH_MAX_EXAMPLE_TOKENS": "tokens allowed per example by `sft validate/submit/run` (default: the model's limit)",
    "SYNTH_DEV_API_KEYS": "comma-separated API keys accepted by `synth-ai serve`",
    "SYNTH_DATA_DIR": "state directory of `synth-ai serve` (default: the user data dir)",
    "SYNTH_PROVIDER": "training service for `sft`: openai (the OpenAI-compatible contract, default) or together",
    "OPENAI_API_KEY": "API key for `sft --provider openai`, after SYNTH_BACKEND_API_KEY and SYNTH_API_KEY",
    "TOGETHER_API_KEY": "API key for `sft --provider together`, after SYNTH_BACKEND_API_KEY and SYNTH_API_KEY",
    "SYNTH_CONNECT_RETRY_SECONDS": "how long `sft` and `balance` retry refused connections (default 15; 0: never)",
    "SYNTH_CONFIRM_ABOVE_USD": "`sft submit`/`run` ask on a terminal before a job estimated above this (default 5)",
    "SYNTH_TOGETHER_MULTIPART_BYTES": "files above this many bytes go to Together in parts (default 5 GiB)",
    "SYNTH_PROXY_UPSTREAM": "upstream base URL of `synth-ai proxy` (its --upstream)",
    "SYNTH_PROXY_SPOOL": "spool file of `synth-ai proxy` for sessions the trace DB refuses",
}


@dataclass(frozen=True)
class Setting:
    """A resolved value and where it came from (`--api-key`, `env SYNTH_API_KEY`, `.env SYNTH_API_KEY`, `default`)."""

    value: str
    source: str


# --------------------------------------------------------------------------- .env

_dotenv_keys: set[str] = set()
_dotenv_path: Path | None = None


def load_env(env_file: str | os.PathLike | None = None, *, cwd: Path | None = None) -> Path | None:
    """Load `env_file` (must exist) or `./.env` (if present), never overriding the shell."""
    global _dotenv_path
    path: Path | None
    env_warnings.clear()
    if env_file is not None:
        path = Path(env_file).expanduser()
        if not path.is_file():
            what = "not a regular file" if path.exists() else "no such file"
            raise UsageError(f"--env-file {env_file}: {what}")
    else:
        path = (cwd or Path.cwd()) / ".env"
        if not path.is_file():
            return None
    from dotenv import dotenv_values  # light, but only needed when a file exists

    try:
        values = _quiet_dotenv_values(dotenv_values, path)
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not UTF-8 text (byte {exc.start}); a .env file holds KEY=VALUE lines",
                         hint="pass --env-file PATH to read another file" if env_file is None else None) from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read ({exc.strerror or exc})") from None
    for key, value in values.items():
        if value is None or key in os.environ:
            continue
        os.environ[key] = value
        _dotenv_keys.add(key)
    _dotenv_path = path
    return path


#: lines of the last .env file read that python-dotenv could not parse (shown as `warning:` lines)
env_warnings: list[str] = []


def _quiet_dotenv_values(dotenv_values, path: Path) -> dict:
    """dotenv_values, with python-dotenv's own log lines ("could not parse statement…") collected
    into :data:`env_warnings` instead of reaching stderr raw."""
    import logging

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            env_warnings.append(f"{path}: {record.getMessage()}; that line is ignored")

    logger = logging.getLogger("dotenv.main")
    handler, propagate = Collect(), logger.propagate
    env_warnings.clear()
    logger.addHandler(handler)
    logger.propagate = False
    try:
        return dotenv_values(path)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def reset_env_tracking() -> None:
    """Forget which variables came from a .env file (tests, repeated in-process runs)."""
    global _dotenv_path
    for key in _dotenv_keys:
        os.environ.pop(key, None)
    _dotenv_keys.clear()
    _dotenv_path = None


def _env_source(name: str) -> str:
    return f".env {name}" if name in _dotenv_keys else f"env {name}"


def resolve(names: tuple[str, ...] | list[str], flag_value: str | None = None, flag_name: str | None = None,
            default: str | None = None) -> Setting | None:
    """First of: the flag, each variable in `names` (shell or .env), the default."""
    if flag_value not in (None, ""):
        return Setting(str(flag_value), flag_name or "flag")
    for name in names:
        value = os.environ.get(name)
        if value not in (None, ""):
            return Setting(value, _env_source(name))
    if default is not None:
        return Setting(default, "default")
    return None


# --------------------------------------------------------------------------- secrets

_secrets: set[str] = set()
_KEY_PATTERN = re.compile(r"\b(sk|sk_live|sk_test|sk-proj|sk_dev|synth|ft)[-_][A-Za-z0-9_\-]{12,}")
_BEARER = re.compile(r"(Bearer\s+)([A-Za-z0-9._\-]{6,})")


def mask_key(key: str | None) -> str:
    """`sk_live_abcdef…ac95`-style masking: first 6 + '…' + last 4; short keys hide more."""
    if not key:
        return "(none)"
    if len(key) >= 14:
        return f"{key[:6]}…{key[-4:]}"
    if len(key) >= 8:
        return f"…{key[-2:]}"
    return "…"


def register_secret(value: str | None) -> None:
    if value and len(value) >= 6:
        _secrets.add(value)


def redact(text: str) -> str:
    """Mask every registered secret and anything shaped like an API key or bearer token."""
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, mask_key(secret))
    text = _BEARER.sub(lambda m: m.group(1) + mask_key(m.group(2)), text)
    return _KEY_PATTERN.sub(lambda m: mask_key(m.group(0)) if "…" not in m.group(0) else m.group(0), text)


# --------------------------------------------------------------------------- chains


#: `synth-ai --base-url URL --api-key KEY CMD`: the root's values, used when the command's own flag is absent.
_root_flags: dict[str, str] = {}


def set_root_flags(*, base_url: str | None = None, api_key: str | None = None) -> None:
    _root_flags.clear()
    if base_url:
        _root_flags["--base-url"] = base_url
    if api_key:
        _root_flags["--api-key"] = api_key


def root_flag(name: str) -> str | None:
    """The value given to the root for `--base-url` / `--api-key`, if any."""
    return _root_flags.get(name)


#: where the key came from when it is the local simulator's public dev key, used by default
DEV_KEY_SOURCE = "default: the local `synth-ai serve` dev key"


def api_key(flag_value: str | None = None, flag_name: str = "--api-key", *,
            base: Setting | None = None) -> Setting | None:
    """SYNTH_BACKEND_API_KEY → SYNTH_API_KEY → DEFAULT_DEV_API_KEY (after the flag).

    With none set and the backend the default local `synth-ai serve` (`base`, else the base URL
    chain), the simulator's public dev key: the local pipeline needs no configuration.
    """
    if flag_value in (None, "") and "--api-key" in _root_flags:
        flag_value, flag_name = _root_flags["--api-key"], "--api-key"
    setting = resolve(API_KEY_VARS, flag_value, flag_name)
    if setting is None:
        try:
            base = base or base_url()
        except UsageError:
            return None
        if base.value == DEFAULT_BASE_URL:
            return Setting(DEFAULT_DEV_KEY, DEV_KEY_SOURCE)
        return None
    register_secret(setting.value)
    register_secret(setting.value.strip())
    check_api_key(setting)
    return setting


def check_api_key(setting: Setting) -> None:
    """An API key travels in an HTTP header: printable ASCII, no spaces. Anything else (a trailing
    newline from `echo key > .env`, a pasted non-ASCII quote) is one clear error at once, instead
    of requests that fail with a confusing network error after every retry. The key is never shown."""
    value = setting.value
    if value != value.strip():
        raise UsageError(f"the API key from {setting.source} has leading or trailing whitespace (a newline?)",
                         hint="remove it; API keys are one line of printable ASCII")
    bad = next((c for c in value if not 33 <= ord(c) <= 126), None)
    if bad is not None:
        what = "a space or control character" if ord(bad) < 128 else f"a non-ASCII character ({bad!r})"
        raise UsageError(f"the API key from {setting.source} contains {what}",
                         hint="copy the key again; API keys are printable ASCII with no spaces")


def check_url(url: str, what: str) -> str:
    """`url` if an HTTP or libSQL client can use it; else a one-line UsageError naming `what`.

    The one check for every URL the CLI is given (`--base-url`, `--db http://…`, the
    SYNTH_*_BASE_URL variables): a bad IPv6 literal, a port outside 0-65535, a missing
    host or a control character is refused before any connection is tried.
    """
    from urllib.parse import urlsplit

    shown = repr(re.sub(r"^([a-z][a-z0-9+.-]*://)[^/@?#]*@", r"\1", url.split("?")[0].split("#")[0], flags=re.I))
    if re.search(r"[\x00-\x20\x7f]", url):
        raise UsageError(f"{what} {shown}: a URL cannot contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError as exc:
        reason = str(exc).replace("Port out of range 0-65535", "port out of range 0-65535")
        raise UsageError(f"{what} {shown}: not a valid URL ({reason})") from None
    if not host:
        raise UsageError(f"{what} {shown}: no host in the URL", hint="e.g. http://127.0.0.1:8000")
    if port == 0:
        raise UsageError(f"{what} {shown}: port 0 is not a port to connect to")
    return url


def normalize_base_url(url: str, what: str = "base URL") -> str:
    """Strip trailing slashes and make the path end in `/v1`."""
    url = url.strip()
    if not re.match(r"^https?://", url):
        raise UsageError(f"base URL {url!r} must start with http:// or https://")
    check_url(url, what)
    url = url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    return url


def base_url(flag_value: str | None = None, flag_name: str = "--base-url") -> Setting:
    """SYNTH_BACKEND_BASE_URL → SYNTH_BASE_URL → http://127.0.0.1:8000/v1, normalised."""
    if flag_value in (None, "") and "--base-url" in _root_flags:
        flag_value, flag_name = _root_flags["--base-url"], "--base-url"
    setting = resolve(BASE_URL_VARS, flag_value, flag_name, default=DEFAULT_BASE_URL)
    assert setting is not None
    return Setting(normalize_base_url(setting.value, f"base URL from {setting.source}"), setting.source)


def env_number(name: str, default: float, *, high: float | None, unit: str,
               error: type[Exception] = UsageError) -> float:
    """A number of `unit` from the environment variable `name` (0 to `high`, None: no bound), else `default`.

    A value that is not a number, not finite or out of range is `error` (one line naming the variable).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    return check_number(name, raw, high=high, unit=unit, error=error)


def check_number(name: str, raw: object, *, high: float | None, unit: str,
                 error: type[Exception] = UsageError) -> float:
    """`raw` (text or a number) as a float from 0 to `high` `unit`; `error` naming `name` otherwise."""
    import math

    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise error(f"{name}={raw!r}: not a number of {unit}") from None
    if not math.isfinite(value) or value < 0 or (high is not None and value > high):
        if high is None:
            bounds = f"at least 0 {unit}"
        else:
            bounds = f"0 to {high:,.0f} {unit}" if float(high).is_integer() else f"0 to {high:g} {unit}"
        raise error(f"{name}={raw!r}: out of range ({bounds})")
    return value


def debug_enabled() -> bool:
    return os.environ.get("SYNTH_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def libsql_auth_token() -> str | None:
    token = os.environ.get("LIBSQL_AUTH_TOKEN") or os.environ.get("TURSO_AUTH_TOKEN")
    register_secret(token)
    return token or None


def traces_root(flag_value: str | None = None) -> Setting:
    setting = resolve(("SYNTH_TRACES_ROOT",), flag_value, "--root", default=DEFAULT_TRACES_ROOT)
    assert setting is not None
    return setting


def default_dbs() -> list[str]:
    value = os.environ.get("SYNTH_TRACES_DB")
    return [value] if value else []
