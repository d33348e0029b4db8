"""One httpx-based client for OpenAI-compatible APIs.

* base URL from `config.base_url` (flag > env > default), always ending in `/v1`;
* `Authorization: Bearer <key>`, the key resolved by `config.api_key` and remembered with its
  source so that a 401 can say *which* key was refused (masked) and where it came from;
* one bounded retry loop (`for attempt in range(max_retries + 1)`) and one predicate,
  `_should_retry`: capped exponential backoff with full jitter on lost connections, 408, 409,
  429 and 5xx, honouring `Retry-After` (seconds or an HTTP date) and `retry-after-ms`; a POST is
  retried only when it carries an `Idempotency-Key` (the server then answers a replay with the
  first result, so a retry never creates a second job or file);
* a refused connection (nothing reached the server; typically a backend restarting) is retried
  for a bounded time, `SYNTH_CONNECT_RETRY_SECONDS` (default 15 s), whatever the method;
* a 3xx answer is an error naming the redirect target (API calls are not followed);
* a key with whitespace, a newline or non-ASCII characters is refused before any request;
* every failure becomes one typed :class:`synth_cli.api.errors.ApiError` subclass (one per
  status family, as openai-python) with the HTTP status, the server's own message and a hint;
  texts are passed through `config.redact`, so the key never leaks.

This module never prints.
"""

from __future__ import annotations

import email.utils
import random
import time
import uuid
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import quote

import httpx

from synth_cli import __version__, config
from synth_cli.api.errors import (APIConnectionError, APIDecodeError, ApiError,
                                  APITimeoutError, MissingApiKeyError, status_error)
from synth_cli.config import Setting

__all__ = ["ApiClient", "ApiError", "backoff_delay", "parse_retry_after", "new_idempotency_key", "path_segment",
           "connect_retry_seconds"]

RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
IDEMPOTENCY_HEADER = "Idempotency-Key"

DEFAULT_TIMEOUT = 60.0
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_MAX_RETRIES = 5
#: "connection refused": the backend may be restarting. Refused connections are retried (any method:
#: nothing reached the server) for this many seconds of waiting in total, then reported.
#: `SYNTH_CONNECT_RETRY_SECONDS` overrides it (0: fail at the first refusal).
DEFAULT_CONNECT_RETRY_SECONDS = 15.0
CONNECT_RETRY_VAR = "SYNTH_CONNECT_RETRY_SECONDS"
DEFAULT_BACKOFF_BASE = 0.5
DEFAULT_BACKOFF_CAP = 8.0
#: a `Retry-After` longer than this is not waited for: the error is raised with the wait in its hint.
DEFAULT_MAX_RETRY_AFTER = 60.0


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


def connect_retry_seconds(value: float | None = None) -> float:
    """Seconds to keep retrying refused connections: the argument, else SYNTH_CONNECT_RETRY_SECONDS, else 15."""
    from synth_cli.config import check_number, env_number

    if value is None:
        return env_number(CONNECT_RETRY_VAR, DEFAULT_CONNECT_RETRY_SECONDS, high=86400, unit="seconds")
    return check_number(CONNECT_RETRY_VAR, value, high=86400, unit="seconds")


