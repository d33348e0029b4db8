"""`synth-ai balance` and `usage --remote` (remote_usage) against the local backend and broken backends."""

from __future__ import annotations

import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from helpers import invoke, run_cli
from synth_cli import config

WRONG_KEY = "sk_live_" + "w" * 20 + "9f3e"


def _error_lines(result, exit_code=1):
    assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    return lines


# --------------------------------------------------------------------------- without a working backend


def test_no_key_names_every_variable_tried(tmp_path):
    lines = _error_lines(invoke("balance", "--base-url", "http://127.0.0.1:9"))
    for name in ("--api-key", *config.API_KEY_VARS):
        assert name in lines[0]
    assert lines[1].startswith("hint: ")
    # every command that needs a key says it the same way
    for args in (("usage", "--remote"), ("sft", "list")):
        assert _error_lines(invoke(*args, "--base-url", "http://127.0.0.1:9")) == lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_backend_is_one_line_and_a_hint():
    port = _free_port()
    started = time.monotonic()
    result = run_cli("balance", env={"SYNTH_API_KEY": "sk-test-0123456789abcdef",
                                     "SYNTH_BASE_URL": f"http://127.0.0.1:{port}"})
    lines = _error_lines(result)
    assert "cannot connect" in lines[0] and f"127.0.0.1:{port}" in lines[0]
    assert "env SYNTH_BASE_URL" in lines[0]
    assert lines[1].startswith("hint: ") and "synth-ai serve" in lines[1]
    assert time.monotonic() - started < 30


class _OpenAILike(BaseHTTPRequestHandler):
    """Answers like api.openai.com does for a route it does not have."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        body = json.dumps({"error": {"message": f"Invalid URL (GET {self.path.split('?')[0]})",
                                     "type": "invalid_request_error", "param": None, "code": None}}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _openai_like_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAILike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def test_backend_without_account_endpoints_does_not_report_balances(capsys):
    with _openai_like_server() as url:
        lines = _error_lines(invoke("balance", "--base-url", url, "--api-key", "sk-test-0123456789abcdef"))
        assert "this backend does not report balances" in lines[0] and url in lines[0]
        json_mode = invoke("--json", "balance", "--base-url", url, "--api-key", "sk-test-0123456789abcdef")
        assert "does not report balances" in json_mode.stderr
        error = json_mode.json()["error"]  # under --json the failure is a JSON object on stdout too
        assert "does not report balances" in error["message"] and error["exit_code"] == json_mode.exit_code == 1
        assert error["hint"].startswith("balances come from")

        from synth_cli.api.billing import BalanceUnsupported
        from synth_cli.commands.balance import remote_usage

        with pytest.raises(BalanceUnsupported):
            remote_usage(["gpt-4o-mini"], url, "sk-test-0123456789abcdef")


# --------------------------------------------------------------------------- against `synth-ai serve`

CREDIT_USD = 25


def _training_file(path: Path, n: int = 12) -> Path:
    with path.open("w") as fh:
        for i in range(n):
            fh.write(json.dumps({"messages": [
                {"role": "system", "content": "You play Crafter."},
                {"role": "user", "content": f"Step {i}: you see a tree to the north. What do you do?"},
                {"role": "assistant", "content": f"Move north and collect wood ({i})."},
            ]}) + "\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A backend for the tests that do not depend on its state."""
    from helpers import devserver as _devserver
    tmp = tmp_path_factory.mktemp("serve")
    with _devserver.running_server(tmp, credit_usd=CREDIT_USD, step_seconds=0.01) as handle:
        yield handle, tmp


def _env(handle, **extra):
    return {"SYNTH_BASE_URL": handle.base_url, "SYNTH_API_KEY": handle.api_key, **extra}


def test_wrong_key_shows_it_masked_with_its_source(served):
    handle, _ = served
    result = run_cli("balance", env=_env(handle, SYNTH_API_KEY=WRONG_KEY))
    lines = _error_lines(result)
    assert config.mask_key(WRONG_KEY) in lines[0] and "env SYNTH_API_KEY" in lines[0] and "401" in lines[0]
    assert WRONG_KEY not in result.output
    assert lines[1].startswith("hint: ") and "--api-key" in lines[1]
    flag = run_cli("balance", "--api-key", WRONG_KEY, env=_env(handle))
    assert "(from --api-key)" in _error_lines(flag)[0] and WRONG_KEY not in flag.output


