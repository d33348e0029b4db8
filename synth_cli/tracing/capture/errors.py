"""A failed LLM call as an `LLMCallRecord` (`outcome="error"`, `error={code, message, type}`). Never prints."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from synth_cli.tracing.capture._common import (
    StreamError,
    derive_call_id,
    latency_ms,
    naive_utc,
    to_plain,
)
from synth_cli.tracing.capture.openai import openai_message, openai_request_params
from synth_cli.tracing.models import (
    LLMCallRecord,
)


def _error_fields(exc: Any) -> tuple[dict[str, Any], str | None, str | None]:
    """({code, message, type, [status_code]}, provider_request_id, provider guessed from the exception)."""
    from synth_cli.config import redact

    guessed = None
    if isinstance(exc, BaseException):
        module = type(exc).__module__.split(".", 1)[0]
        if module in ("openai", "anthropic"):
            guessed = module
        body = getattr(exc, "body", None)
        inner = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else \
            body if isinstance(body, dict) else {}
        if isinstance(exc, StreamError):
            inner = exc.error
        message = getattr(exc, "message", None) or inner.get("message") or str(exc) or type(exc).__name__
        error: dict[str, Any] = {
            "code": getattr(exc, "code", None) or inner.get("code"),
            "message": redact(str(message)),
            "type": getattr(exc, "type", None) or inner.get("type") or type(exc).__name__,
        }
        status = getattr(exc, "status_code", None)
        if status is not None:
            error["status_code"] = status
        request_id = getattr(exc, "request_id", None)
        return error, request_id, guessed
    data = to_plain(exc)
    if isinstance(data, dict):
        inner = data.get("error") if isinstance(data.get("error"), dict) else data
        error = {"code": inner.get("code"), "message": redact(str(inner.get("message") or "")),
                 "type": inner.get("type")}
        return error, data.get("request_id"), None
    return {"code": None, "message": redact(str(data)), "type": "error"}, None, None


def record_error(request: dict, exc: Any, *, started_at: datetime | None = None,
                 completed_at: datetime | None = None, provider: str | None = None,
                 call_id: str | None = None) -> LLMCallRecord:
    """A failed call: the request as sent, `outcome="error"`, `error={code, message, type}`.

    `exc` is the exception raised (an `openai`/`anthropic` API error, a timeout, anything) or
    an error body (`{"error": {...}}`). The request is read as Anthropic Messages when the
    provider (given, or guessed from the exception's package) is "anthropic".
    """
    error, request_id, guessed = _error_fields(exc)
    provider = provider or guessed or "openai"
    req = to_plain(request)
    if not isinstance(req, dict):
        raise TypeError("request must be a dict of request parameters")
    started, completed = naive_utc(started_at), naive_utc(completed_at)
    if provider == "anthropic":
        from synth_cli.tracing.capture.anthropic import anthropic_request

        params, tool_choice, model, messages = anthropic_request(req)
    else:
        params, tool_choice, model = openai_request_params(req)
        messages = [openai_message(m) for m in req.get("messages") or []]
    return LLMCallRecord(
        call_id=derive_call_id(provider, None, call_id),
        api_type="chat_completions",
        provider=provider,
        model_name=model,
        started_at=started,
        completed_at=completed,
        latency_ms=latency_ms(started, completed),
        request_params=params,
        input_messages=messages,
        tool_choice=tool_choice,
        provider_request_id=request_id,
        outcome="error",
        error=error,
    )
