"""One httpx-based client for OpenAI-compatible APIs.

* base URL from `config.base_url` (flag > env > default), always ending in `/v1`;
* `Authorization: Bearer <key>`, the key resolved by `config.api_key` and remembered with its
  source so that a 401 can say *which* key was refused (masked) and where it came from;
* retries with capped exponential backoff and full jitter on connection errors, 408, 409, 429
  and 5xx, honouring `Retry-After` (seconds or an HTTP date) and `retry-after-ms`;
  a POST is retried only when it carries an `Idempotency-Key` (the server then answers a replay
  with the first result, so a retry never creates a second job or file) — except when the
  connection could not even be opened, because then nothing reached the server;
* every failure becomes one :class:`ApiError` (a `SynthError`) with the HTTP status, the server's
  own message and a hint; texts are passed through `config.redact`, so the key never leaks.

This module never prints.
"""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote, urlsplit

import httpx

from synth_cli import __version__, config
from synth_cli.config import Setting
from synth_cli.errors import SynthError

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_HEADER = "Idempotency-Key"

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 5
#: "connection refused" is usually "nothing is listening": retry briefly, then say so (the job
#: follower rides out longer outages, e.g. a server restart, on its own).
DEFAULT_CONNECT_RETRIES = 2
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
#: a `Retry-After` longer than this is not waited for: the error is raised with the wait in its hint.
DEFAULT_MAX_RETRY_AFTER = 60.0


class ApiError(SynthError):
    """Any failure talking to the backend.

    `status` is the HTTP status (None when no response arrived); `kind` is one of
    `http`, `connect`, `timeout`, `network`, `decode`, `auth` (no key configured).
    `server_message` is the server's own `error.message` / `detail`, redacted.
    """

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None, kind: str = "http",
                 code: str | None = None, server_message: str | None = None, method: str | None = None,
                 url: str | None = None, attempts: int = 1, retry_after: float | None = None):
        super().__init__(config.redact(message), hint=config.redact(hint) if hint else None)
        self.status = status
        self.kind = kind
        self.code = code
        self.server_message = config.redact(server_message) if server_message else server_message
        self.method = method
        self.url = url
        self.attempts = attempts
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth trying again later (the backend may come back): no answer, 408/409/429/5xx."""
        if self.kind in ("connect", "timeout", "network"):
            return True
        return self.status is not None and (self.status in RETRY_STATUSES or self.status >= 500)


# --------------------------------------------------------------------------- helpers


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, or `Retry-After` as seconds or as an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def backoff_delay(attempt: int, *, base: float = DEFAULT_BACKOFF_BASE, cap: float = DEFAULT_BACKOFF_CAP,
                  rng: Callable[[], float] = random.random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0)."""
    return rng() * min(cap, base * (2 ** attempt))


def new_idempotency_key() -> str:
    return f"synth-cli-{uuid.uuid4().hex}"


def path_segment(value: str) -> str:
    """Quote an id for use inside a URL path (ids never contain `/`; a stray one cannot escape)."""
    # a non-UTF-8 argument (lone surrogates) is quoted from its bytes, as the shell passed them
    return quote(str(value).encode("utf-8", "surrogateescape"), safe="")


def _server_message(response: httpx.Response) -> tuple[str | None, str | None]:
    """(`error.message` or `detail` or the text, `error.code`) from an error response."""
    text = ""
    try:
        text = response.text
    except (httpx.HTTPError, UnicodeDecodeError):  # pragma: no cover - undecodable body
        text = ""
    try:
        body = response.json()
    except ValueError:
        body = None
    code = None
    message = None
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail")
            code = err.get("code") or err.get("type")
        elif isinstance(err, str):
            message = err
        if message is None:
            detail = body.get("detail", body.get("message"))
            if isinstance(detail, str):
                message = detail
            elif isinstance(detail, list):  # FastAPI-style validation errors
                parts = []
                for item in detail:
                    if isinstance(item, dict):
                        loc = ".".join(str(p) for p in item.get("loc", []) if p != "body")
                        parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
                    else:
                        parts.append(str(item))
                message = "; ".join(parts)
            elif detail is not None:
                message = str(detail)
    if message is None and text.strip():
        message = text.strip()
        if len(message) > 300:
            message = message[:300] + "…"
    if code is not None:
        code = str(code)
    return message, code


def _reason(status: int) -> str:
    try:
        from http import HTTPStatus

        return HTTPStatus(status).phrase
    except ValueError:
        return "error"


# --------------------------------------------------------------------------- the client