def test_after_a_job_the_balance_went_down_by_exactly_what_usage_says(tmp_path):
    """A fresh account has the credit and no spend; after one job, every figure agrees with the job."""
    from helpers import devserver as _devserver

    with _devserver.running_server(tmp_path, credit_usd=CREDIT_USD, step_seconds=0.01) as handle:
        fresh = run_cli("--json", "balance", "--usage", env=_env(handle))
        assert fresh.exit_code == 0, fresh.stderr
        data = fresh.json()
        assert data["balance_usd"] == CREDIT_USD and data["raw"]["balance"]["balance_cents"] == CREDIT_USD * 100
        assert not any(key.endswith("_cents") for key in data if key != "raw")
        assert [w["window_hours"] for w in data["windows"]] == [24, 168]
        for section in (*data["windows"], data["current_month"], data["last_30_days"]):
            assert section["total_spend_usd"] == 0
        human = run_cli("balance", env=_env(handle))
        assert human.exit_code == 0 and f"${CREDIT_USD}.00" in human.stdout
        assert "last 24 h" in human.stdout and "last 7 d" in human.stdout and "this month" not in human.stdout

        train = _training_file(tmp_path / "train.jsonl")
        model = _devserver_base_model()
        # --no-validate: this test is about billing; dataset validation has its own tests
        job_run = run_cli("--json", "sft", "run", str(train), "--model", model, "--no-validate", "--interval", "0.05",
                          "--timeout", "120", env=_env(handle), timeout=180)
        assert job_run.exit_code == 0, job_run.stderr
        job = json.loads(job_run.stdout.strip().splitlines()[-1])
        assert job["status"] == "succeeded" and job["trained_tokens"] > 0

        data = run_cli("--json", "balance", "--usage", env=_env(handle)).json()
        spent = data["raw"]["windows"][0]["total_spend_cents"]
        assert spent > 0 and data["windows"][0]["total_spend_usd"] == spent / 100
        for section in (*data["windows"], data["current_month"], data["last_30_days"]):
            assert section["total_spend_usd"] == spent / 100
            assert section["token_spend_usd"] + section["gpu_spend_usd"] == pytest.approx(section["total_spend_usd"])
            assert section["token_spend_usd"] > 0 and section["gpu_spend_usd"] > 0
        assert data["balance_usd"] == pytest.approx((CREDIT_USD * 100 - spent) / 100)

        left = f"${(CREDIT_USD * 100 - spent) / 100:,.2f}"
        human = run_cli("balance", "--usage", env=_env(handle))
        assert human.exit_code == 0
        assert "this month" in human.stdout and "last 30 days" in human.stdout and left in human.stdout
        assert run_cli("-q", "balance", env=_env(handle)).stdout.strip() == left.replace("$", "").replace(",", "")

        # per model (`usage --remote`): the same spend, one job, its trained tokens
        from synth_cli.commands.balance import remote_usage

        per_model = remote_usage([model, "no-such-model"], handle.base_url, handle.api_key)
        rows = {row["model"]: row for row in per_model["models"]}
        assert rows[model]["spend_usd"] == spent / 100 and rows[model]["requests"] == 1
        assert rows[model]["input_tokens"] == job["trained_tokens"]
        assert rows["no-such-model"]["spend_usd"] == 0 and rows["no-such-model"]["requests"] == 0


def _devserver_base_model() -> str:
    """A base model the local backend fine-tunes (its own list when it exposes one)."""
    from helpers import devserver as _devserver

    return getattr(_devserver, "BASE_MODEL", "Qwen/Qwen3-4B-Instruct-2507")


def test_usage_remote_through_the_cli(served):
    handle, _ = served
    help_text = run_cli("usage", "--help")
    if help_text.exit_code != 0 or "--remote" not in help_text.stdout:
        pytest.skip("`synth-ai usage --remote` is not registered in this checkout (helper inspect)")
    model = _devserver_base_model()
    result = run_cli("--json", "usage", "--remote", "--model", model, env=_env(handle))
    assert result.exit_code == 0, result.stderr
    data = result.json()
    assert "current_month" in data and [row["model"] for row in data["models"]] == [model]
    human = run_cli("usage", "--remote", "--model", model, env=_env(handle))
    assert human.exit_code == 0 and model in human.stdout


def test_balance_follows_the_provider_layer(served, monkeypatch):
    """The provider is chosen as `sft` chooses it; only the OpenAI-compatible contract has account
    endpoints, so a Together target is refused in one line (nothing is sent), and OPENAI_API_KEY is in
    the openai key chain."""
    handle, _ = served
    together = run_cli("balance", "--base-url", "http://127.0.0.1:9/together/v1", "--api-key", "k" * 20)
    lines = _error_lines(together)
    assert "Together AI (provider together, inferred from the base URL (--base-url)) has no balance" in lines[0]
    env = {"SYNTH_BASE_URL": handle.base_url, "OPENAI_API_KEY": handle.api_key}
    ok = run_cli("--json", "balance", env=env)
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["base_url"] == handle.base_url
    refused = run_cli("balance", env={**env, "SYNTH_PROVIDER": "together"})
    assert "(provider together, env SYNTH_PROVIDER)" in _error_lines(refused)[0]
    assert run_cli("balance", "--provider", "openai", env={**env, "SYNTH_PROVIDER": "together"}).exit_code == 0
