"""A quick reachability probe of the backend for `synth-ai status`: `GET {base}/health`.

httpx is imported inside the function. The probe sends no credentials (a health check
does not need them, and the URL may not be the backend the key belongs to). Never prints.
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
    import httpx

    from synth_cli.config import redact

    url = base_url.rstrip("/") + "/health"
    secure = url.lower().startswith("https://")
    started = time.perf_counter()
    try:
        # Plain http:// needs no certificate checks; https:// is verified as usual.
        with httpx.Client(timeout=httpx.Timeout(timeout), verify=secure, follow_redirects=secure) as client:
            started = time.perf_counter()  # the answer's latency, not the client's set-up
            response = client.get(url, headers={"Accept": "application/json"})
    except httpx.TimeoutException:
        return ProbeResult(url, answered=False, ok=False, elapsed_ms=_ms(started),
                           error=f"no answer within {timeout:g} s")
    except httpx.HTTPError as exc:
        return ProbeResult(url, answered=False, ok=False, elapsed_ms=_ms(started), error=redact(_reason(exc)))
    return ProbeResult(url, answered=True, ok=200 <= response.status_code < 300, status_code=response.status_code,
                       elapsed_ms=_ms(started),
                       error=None if response.is_success else f"HTTP {response.status_code}")


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    lowered = text.lower()
    if "refused" in lowered:
        return "connection refused"
    if "name or service not known" in lowered or "nodename nor servname" in lowered or "getaddrinfo" in lowered:
        return "host not found"
    return text
