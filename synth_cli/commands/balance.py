"""`synth-ai balance` (and the `--remote` half of `synth-ai usage`): what the account has and spent."""

from __future__ import annotations

from typing import Any, Iterable, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.commands._options import api_key_option, base_url_option, provider_option
from synth_cli.output import fmt_int, fmt_usd, get_output, usd_number

#: a down backend should fail in seconds, not after the client's full retry budget
MAX_RETRIES = 3


def balance(
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
    usage: bool = typer.Option(False, "--usage", help="Also show spend this month and over the last 30 days."),
    provider: Optional[str] = provider_option(),
) -> None:
    """The account balance in USD and what was spent in the last 24 hours and 7 days.

    Spend is split into tokens (fine-tuning data trained on) and GPU time. Works
    with a Synth backend and with the local `synth-ai serve`; OpenAI and other
    backends without account endpoints say so. `--json` prints USD numbers
    (`balance_usd`, `..._spend_usd`) with the backend's answers under `raw`;
    `--quiet` prints the balance as a bare number.
    """
    from synth_cli.api import billing

    out = get_output()
    with _client(base_url, api_key, provider) as client:
        current = billing.current_balance(client)
        windows = billing.spend_windows(client)
        summary = billing.usage_summary(client) if usage else None

    data: dict[str, Any] = {"base_url": client.base_url, "balance_usd": _dollars(current["balance_cents"]),
                            "windows": [{"window_hours": int(w["window_hours"]), **_spend(w)} for w in windows]}
    raw: dict[str, Any] = {"balance": current, "windows": windows}
    if summary is not None:
        data["current_month"] = _spend(summary["current_month"])
        data["last_30_days"] = _spend(summary["last_30_days"])
        raw["usage"] = summary
    data["raw"] = raw

    def human() -> None:
        out.kv([("balance", _usd(current["balance_cents"])), ("backend", client.base_url)])
        rows = [(_window_label(w["window_hours"]), *(_usd(w[k]) for k in billing.SPEND_FIELDS)) for w in windows]
        if summary is not None:
            rows.append(("this month", *(_usd(summary["current_month"][k]) for k in billing.SPEND_FIELDS)))
            rows.append(("last 30 days", *(_usd(summary["last_30_days"][k]) for k in billing.SPEND_FIELDS)))
        out.line()
        out.table(["spend", ("tokens", "right"), ("GPU", "right"), ("total", "right")], rows)

    out.result(data, human, essential=[usd_number(data["balance_usd"])])  # -q: the bare amount


def remote_usage(models: Optional[Iterable[str]] = None, base_url: Optional[str] = None,
                 api_key: Optional[str] = None) -> dict[str, Any]:
    """`synth-ai usage --remote [--model M …]`: spend and tokens per model, as the backend bills them.

    Fetches `GET /balance/usage?model=M…`, renders it (a table, or the raw JSON with --json)
    and returns the data. `base_url` / `api_key` are the command's flag values (None: the
    usual SYNTH_* variables). Errors are raised as SynthError/ApiError like every command's.
    """
    from synth_cli.api import billing

    out = get_output()
    wanted = list(dict.fromkeys(m for m in (models or []) if m))
    with _client(base_url, api_key) as client:
        summary = billing.usage_summary(client, wanted)
    data: dict[str, Any] = {
        "base_url": client.base_url,
        "models": [{"model": row["model"], "requests": int(row["requests"]), "input_tokens": int(row["input_tokens"]),
                    "output_tokens": int(row["output_tokens"]), "spend_usd": _dollars(row["spend_cents"])}
                   for row in summary.get("models") or []],
        "current_month": _spend(summary["current_month"]),
        "last_30_days": _spend(summary["last_30_days"]),
        "raw": summary,
    }

    def human() -> None:
        rows = []
        for row in summary.get("models") or []:
            rows.append((row["model"], fmt_int(row["requests"]), fmt_int(row["input_tokens"]),
                         fmt_int(row["output_tokens"]), _usd(row["spend_cents"])))
        if rows:
            out.table(["model", ("requests", "right"), ("input tokens", "right"), ("output tokens", "right"),
                       ("spend", "right")], rows, title=f"Usage by model ({client.base_url})")
            out.line()
        totals = [(label, *(_usd(summary[key][k]) for k in billing.SPEND_FIELDS))
                  for label, key in (("this month", "current_month"), ("last 30 days", "last_30_days"))]
        out.table(["spend", ("tokens", "right"), ("GPU", "right"), ("total", "right")], totals)
        if not wanted:
            out.tip("add --model NAME (repeatable) for spend and tokens per model")

    out.result(data, human)
    return data


# --------------------------------------------------------------------------- helpers


def _client(base_url_flag: Optional[str], api_key_flag: Optional[str], provider: Optional[str] = None):
    """The account endpoints are Synth's (and `serve`'s): the provider layer's choice, base URL and key
    chain, and one `no API key` / `rejected the API key` message shared with every command. Only the
    OpenAI-compatible contract has account endpoints: another provider is refused in one line."""
    from synth_cli.api.providers import open_provider, resolve_target
    from synth_cli.errors import SynthError

    target = resolve_target(provider, base_url_flag, api_key_flag)
    if target.name != "openai":
        raise SynthError(f"{target.label} (provider {target.name}, {target.source}) has no balance or spend "
                         "endpoints: `synth-ai balance` reads a Synth backend's or `synth-ai serve`'s",
                         hint="sft submit/run show the estimated price before every job; pass --provider openai "
                              "and the backend's --base-url for its balance")
    return open_provider("openai", base_url_flag, api_key_flag, max_retries=MAX_RETRIES).client


def _usd(cents: Any) -> str:
    return fmt_usd(_dollars(cents))


def _dollars(cents: Any) -> float:
    """The backend's cents as the USD number every `--json` document carries (docs/json.md)."""
    return round(float(cents) / 100, 6)


def _spend(section: dict[str, Any]) -> dict[str, float]:
    """`{token,gpu,total}_spend_cents` → `{token,gpu,total}_spend_usd`."""
    return {key.replace("_cents", "_usd"): _dollars(section[key]) for key in billing_fields()}


def billing_fields() -> tuple[str, ...]:
    from synth_cli.api.billing import SPEND_FIELDS

    return SPEND_FIELDS


def _window_label(hours: Any) -> str:
    hours = int(hours)
    if hours % 24 == 0 and hours >= 48:
        return f"last {hours // 24} d"
    return f"last {hours} h"


def register(app: typer.Typer) -> None:
    app.command("balance", short_help=SUMMARIES["balance"])(balance)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'balance': [
        ('synth-ai balance',
         'Balance and spend over the last 24 hours and 7 days.'),
        ('synth-ai balance --usage',
         'Also the current month and the last 30 days.'),
        ('synth-ai balance --json',
         'The raw numbers, for scripts.'),
        ('synth-ai balance --base-url http://127.0.0.1:8000 --api-key sk-synth-local-dev-key',
         'Ask the local backend started by `synth-ai serve`.'),
    ],
}
