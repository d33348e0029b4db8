"""A quick reachability probe of the backend for `synth-ai status`: `GET {base}/health`.

Standard library only (`urllib`, imported inside the function): importing httpx and
building its client costs ~0.2 s, more than the whole rest of `status`. Proxies come
from the environment as with any HTTP client; https:// is verified and may redirect,
plain http:// never follows a redirect. The probe sends no credentials (a health
check does not need them, and the URL may not be the backend the key belongs to).
Never prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

DEFAULT_TIMEOUT = 1.5


@dataclass
class ProbeResult:
    url: str
    answered: bool
    ok: bool
    status_code: int | None = None
    elapsed_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return {"url": self.url, "answered": self.answered, "ok": self.ok, "status_code": self.status_code,
                "elapsed_ms": self.elapsed_ms, "error": self.error}


def probe_backend(base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> ProbeResult:
    """`GET {base_url}/health` within `timeout` seconds; ok when it answers 2xx."""
    import http.client
    import socket
    import urllib.error
    import urllib.request

    from synth_cli.config import redact

    url = base_url.rstrip("/") + "/health"
    secure = url.lower().startswith("https://")
    handlers: list = [] if secure else [_no_redirect_handler()]
    opener = urllib.request.build_opener(*handlers)
    request = urllib.request.Request(url, headers={"Accept": "application/json", "User-Agent": "synth-ai"})
    started = time.perf_counter()
    try:
        with opener.open(request, timeout=timeout) as response:
            status = response.status
    except urllib.error.HTTPError as exc:  # it answered, with a non-2xx status
        exc.close()
        return ProbeResult(url, answered=True, ok=False, status_code=exc.code, elapsed_ms=_ms(started),
                           error=f"HTTP {exc.code}")
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, (socket.timeout, TimeoutError)):
            return ProbeResult(url, answered=False, ok=False, elapsed_ms=_ms(started),
                               error=f"no answer within {timeout:g} s")
        return ProbeResult(url, answered=False, ok=False, elapsed_ms=_ms(started), error=redact(_reason(reason)))
    return ProbeResult(url, answered=True, ok=200 <= status < 300, status_code=status, elapsed_ms=_ms(started),
                       error=None if 200 <= status < 300 else f"HTTP {status}")


def _no_redirect_handler():
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None  # the 3xx itself is the answer (HTTPError with its code)

    return NoRedirect()


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _reason(exc: object) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if ("name or service not known" in lowered or "nodename nor servname" in lowered or "getaddrinfo" in lowered
            or "temporary failure in name resolution" in lowered or "no address associated" in lowered):
        return "host not found"
    return text
