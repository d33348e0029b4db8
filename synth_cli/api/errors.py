"""The typed HTTP errors of `synth_cli.api`, one class per status family (as openai-python has).

(A key that cannot be sent at all, with a newline or a non-ASCII character, is refused before any
request by `config.check_api_key`, a usage error.) Every class is an :class:`ApiError` (a `SynthError`, so `app.py` renders it as one line), and
keeps the old `kind` attribute for renderers that only need the family:

    ApiError
    ├── MissingApiKeyError        kind "auth"     no key configured at all
    ├── APIConnectionError        kind "connect"  the connection could not be opened / was cut
    │   └── APITimeoutError       kind "timeout"
    ├── APIDecodeError            kind "decode"   an answer that is not the JSON the contract says
    ├── UnsupportedError          kind "unsupported"  this provider has no such operation
    └── APIStatusError            kind "http"     an HTTP error status (`status` set)
        ├── RedirectError              3xx (a backend that redirects an API call is misconfigured)
        ├── BadRequestError            400
        ├── AuthenticationError        401
        ├── PermissionDeniedError      403
        │   └── AccessRefusedError     403 on job creation by OpenAI's fine-tuning access policy
        ├── NotFoundError              404
        ├── ConflictError              409
        ├── UnprocessableEntityError   422
        ├── RateLimitError             429
        └── InternalServerError        5xx

`status_error(status)` picks the class. Texts are passed through `config.redact`, so a key never
leaks through an error. Nothing here prints.
"""

from __future__ import annotations

from synth_cli import config
from synth_cli.errors import SynthError


class ApiError(SynthError):
    """Any failure talking to a backend. `status` is the HTTP status (None when no answer came)."""

    kind = "http"

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None, kind: str | None = None,
                 code: str | None = None, server_message: str | None = None, method: str | None = None,
                 url: str | None = None, attempts: int = 1, retry_after: float | None = None):
        super().__init__(config.redact(message), hint=config.redact(hint) if hint else None)
        self.status = status
        if kind is not None:
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
        return False


class MissingApiKeyError(ApiError):
    kind = "auth"


class APIConnectionError(ApiError):
    kind = "connect"

    @property
    def transient(self) -> bool:
        return True


class APITimeoutError(APIConnectionError):
    kind = "timeout"


class APIDecodeError(ApiError):
    kind = "decode"


class UnsupportedError(ApiError):
    """The chosen provider has no such operation (e.g. pausing a Together job)."""

    kind = "unsupported"


class APIStatusError(ApiError):
    kind = "http"

    @property
    def transient(self) -> bool:
        return self.status is not None and (self.status in (408, 409, 429) or self.status >= 500)


class RedirectError(APIStatusError):
    pass


class BadRequestError(APIStatusError):
    pass


class AuthenticationError(APIStatusError):
    pass


class PermissionDeniedError(APIStatusError):
    pass


class AccessRefusedError(PermissionDeniedError):
    pass


class NotFoundError(APIStatusError):
    pass


class ConflictError(APIStatusError):
    pass


class UnprocessableEntityError(APIStatusError):
    pass


class RateLimitError(APIStatusError):
    pass


class InternalServerError(APIStatusError):
    pass


_BY_STATUS = {400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
              409: ConflictError, 422: UnprocessableEntityError, 429: RateLimitError}


def status_error(status: int) -> type[APIStatusError]:
    """The exception class for an HTTP status."""
    if 300 <= status < 400:
        return RedirectError
    if status >= 500:
        return InternalServerError
    return _BY_STATUS.get(status, APIStatusError)