class ApiClient:
    """A thin, retrying JSON client bound to one base URL and one API key.

    `base_url` / `api_key` accept a string (source "argument"), a `config.Setting`, or None to
    resolve them from flags/env/.env as `config.base_url()` / `config.api_key()` do. One
    `httpx.Client` (one connection pool) serves every request of a command. `transport` is for
    tests that need a fault no real server produces; `sleep` and `rng` make backoff observable.
    `key_vars` names the variables the key may come from (for the hints).
    """

    def __init__(self, base_url: str | Setting | None = None, api_key: str | Setting | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES, connect_retry: float | None = None,
                 backoff_base: float = DEFAULT_BACKOFF_BASE,
                 backoff_cap: float = DEFAULT_BACKOFF_CAP, max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
                 require_key: bool = True, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random,
                 key_vars: tuple[str, ...] = config.API_KEY_VARS, provider_label: str = "backend"):
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
        self.key_vars = tuple(key_vars)
        self.provider_label = provider_label
        if key is not None:
            config.register_secret(key.value)
            config.register_secret(key.value.strip())
            config.check_api_key(key)  # a newline or non-ASCII character: one clear error, before any request
        if key is None and require_key:
            *first, last = self.key_vars
            raise MissingApiKeyError(
                f"no API key configured (tried --api-key, then {', '.join(first)} and {last} "
                "in the environment and .env)",
                hint=f"pass --api-key or set {self.key_vars[0]}; "
                     "`synth-ai serve` prints the key it accepts when it starts",
            )
        self.base = base
        self.key = key
        self.max_retries = max(0, int(max_retries))
        self.connect_retry = connect_retry_seconds(connect_retry)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.max_retry_after = max_retry_after
        self._sleep = sleep
        self._rng = rng
        self.request_count = 0  # HTTP attempts made (retries included): the polling benchmark reads it
        self.headers = {"User-Agent": f"synth-ai-cli/{__version__}", "Accept": "application/json"}
        if key is not None:
            self.headers["Authorization"] = f"Bearer {key.value}"
        self.timeout = httpx.Timeout(timeout, connect=connect_timeout)
        self._http = httpx.Client(
            base_url=base.value + "/",
            headers=self.headers,
            timeout=self.timeout,
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
        return path if "://" in path else path.lstrip("/")

    def _display(self, path: str) -> str:
        return path if "://" in path else self.base.value + "/" + path.lstrip("/")

    # -- requests -------------------------------------------------------------------
    def _should_retry(self, method_may_retry: bool, attempt: int, *, response: httpx.Response | None = None,
                      exc: Exception | None = None, retry_after: float | None = None) -> bool:
        """One predicate for every retry decision (openai-python's `_should_retry`).

        No retries left → no. A transport failure → only when the method may be replayed (GET,
        or a POST with an Idempotency-Key) or the connection never opened (nothing was sent).
        A response → 408/409/429/5xx on a replayable request, unless `Retry-After` asks for
        longer than we are willing to wait.
        """
        if attempt >= self.max_retries:
            return False
        if exc is not None:
            never_connected = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
            return method_may_retry or never_connected
        assert response is not None
        status = response.status_code
        if not (status in RETRY_STATUSES or status >= 500):
            return False
        return method_may_retry and (retry_after is None or retry_after <= self.max_retry_after)

    def _send(self, method: str, url: str, kwargs: dict[str, Any], content: Any,
              waited: list[float]) -> httpx.Response:
        """One attempt; a refused connection is retried here until `connect_retry` seconds were waited."""
        while True:
            body = content() if callable(content) else content
            if body is not None and "json" not in kwargs:
                kwargs["content"] = body
            self.request_count += 1
            try:
                return self._http.request(method, url, **kwargs)
            except httpx.ConnectError:
                left = self.connect_retry - waited[0]
                if left <= 0:
                    raise
                delay = min(left, max(0.05, backoff_delay(int(waited[1]), base=self.backoff_base,
                                                          cap=min(self.backoff_cap, 2.0), rng=self._rng)))
                waited[0] += delay
                waited[1] += 1
                self._sleep(delay)

    def request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None, json: Any = None,
                content: bytes | Callable[[], Iterable[bytes]] | None = None,
                headers: Mapping[str, str] | None = None, idempotency_key: str | bool | None = None,
                timeout: httpx.Timeout | float | None = None, expect_redirect: bool = False) -> httpx.Response:
        """Send one logical request (with retries); return the successful response or raise an ApiError.

        `content` may be a callable returning a fresh iterable of bytes: it is called once per
        attempt, so streamed uploads can be retried. `idempotency_key=True` generates a key that
        stays the same across the retries of this call. A 3xx answer is an error naming where it
        pointed (API calls are never redirected), unless `expect_redirect` (an upload step whose
        contract is a redirect).
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
        kwargs: dict[str, Any] = {"params": clean_params, "headers": hdrs}
        if json is not None:
            kwargs["json"] = json
        if timeout is not None:
            kwargs["timeout"] = timeout
        waited = [0.0, 0]  # seconds waited on refused connections, refusals so far
        error: ApiError | None = None
        for attempt in range(self.max_retries + 1):
            try:
                response = self._send(method, url, kwargs, content, waited)
            except httpx.TransportError as exc:
                error = self._transport_error(exc, method, path, attempt + 1, waited[0])
                if self._should_retry(may_retry, attempt, exc=exc) and not isinstance(exc, httpx.ConnectError):
                    self._wait(attempt, None)
                    continue
                raise error from exc
            status = response.status_code
            if status < 300 or (expect_redirect and status < 400):
                return response
            retry_after = parse_retry_after(response.headers)
            if self._should_retry(may_retry, attempt, response=response, retry_after=retry_after):
                response.close()
                self._wait(attempt, retry_after)
                continue
            raise self._http_error(response, method, path, attempt + 1, retry_after)
        raise error or AssertionError("unreachable")  # pragma: no cover - the loop always returns or raises

    def _wait(self, attempt: int, retry_after: float | None) -> None:
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
            raise APIDecodeError(
                f"{method} {self._display(path)}: the backend answered {response.status_code} with non-JSON "
                f"content ({response.headers.get('content-type', 'no content type')}): {snippet!r}",
                status=response.status_code, method=method, url=self._display(path),
                hint="is --base-url pointing at the provider's API (…/v1)?",
            ) from None

    # -- errors ---------------------------------------------------------------------
    def _key_description(self) -> str:
        if self.key is None:
            return "no API key was sent"
        return f"the key sent was {config.mask_key(self.key.value)} (from {self.key.source})"

    def _transport_error(self, exc: httpx.TransportError, method: str, path: str, attempts: int,
                         waited: float = 0.0) -> ApiError:
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
            if waited > 0:
                tries = f" (retried for {waited:.1f}s; {CONNECT_RETRY_VAR} sets how long)"
            return APIConnectionError(
                f"{reason}{tries}{source}",
                method=method, url=self._display(path), attempts=attempts,
                hint="is the backend running? start a local backend with `synth-ai serve`, "
                     "or point --base-url / SYNTH_BACKEND_BASE_URL at yours",
            )
        if isinstance(exc, httpx.TimeoutException):
            phase = {httpx.ConnectTimeout: "connecting to", httpx.ReadTimeout: "waiting for an answer from",
                     httpx.WriteTimeout: "sending to", httpx.PoolTimeout: "waiting for a connection to"}
            what = next((v for k, v in phase.items() if isinstance(exc, k)), "talking to")
            return APITimeoutError(
                f"timed out {what} {where} ({method} /{path.lstrip('/')}){tries}",
                method=method, url=self._display(path), attempts=attempts,
                hint="the backend is slow or unreachable; try again, or check --base-url",
            )
        return APIConnectionError(
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
        cls = status_error(status)
        if 300 <= status < 400:
            location = response.headers.get("location")
            target = str(response.url.join(location)) if location else "no Location given"
            head = f"the backend redirected {what} ({status} {_reason(status)}) to {target}"
            detail = ""
            hint = (f"API calls are not followed across redirects; point --base-url at the API itself "
                    f"(now {self.base.value}, from {self.base.source})")
        elif status == 401:
            if self.key is not None:
                head = (f"{self.base.value} rejected the API key {config.mask_key(self.key.value)} "
                        f"(from {self.key.source}) (401 {_reason(status)})")
            else:
                head = f"{self.base.value} wants an API key (401 {_reason(status)})"
            hint = (f"{self._key_description()}; check that this key belongs to that backend (base URL from "
                    f"{self.base.source}); pass --api-key or set {' / '.join(self.key_vars[:2])}; "
                    "`synth-ai serve` prints the key it accepts")
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
        return cls(head + detail, status=status, hint=hint, code=code,
                   server_message=server_message, method=method, url=self._display(path),
                   attempts=attempts, retry_after=retry_after)
