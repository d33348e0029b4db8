"""Account endpoints of the Synth backend (and `synth-ai serve`): balance and spend.

Relative to the base URL (`…/v1`), Bearer auth:

* `GET /balance/current` → `{"balance_cents", "balance_dollars"}`
* `GET /balance/usage/windows?hours=24,168` → `{"windows": [{"window_hours", "token_spend_cents",
  "gpu_spend_cents", "total_spend_cents"}]}`
* `GET /balance/usage[?model=M…]` → `{"current_month": {...}, "last_30_days": {...}[, "models": [{"model",
  "requests", "input_tokens", "output_tokens", "spend_cents"}]]}`

Backends without these routes (OpenAI and other OpenAI-compatible APIs) answer 404; that becomes
:class:`BalanceUnsupported`. Answers are checked for the fields the CLI shows and returned as the
server sent them (extra fields kept), so `--json` passes the raw numbers on. Nothing here prints.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from synth_cli.api.client import ApiClient
from synth_cli.api.errors import APIDecodeError, ApiError, APIStatusError

DEFAULT_WINDOWS = (24, 168)
SPEND_FIELDS = ("token_spend_cents", "gpu_spend_cents", "total_spend_cents")
MODEL_FIELDS = ("requests", "input_tokens", "output_tokens", "spend_cents")
UNSUPPORTED_STATUSES = frozenset({404, 405, 501})


class BalanceUnsupported(APIStatusError):
    """The backend has no account endpoints (e.g. OpenAI): there is no balance to show."""


def _get(client: ApiClient, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        body = client.get(path, params=params)
    except ApiError as exc:
        if exc.status in UNSUPPORTED_STATUSES:
            raise BalanceUnsupported(
                f"this backend does not report balances ({client.base_url} answered {exc.status} to GET /{path})",
                status=exc.status, kind="http", method="GET", url=exc.url,
                hint="balances come from a Synth backend or a local `synth-ai serve`; "
                     "check --base-url / SYNTH_BACKEND_BASE_URL (OpenAI shows spend at platform.openai.com/usage)",
            ) from exc
        raise
    if not isinstance(body, dict):
        raise _unexpected(client, path, f"expected a JSON object, got {type(body).__name__}")
    return body


def _unexpected(client: ApiClient, path: str, what: str) -> ApiError:
    return APIDecodeError(f"unexpected answer from GET {client.base_url}/{path}: {what}", method="GET",
                    hint="is --base-url pointing at a Synth backend or `synth-ai serve`?")


def _number(client: ApiClient, path: str, obj: Any, key: str, where: str) -> float | int:
    value = obj.get(key) if isinstance(obj, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _unexpected(client, path, f"`{where}{key}` is missing or not a number")
    return value


def current_balance(client: ApiClient) -> dict[str, Any]:
    """`{"balance_cents": int, "balance_dollars": float, …}`."""
    path = "balance/current"
    body = _get(client, path)
    cents = _number(client, path, body, "balance_cents", "")
    if "balance_dollars" not in body:
        body = {**body, "balance_dollars": cents / 100}
    else:
        _number(client, path, body, "balance_dollars", "")
    return body


def spend_windows(client: ApiClient, hours: Sequence[int] = DEFAULT_WINDOWS) -> list[dict[str, Any]]:
    """One entry per requested window, in the order asked, each with token/GPU/total spend in cents."""
    path = "balance/usage/windows"
    body = _get(client, path, {"hours": ",".join(str(int(h)) for h in hours)})
    windows = body.get("windows")
    if not isinstance(windows, list):
        raise _unexpected(client, path, "`windows` is missing or not a list")
    by_hours: dict[int, dict[str, Any]] = {}
    for i, window in enumerate(windows):
        where = f"windows[{i}]."
        span = _number(client, path, window, "window_hours", where)
        for key in SPEND_FIELDS:
            _number(client, path, window, key, where)
        by_hours[int(span)] = window
    missing = [h for h in hours if int(h) not in by_hours]
    if missing:
        raise _unexpected(client, path, f"no window for {', '.join(f'{h} h' for h in missing)}")
    return [by_hours[int(h)] for h in hours]


def usage_summary(client: ApiClient, models: Iterable[str] = ()) -> dict[str, Any]:
    """Spend this calendar month and over the last 30 days; per model too when `models` are given."""
    path = "balance/usage"
    wanted = [m for m in models if m]
    body = _get(client, path, {"model": wanted} if wanted else None)
    for period in ("current_month", "last_30_days"):
        section = body.get(period)
        if not isinstance(section, dict):
            raise _unexpected(client, path, f"`{period}` is missing")
        for key in SPEND_FIELDS:
            _number(client, path, section, key, f"{period}.")
    if wanted:
        rows = body.get("models")
        if not isinstance(rows, list):
            raise _unexpected(client, path, "`models` is missing although models were asked for")
        for i, row in enumerate(rows):
            if not isinstance(row, dict) or not isinstance(row.get("model"), str):
                raise _unexpected(client, path, f"`models[{i}].model` is missing")
            for key in MODEL_FIELDS:
                _number(client, path, row, key, f"models[{i}].")
    return body