class ApiClient:
    """A thin, retrying JSON client bound to one base URL and one API key.

    `base_url` / `api_key` accept a string (source "argument"), a `config.Setting`, or None to
    resolve them from flags/env/.env as `config.base_url()` / `config.api_key()` do. `transport`
    is for tests that need a fault no real server produces; `sleep` and `rng` make backoff
    observable.
    """

    def __init__(self, base_url: str | Setting | None = None, api_key: str | Setting | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES, connect_retries: int = DEFAULT_CONNECT_RETRIES,
                 backoff_base: float = DEFAULT_BACKOFF_BASE,
                 backoff_cap: float = DEFAULT_BACKOFF_CAP, max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
                 require_key: bool = True, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random):
        if base_url is None:
            base = config.base_url()
        elif isinstance(base_url, Setting):
            base = Setting(config.normalize_base_url(base_url.value), base_url.source)
        else:
            base = Setting(config.normalize_base_url(str(base_url)), "argument")
        if api_key is None:
            key = config.api_key(base=base)
        elif isinstance(api_key, Setting):
            key = api_key
        else:
            key = Setting(str(api_key), "argument") if api_key else None
        if key is not None:
            config.register_secret(key.value)
            config.check_api_key(key)  # a newline or non-ASCII character: one clear error, before any request
        if key is None and require_key:
            *first, last = config.API_KEY_VARS
            raise ApiError(
                f"no API key configured (tried --api-key, then {', '.join(first)} and {last} "
                "in the environment and .env)",
                kind="auth",
                hint="pass --api-key or set SYNTH_BACKEND_API_KEY; "
                     "`synth-ai serve` prints the key it accepts when it starts",
            )
        self.base = base
        self.key = key
        self.max_retries = max(0, int(max_retries))
        self.connect_retries = max(0, min(int(connect_retries), self.max_retries))
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng
        self.request_count = 0  # HTTP attempts made (retries included): the polling benchmark reads it
        self.retry_count = 0
        headers = {"User-Agent": f"synth-ai-cli/{__version__}", "Accept": "application/json"}
        if key is not None:
            headers["Authorization"] = f"Bearer {key.value}"
        self._http = httpx.Client(
            base_url=base.value + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            transport=transport,
            follow_redirects=False,
            trust_env=True,
        )

    # -- plumbing -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return self.base.value

    def __enter__(self) -> "ApiClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _url(self, path: str) -> str:
        return path.lstrip("/")

    def _display(self, path: str) -> str:
        return self.base.value + "/" + path.lstrip("/")

    # -- requests -------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                content: bytes | Callable[[], Iterable[bytes]] | None = None,
                headers: Mapping[str, str] | None = None, idempotency_key: str | bool | None = None,
                timeout: httpx.Timeout | float | None = None) -> httpx.Response:
        """Send one logical request (with retries); return the successful response or raise ApiError.

        `content` may be a callable returning a fresh iterable of bytes: it is called once per
        attempt, so streamed uploads can be retried. `idempotency_key=True` generates a key that
        stays the same across the retries of this call.
        """
        method = method.upper()
        hdrs = dict(headers or {})
        if idempotency_key is True:
            idempotency_key = new_idempotency_key()
        if idempotency_key:
            hdrs[IDEMPOTENCY_HEADER] = str(idempotency_key)
        may_retry = method in IDEMPOTENT_METHODS or IDEMPOTENCY_HEADER in hdrs
        clean_params = {k: v for k, v in (params or {}).items() if v is not None} or None
        url = self._url(path)
        attempt = 0
        refused = 0
        while True:
            body = content() if callable(content) else content
            kwargs: dict[str, Any] = {"params": clean_params, "headers": hdrs}
            if json is not None:
                kwargs["json"] = json
            elif body is not None:
                kwargs["content"] = body
            if timeout is not None:
                kwargs["timeout"] = timeout
            self.request_count += 1
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                error = self._transport_error(exc, method, path, attempt + 1)
                # A connection that never opened carried nothing: safe to retry any method.
                never_connected = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                retryable = may_retry or never_connected
                if isinstance(exc, httpx.ConnectError):
                    refused += 1
                    retryable = retryable and refused <= self.connect_retries
                if retryable and attempt < self.max_retries:
                    self._wait(attempt, None)
                    attempt += 1
                    continue
                raise error from exc
            if response.status_code < 400:
                return response
            retryable = response.status_code in RETRY_STATUSES or response.status_code >= 500
            retry_after = parse_retry_after(response.headers)
            if retryable and may_retry and attempt < self.max_retries and (
                    retry_after is None or retry_after <= self.max_retry_after):
                response.close()
                self._wait(attempt, retry_after)
                attempt += 1
                continue
            raise self._http_error(response, method, path, attempt + 1, retry_after)

    def _wait(self, attempt: int, retry_after: float | None) -> None:
        self.retry_count += 1
        if retry_after is not None:
            delay = retry_after
        else:
            delay = backoff_delay(attempt, base=self.backoff_base, cap=self.backoff_cap, rng=self._rng)
        if delay > 0:
            self._sleep(delay)

    def get(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        return self._decode(self.request("GET", path, params=params), "GET", path)

    def post(self, path: str, *, json: Any = None, idempotency_key: str | bool | None = None) -> Any:
        return self._decode(self.request("POST", path, json=json, idempotency_key=idempotency_key), "POST", path)

    def delete(self, path: str) -> Any:
        return self._decode(self.request("DELETE", path), "DELETE", path)

    def _decode(self, response: httpx.Response, method: str, path: str) -> Any:
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            snippet = response.text[:120].strip()
            raise ApiError(
                f"{method} {self._display(path)}: the backend answered {response.status_code} with non-JSON "
                f"content ({response.headers.get('content-type', 'no content type')}): {snippet!r}",
                status=response.status_code, kind="decode", method=method, url=self._display(path),
                hint="is --base-url pointing at an OpenAI-compatible API (…/v1)?",
            ) from None

    # -- errors ---------------------------------------------------------------------
    def _key_description(self) -> str:
        if self.key is None:
            return "no API key was sent"
        return f"the key sent was {config.mask_key(self.key.value)} (from {self.key.source})"

    def _transport_error(self, exc: httpx.TransportError, method: str, path: str, attempts: int) -> ApiError:
        where = self.base.value
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        source = "" if self.base.source in ("argument",) else f" (base URL from {self.base.source})"
        if isinstance(exc, httpx.ConnectError):
            text = str(exc).lower()
            if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text \
                    or "name resolution" in text:
                reason = f"cannot resolve the host of {where}"
            elif "refused" in text:
                reason = f"cannot connect to {where}: connection refused"
            else:
                reason = f"cannot connect to {where}: {exc or type(exc).__name__}"
            return ApiError(
                f"{reason}{tries}{source}",
                kind="connect", method=method, url=self._display(path), attempts=attempts,
                hint="is the backend running? start a local backend with `synth-ai serve`, "
                     "or point --base-url / SYNTH_BACKEND_BASE_URL at yours",
            )
        if isinstance(exc, httpx.TimeoutException):
            phase = {httpx.ConnectTimeout: "connecting to", httpx.ReadTimeout: "waiting for an answer from",
                     httpx.WriteTimeout: "sending to", httpx.PoolTimeout: "waiting for a connection to"}
            what = next((v for k, v in phase.items() if isinstance(exc, k)), "talking to")
            return ApiError(
                f"timed out {what} {where} ({method} /{path.lstrip('/')}){tries}",
                kind="timeout", method=method, url=self._display(path), attempts=attempts,
                hint="the backend is slow or unreachable; try again, or check --base-url",
            )
        return ApiError(
            f"connection to {where} failed during {method} /{path.lstrip('/')}: "
            f"{exc or type(exc).__name__}{tries}",
            kind="network", method=method, url=self._display(path), attempts=attempts,
            hint="the connection was cut; try again",
        )

    def _http_error(self, response: httpx.Response, method: str, path: str, attempts: int,
                    retry_after: float | None) -> ApiError:
        status = response.status_code
        server_message, code = _server_message(response)
        server_message = config.redact(server_message) if server_message else None
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        what = f"{method} /{path.lstrip('/')}"
        detail = f": {server_message}" if server_message else ""
        hint: str | None
        if status == 401:
            head = f"the backend rejected the API key (401 {_reason(status)})"
            hint = (f"{self._key_description()}; check it, or pass --api-key / set SYNTH_BACKEND_API_KEY")
        elif status == 403:
            head = f"permission denied for {what} (403)"
            hint = f"{self._key_description()}; it is not allowed to do this"
        elif status == 404:
            head = f"not found: {what} (404)"
            hint = f"this backend ({self.base.value}) has no such endpoint or job/file; check the id " \
                   f"(`synth-ai sft list`) and --base-url"
        elif status == 429:
            head = f"rate limited by the backend (429){tries}"
            if retry_after is not None and retry_after > self.max_retry_after:
                hint = f"the backend asked to wait {retry_after:.0f}s; try again later"
            else:
                hint = "too many requests; wait a moment and try again (or raise --interval)"
        elif status >= 500:
            head = f"the backend failed on {what} ({status} {_reason(status)}){tries}"
            hint = "a server-side problem; try again later"
        elif status in (400, 409, 413, 415, 422):
            head = f"the backend refused {what} ({status} {_reason(status)})"
            hint = None
        else:
            head = f"{what} failed ({status} {_reason(status)}){tries}"
            hint = None
        return ApiError(head + detail, status=status, hint=hint, kind="http", code=code,
                        server_message=server_message, method=method, url=self._display(path),
                        attempts=attempts, retry_after=retry_after)


def host_is_local(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
