"""The client side of `sft`: typed errors, redirects, bad keys, one connection pool, choosing a provider and its
key, OpenAI's access refusal, pause/resume, job metadata, the cost check — against servers on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from synth_cli.api.client import ApiClient
from synth_cli.api.errors import (AccessRefusedError, ApiError, AuthenticationError, BadRequestError,
                                  InternalServerError, NotFoundError, PermissionDeniedError,
                                  RateLimitError, RedirectError, status_error)
from synth_cli.api.fine_tuning import FineTuning
from synth_cli.api.providers import choose_provider, infer_provider, open_provider
from synth_cli.config import Setting
from synth_cli.errors import UsageError
from helpers.fakeapi import KEY, FakeApi, serve_fake
from helpers import invoke


def client_for(base_url: str, **kwargs) -> ApiClient:
    kwargs.setdefault("sleep", lambda s: None)
    return ApiClient(base_url=base_url, api_key=Setting(KEY, "env SYNTH_API_KEY"), **kwargs)


def write_train(path, lines: int = 12):
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                              {"role": "assistant", "content": f"a{i}"}]}) + "\n")
    return path


# --------------------------------------------------------------------------- typed errors


def test_one_exception_class_per_status_family():
    assert status_error(400) is BadRequestError and status_error(401) is AuthenticationError
    assert status_error(403) is PermissionDeniedError and status_error(404) is NotFoundError
    assert status_error(429) is RateLimitError and status_error(503) is InternalServerError
    assert status_error(302) is RedirectError
    with serve_fake() as srv:
        client = client_for(srv.base_url, max_retries=0)
        for status, cls in ((400, BadRequestError), (403, PermissionDeniedError), (429, RateLimitError),
                            (500, InternalServerError)):
            srv.api.fail_next(1, status)
            with pytest.raises(cls) as info:
                FineTuning(client).list_jobs()
            assert isinstance(info.value, ApiError) and info.value.status == status
        with pytest.raises(NotFoundError):
            FineTuning(client).retrieve("ftjob-nope")
        wrong = ApiClient(base_url=srv.base_url, api_key=Setting("sk-wrong-key-000000000000", "--api-key"))
        with pytest.raises(AuthenticationError) as info:
            FineTuning(wrong).list_jobs()
        assert "rejected the API key sk-wro…0000 (from --api-key)" in info.value.message


def test_a_redirect_is_an_error_naming_the_target():
    from starlette.applications import Starlette
    from starlette.responses import RedirectResponse
    from starlette.routing import Route

    class Redirecting(FakeApi):
        def app(self):
            return Starlette(routes=[Route("/{p:path}", lambda r: RedirectResponse("https://elsewhere.example/v1/x",
                                                                                   status_code=301))])

    with serve_fake(Redirecting()) as srv:
        with pytest.raises(RedirectError) as info:
            FineTuning(client_for(srv.base_url)).list_jobs()
        assert "https://elsewhere.example/v1/x" in info.value.message and "301" in info.value.message
        result = invoke("sft", "list", "--base-url", srv.base_url, "--api-key", KEY)
        assert result.exit_code == 1
        assert result.stderr.startswith("error: the backend redirected GET /fine_tuning/jobs (301 Moved "
                                        "Permanently) to https://elsewhere.example/v1/x")
        assert "no fine-tuning jobs" not in result.stdout


@pytest.mark.parametrize("key, needle", [("sk-abc\u2019def-0123456789", "a non-ASCII character"),
                                         ("sk-abcdef-0123456789\n", "trailing whitespace (a newline?)"),
                                         ("sk-abc def-0123456789", "a space or control character")])
def test_a_key_that_cannot_be_sent_is_refused_at_once(key, needle):
    with serve_fake() as srv:
        with pytest.raises(UsageError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
            ApiClient(base_url=srv.base_url, api_key=Setting(key, "env SYNTH_API_KEY"))
        result = invoke("sft", "list", "--base-url", srv.base_url, env={"SYNTH_API_KEY": key})
        assert result.exit_code == 2 and len(result.stderr.splitlines()) == 2
        assert result.stderr.startswith("error: the API key from env SYNTH_API_KEY") and needle in result.stderr
        assert srv.api.requests == []  # nothing was sent


def test_one_connection_serves_every_request_of_a_command(tmp_path):
    from synth_cli.api.provider import JobSpec

    with serve_fake(steps=3) as srv:
        train = write_train(tmp_path / "train.jsonl")
        with open_provider("openai", srv.base_url, KEY) as provider:
            http = provider.client._http
            file_id = provider.upload_file(train).id
            job = provider.create_job(JobSpec(model="gpt-4o-mini", training_file=file_id))
            for _ in range(3):
                provider.retrieve(job.id)
                provider.list_events(job.id)
            assert provider.client._http is http
            assert len(http._transport._pool.connections) == 1  # one keep-alive connection, reused
        assert len(srv.api.requests) == 8


# --------------------------------------------------------------------------- choosing the provider and its key


def test_provider_from_flag_env_or_base_url(monkeypatch):
    assert infer_provider("https://api.together.xyz/v1") == "together"
    assert infer_provider("https://api.together.ai/v1") == "together"
    assert infer_provider("https://api.openai.com/v1") == "openai"
    assert infer_provider("http://127.0.0.1:8000/together/v1") == "together"
    assert infer_provider("http://127.0.0.1:8000/v1") is None
    assert choose_provider(None) == ("openai", "default")
    monkeypatch.setenv("SYNTH_BASE_URL", "https://api.together.xyz/v1")
    assert choose_provider(None)[0] == "together"
    monkeypatch.setenv("SYNTH_PROVIDER", "openai")
    assert choose_provider(None) == ("openai", "env SYNTH_PROVIDER")
    assert choose_provider("Together") == ("together", "--provider")
    with pytest.raises(UsageError, match="unknown provider 'vertex' .from --provider.; expected one of: openai, "
                                         "together"):
        choose_provider("vertex")


def test_each_provider_reads_its_own_key_after_the_synth_chain(monkeypatch):
    monkeypatch.setenv("TOGETHER_API_KEY", "tg-key-0123456789abcdef")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-0123456789abcdef")
    with open_provider("together", "http://127.0.0.1:9/together/v1") as provider:
        assert provider.client.key == Setting("tg-key-0123456789abcdef", "env TOGETHER_API_KEY")
    with open_provider("openai", "http://127.0.0.1:9/v1") as provider:
        assert provider.client.key.source == "env OPENAI_API_KEY"
    monkeypatch.setenv("SYNTH_API_KEY", "sk-synth-0123456789abcdef")
    with open_provider("together", "http://127.0.0.1:9/together/v1") as provider:
        assert provider.client.key.source == "env SYNTH_API_KEY"
    with open_provider("together", None) as provider:
        assert provider.base_url == "https://api.together.xyz/v1"
    result = invoke("sft", "list", "--provider", "together", "--base-url", "http://127.0.0.1:9",
                    env={"SYNTH_API_KEY": "", "TOGETHER_API_KEY": ""})
    assert "TOGETHER_API_KEY" in result.stderr.splitlines()[0]


# --------------------------------------------------------------------------- OpenAI's access policy


def test_openai_refusing_job_creation_says_why_with_the_dates_and_the_alternatives(tmp_path):
    train = write_train(tmp_path / "train.jsonl")
    with serve_fake() as srv:
        srv.api.fail_next(1, 403, method="POST", path_prefix="/v1/fine_tuning/jobs", body={"error": {
            "message": "You do not have access to fine-tuning.", "type": "invalid_request_error"}})
        result = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", "--base-url", srv.base_url,
                        "--api-key", KEY)
    assert result.exit_code == 1
    first, hint = result.stderr.splitlines()[-2:]
    assert first.startswith("error: ") and "refused to create the job (403)" in first
    assert "2026-05-07" in first and "2026-07-02" in first and "2027-01-06" in first
    assert "You do not have access to fine-tuning." in first
    assert hint.startswith("hint: ") and "--provider together" in hint and "Synth backend" in hint
    with pytest.raises(AccessRefusedError):
        from synth_cli.api.openai_compat import OpenAIProvider
        from synth_cli.api.provider import JobSpec

        with serve_fake() as srv:
            provider = OpenAIProvider(client_for(srv.base_url))
            file_id = provider.upload_file(train).id
            srv.api.fail_next(1, 403, method="POST", path_prefix="/v1/fine_tuning/jobs")
            provider.create_job(JobSpec(model="gpt-4o-mini", training_file=file_id))


# --------------------------------------------------------------------------- pause / resume / metadata


def test_pause_and_resume_and_the_live_view_shows_paused(tmp_path):
    train = write_train(tmp_path / "train.jsonl")
    with serve_fake(steps=50) as srv:
        base = ["--base-url", srv.base_url, "--api-key", KEY]
        created = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", "--quiet", *base)
        job_id = created.stdout.strip()
        srv.api.jobs[job_id]["status"] = "running"
        paused = invoke("sft", "pause", job_id, *base)
        assert paused.exit_code == 0 and paused.stdout.strip() == f"paused {job_id} (status paused)"
        shown = invoke("sft", "show", job_id, "--json", *base)
        assert json.loads(shown.stdout)["status"] == "paused"
        again = invoke("sft", "pause", job_id, *base)
        assert again.exit_code == 1 and "is paused, not running" in again.stderr
        waited = invoke("sft", "poll", job_id, "--timeout", "0.3", "--interval", "0.1", *base)
        assert waited.exit_code == 124 and "is still paused" in waited.stderr
        resumed = invoke("sft", "resume", job_id, *base)
        assert resumed.exit_code == 0 and resumed.stdout.strip() == f"resumed {job_id} (status running)"
        assert [c.path for c in srv.api.calls("POST")][-2:] == [f"/v1/fine_tuning/jobs/{job_id}/pause",
                                                               f"/v1/fine_tuning/jobs/{job_id}/resume"]
    from synth_cli.commands._live import STATUS_STYLE

    assert "paused" in STATUS_STYLE


def test_metadata_records_the_dataset_sha256(tmp_path):
    import hashlib

    train = write_train(tmp_path / "train.jsonl")
    with serve_fake() as srv:
        result = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", "--metadata", "run=7",
                        "--metadata", "team=evals", "--base-url", srv.base_url, "--api-key", KEY, "--json")
        assert result.exit_code == 0, result.stderr
        sent = srv.api.calls("POST", "/v1/fine_tuning/jobs")[0].json["metadata"]
        assert sent == {"dataset": "train.jsonl", "dataset_sha256": hashlib.sha256(train.read_bytes()).hexdigest(),
                        "run": "7", "team": "evals"}
        bad = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", "--metadata", "novalue",
                     "--base-url", srv.base_url, "--api-key", KEY)
        assert bad.exit_code == 2 and "expected KEY=VALUE" in bad.stderr


# --------------------------------------------------------------------------- the cost check


def test_cost_is_shown_before_upload_and_max_cost_uploads_nothing(tmp_path):
    train = write_train(tmp_path / "train.jsonl", lines=40)
    with serve_fake() as srv:
        base = ["--base-url", srv.base_url, "--api-key", KEY]
        refused = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", "--epochs", "3", "--max-cost",
                         "0.0001", *base)
        assert refused.exit_code == 1 and srv.api.files == {}
        assert "above --max-cost $0.0001; nothing was uploaded" in refused.stderr
        assert "tokens per epoch × 3 epochs" in refused.stderr and "(price table, as of 2026-12-01)" in refused.stderr
        ok = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", "--epochs", "3", "--max-cost", "5", *base)
        assert ok.exit_code == 0 and len(srv.api.files) == 1
        # no terminal: never a prompt, even above the confirmation amount
        quiet = invoke("sft", "submit", str(train), "-m", "gpt-4o-mini", *base,
                       env={"SYNTH_CONFIRM_ABOVE_USD": "0"})
        assert quiet.exit_code == 0 and "Start it?" not in quiet.stderr


def test_price_table_rows_and_age():
    from datetime import date

    from synth_cli.api.cost import table_price

    estimate = table_price("together", "Qwen/Qwen3-4B-Instruct-2507", 2_000_000, today=date(2025, 9, 1))
    assert estimate.usd == pytest.approx(0.96) and estimate.as_of == "2025-08-07"
    assert "days old" not in (estimate.note or "")
    stale = table_price("together", "Qwen/Qwen3-4B-Instruct-2507", 1, today=date(2026, 12, 1))
    assert "the price table is 481 days old (as of 2025-08-07)" in stale.note
    assert table_price("openai", "gpt-4o-mini-2024-07-18", 1_000_000).usd == 3.0
    assert table_price("openai", "ft:gpt-4o-mini:org:x:1", 1_000_000).usd == 3.0
    assert table_price("openai", "Qwen/Qwen3-4B-Instruct-2507", 1) is None


def test_sft_submit_waits_for_a_backend_that_is_restarting(tmp_path):
    """Refused connections are retried for SYNTH_CONNECT_RETRY_SECONDS: a backend coming up late is waited for."""
    import os
    import subprocess
    import sys
    import time

    from helpers import devserver as _devserver
    from helpers import _CLI_ENV

    train = write_train(tmp_path / "train.jsonl")
    with _devserver.running_server(tmp_path, step_seconds=0.01) as handle:
        handle.stop()  # down, as during a restart
        env = {k: v for k, v in os.environ.items() if k not in _CLI_ENV}
        env.update(SYNTH_BASE_URL=handle.base_url, SYNTH_API_KEY=handle.api_key, SYNTH_CONNECT_RETRY_SECONDS="60")
        proc = subprocess.Popen([sys.executable, "-m", "synth_cli", "sft", "submit", str(train), "-m", "gpt-4o-mini",
                                 "--quiet"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        assert proc.poll() is None  # still waiting, not failed
        handle.restart()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip().startswith("ftjob-")


def test_sft_pause_and_resume_against_serve(tmp_path):
    import time

    from helpers import devserver as _devserver
    from helpers import run_cli

    train = write_train(tmp_path / "train.jsonl", lines=20)
    with _devserver.running_server(tmp_path, step_seconds=0.3) as srv:
        env = {"SYNTH_BASE_URL": srv.base_url, "SYNTH_API_KEY": srv.api_key}
        job_id = run_cli("sft", "submit", train, "-m", "gpt-4o-mini", "--epochs", "5", "-q", env=env).stdout.strip()
        for _ in range(100):
            shown = json.loads(run_cli("sft", "show", job_id, "--json", env=env).stdout)
            if shown["status"] == "running":
                break
            time.sleep(0.1)
        paused = run_cli("sft", "pause", job_id, env=env)
        assert paused.exit_code == 0 and paused.stdout.strip() == f"paused {job_id} (status paused)", paused.stderr
        follow = run_cli("sft", "poll", job_id, "--timeout", "1", "--interval", "0.2", env=env)
        assert follow.exit_code == 124 and "status paused" in follow.stdout and "still paused" in follow.stderr
        resumed = run_cli("sft", "resume", job_id, env=env)
        assert resumed.exit_code == 0 and "resumed" in resumed.stdout
        assert json.loads(run_cli("sft", "show", job_id, "--json", env=env).stdout)["status"] in ("running",
                                                                                             "succeeded")


def test_the_light_provider_table_agrees_with_the_provider_classes():
    from synth_cli.api.providers import PROVIDER_INFO, provider_class
    from synth_cli.api.provider import PROVIDERS

    assert set(PROVIDER_INFO) == set(PROVIDERS)
    for name, (label, key_var, default_base_url) in PROVIDER_INFO.items():
        cls = provider_class(name)
        assert (cls.label, cls.key_var, cls.default_base_url) == (label, key_var, default_base_url)
