"""What the proxy forwards, and which session a call belongs to. Pure functions, no I/O.

Forwarded both ways: every header except the hop-by-hop ones (RFC 9110 §7.6.1: `Connection`,
`Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, and any header that
`Connection` names). Towards the upstream also not `Host` and `Content-Length` (the HTTP client
sets both for the upstream and the body it sends) and not the proxy's own `X-Synth-*` headers.
Auth headers (`Authorization`, `x-api-key`, ...) pass through untouched and are never recorded.

Sessions, first match wins:

1. the path prefix `/s/{session_id}/...` (for clients that cannot set headers);
2. the header `X-Synth-Session-Id`;
3. the client's default session: one per client address (IP, not port) per proxy run, named
   `proxy-<run id>-<address>-<n>`; after `idle_timeout` seconds without a call from that address
   the next call starts the next one (`n + 1`).

`X-Synth-Experiment-Id` and `X-Synth-Metadata` (a JSON object) apply to the session of the call.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

HOP_BY_HOP = frozenset({
    b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"proxy-connection",
    b"te", b"trailer", b"trailers", b"transfer-encoding", b"upgrade",
})
#: not forwarded to the upstream: the HTTP client sets them for the request it sends.
_REQUEST_ONLY = frozenset({b"host", b"content-length", b"expect"})
SYNTH_PREFIX = b"x-synth-"
SESSION_HEADER = "x-synth-session-id"
EXPERIMENT_HEADER = "x-synth-experiment-id"
METADATA_HEADER = "x-synth-metadata"
MAX_ID_LENGTH = 200
_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$")


class BadSynthInput(ValueError):
    """A malformed `X-Synth-*` header, session path or `/synth/` body (answered with a 400)."""


def _connection_listed(headers: Iterable[tuple[bytes, bytes]]) -> frozenset[bytes]:
    names: set[bytes] = set()
    for name, value in headers:
        if name.lower() == b"connection":
            names.update(part.strip().lower() for part in value.split(b",") if part.strip())
    return frozenset(names)


def request_headers(raw: list[tuple[bytes, bytes]]) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    """(headers to forward, the `X-Synth-*` headers by lower-case name) of an incoming request."""
    listed = _connection_listed(raw)
    forward: list[tuple[bytes, bytes]] = []
    synth: dict[str, str] = {}
    for name, value in raw:
        lower = name.lower()
        if lower.startswith(SYNTH_PREFIX):
            synth[lower.decode("latin-1")] = value.decode("latin-1")
        elif lower in HOP_BY_HOP or lower in _REQUEST_ONLY or lower in listed:
            continue
        else:
            forward.append((name, value))
    return forward, synth


def response_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The upstream's response headers minus the hop-by-hop ones, in order, case kept."""
    listed = _connection_listed(raw)
    return [(n, v) for n, v in raw if n.lower() not in HOP_BY_HOP and n.lower() not in listed]


def header_value(raw: list[tuple[bytes, bytes]], name: bytes) -> str | None:
    for n, v in raw:
        if n.lower() == name:
            return v.decode("latin-1")
    return None


def check_id(value: str, what: str) -> str:
    value = value.strip()
    if not value:
        raise BadSynthInput(f"{what} is empty")
    if len(value) > MAX_ID_LENGTH or not _ID_RE.match(value):
        raise BadSynthInput(f"{what} must be 1-{MAX_ID_LENGTH} characters of letters, digits and ._:@+=- "
                            "(starting with a letter or digit)")
    return value


def parse_metadata(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    from synth_cli import _json

    try:
        value = _json.loads(text)
    except _json.JSONDecodeError:
        raise BadSynthInput("X-Synth-Metadata is not valid JSON (expected a JSON object)") from None
    if not isinstance(value, dict):
        raise BadSynthInput("X-Synth-Metadata must be a JSON object")
    return value


@dataclass(frozen=True)
class Route:
    """The session a call (or an event) goes to."""

    session_id: str
    experiment_id: str | None = None
    metadata: dict[str, Any] | None = None
    default: bool = False  # the client's default session (neither header nor path prefix)


def _address_slug(host: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", host or "unknown").strip("_") or "unknown"


class SessionRouter:
    """Assigns calls to sessions (see the module docstring). Used from the event loop only."""

    def __init__(self, run_id: str, idle_timeout: float):
        self.run_id = run_id
        self.idle_timeout = idle_timeout
        self._defaults: dict[str, list[Any]] = {}  # address -> [session id, n, last call time]

    def route(self, synth: dict[str, str], path_session: str | None, client_host: str | None,
              now: float) -> Route:
        experiment = synth.get(EXPERIMENT_HEADER)
        if experiment is not None:
            experiment = check_id(experiment, "X-Synth-Experiment-Id")
        metadata = parse_metadata(synth.get(METADATA_HEADER))
        if path_session is not None:
            return Route(check_id(path_session, "the session id in /s/{session_id}/"), experiment, metadata)
        header = synth.get(SESSION_HEADER)
        if header is not None:
            return Route(check_id(header, "X-Synth-Session-Id"), experiment, metadata)
        return Route(self.default_session(client_host, now), experiment, metadata, default=True)

    def default_session(self, client_host: str | None, now: float) -> str:
        key = client_host or "unknown"
        slot = self._defaults.get(key)
        if slot is None or now - slot[2] > self.idle_timeout:
            n = 1 if slot is None else slot[1] + 1
            slot = [f"proxy-{self.run_id}-{_address_slug(client_host)}-{n}", n, now]
            self._defaults[key] = slot
        slot[2] = now
        return slot[0]
