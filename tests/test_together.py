"""Together as a training target: `synth-ai serve`'s /together/v1 driven by the official `together` SDK and
by our own CLI, the conversational-format compile, the cost check before upload."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import openapi as _openapi
from helpers.devserver import running_server
from helpers import invoke, run_cli

MODEL = "Qwen/Qwen3-4B-Instruct-2507"


def write_train(path: Path, lines: int = 12, **extra) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"question {i}"},
                                              {"role": "assistant", "content": f"answer {i}"}], **extra}) + "\n")
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("together")
    with running_server(tmp, step_seconds=0.02) as handle:
        yield handle, tmp


def _env(handle) -> dict[str, str]:
    return {"SYNTH_API_KEY": handle.api_key, "SYNTH_BASE_URL": handle.root_url + "/together/v1",
            "SYNTH_CONNECT_RETRY_SECONDS": "1"}


def _cli(handle, *args, extra_env=None):
    return run_cli(*args, env={**_env(handle), **(extra_env or {})}, timeout=180)


def _files(handle) -> list[dict]:
    import httpx

    r = httpx.get(handle.root_url + "/together/v1/files", headers=handle.headers, timeout=10)
    assert r.status_code == 200
    return r.json()["data"]


# --------------------------------------------------------------------------- the official SDK drives serve


def test_official_sdk_uploads_creates_retrieves_lists_events_and_cancels(served):
    together = pytest.importorskip("together")
    handle, tmp = served
    client = together.Together(api_key=handle.api_key, base_url=handle.root_url + "/together", max_retries=0)
    train = write_train(tmp / "sdk.jsonl")
    uploaded = client.files.upload(file=train, purpose="fine-tune")  # presigned Location, PUT, preprocess
    assert uploaded.id.startswith("file-") and uploaded.bytes == train.stat().st_size
    assert client.files.retrieve(uploaded.id).filename == "sdk.jsonl"
    assert uploaded.id in [f.id for f in client.files.list().data]
    job = client.fine_tuning.create(training_file=uploaded.id, model=MODEL, n_epochs=20,
                                    lora=True, lora_r=8)
    assert job.id and job.status in ("pending", "queued", "running")
    got = client.fine_tuning.retrieve(job.id)
    assert got.id == job.id and got.model == MODEL and got.training_file == uploaded.id
    assert job.id in [j.id for j in client.fine_tuning.list().data]
    events = client.fine_tuning.list_events(job.id).data
    assert events and events[0].message.startswith("Created fine-tuning job")
    cancelled = client.fine_tuning.cancel(job.id)
    assert cancelled.status in ("cancelled", "cancel_requested")
    assert client.fine_tuning.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.list_checkpoints(job.id).data is not None


def test_answers_match_the_together_schemas(served):
    import httpx

    handle, tmp = served
    base = handle.root_url + "/together/v1"
    h = handle.headers
    train = write_train(tmp / "schema.jsonl")
    r = httpx.post(base + "/files/upload", headers=h, timeout=30,
                   data={"purpose": "fine-tune", "file_name": "schema.jsonl", "file_type": "jsonl"},
                   files={"file": ("schema.jsonl", train.read_bytes(), "application/jsonl")})
    assert r.status_code == 200, r.text
    assert _openapi.together_errors("FileResponse", r.json()) == []
    file_id = r.json()["id"]
    body = {"model": MODEL, "training_file": file_id, "n_epochs": 1,
            "training_type": {"type": "Lora", "lora_r": 8, "lora_alpha": 16},
            "training_method": {"method": "sft", "train_on_inputs": "auto"}}
    assert _openapi.together_request_errors("/fine-tunes", "post", body) == []
    created = httpx.post(base + "/fine-tunes", headers=h, json=body, timeout=30)
    assert created.status_code == 200, created.text
    assert _openapi.together_errors("FinetuneResponseTruncated", created.json()) == []
    job_id = created.json()["id"]
    import time

    for _ in range(400):
        job = httpx.get(base + f"/fine-tunes/{job_id}", headers=h, timeout=10).json()
        if job["status"] in ("completed", "error", "cancelled"):
            break
        time.sleep(0.05)
    assert job["status"] == "completed" and job["model_output_name"]
    assert _openapi.together_errors("FinetuneResponse", job) == []
    events = httpx.get(base + f"/fine-tunes/{job_id}/events", headers=h, timeout=10).json()
    assert _openapi.together_errors("FinetuneListEvents", events) == []
    checkpoints = httpx.get(base + f"/fine-tunes/{job_id}/checkpoints", headers=h, timeout=10).json()
    assert _openapi.together_errors("FinetuneListCheckpoints", checkpoints) == [] and checkpoints["data"]
    listed = httpx.get(base + "/fine-tunes", headers=h, timeout=10).json()
    assert _openapi.together_errors("FinetuneTruncatedList", listed) == []
    limits = httpx.get(base + "/fine-tunes/models/limits", params={"model_name": MODEL}, headers=h, timeout=10)
    assert _openapi.together_errors("FineTuneModelLimits", limits.json()) == []
    assert httpx.get(base + "/fine-tunes/models/limits", params={"model_name": "nope/nope"}, headers=h,
                     timeout=10).status_code == 404
    metrics = httpx.get(base + f"/fine-tunes/{job_id}/metrics", headers=h, timeout=10).json()["metrics"]
    assert metrics and all("train/loss" in m and "train/global_step" in m for m in metrics)
    files = httpx.get(base + "/files", headers=h, timeout=10).json()
    assert _openapi.together_errors("FileList", files) == []
    # the same state under both APIs: the OpenAI surface sees the job
    assert httpx.get(handle.base_url + f"/fine_tuning/jobs/{job_id}", headers=h, timeout=10).status_code == 200
    # a presigned URL is its own credential: a forged signature is refused
    bad = httpx.put(base + f"/_uploads/{file_id}?part=0&expires=9999999999&sig=00", content=b"x", timeout=10)
    assert bad.status_code == 403


# --------------------------------------------------------------------------- our client and CLI


def test_sft_run_provider_together_ends_in_a_model_with_the_same_live_view(served):
    handle, tmp = served
    train = write_train(tmp / "run.jsonl", parallel_tool_calls=False)
    result = _cli(handle, "sft", "run", str(train), "-m", MODEL, "--epochs", "2", "--param", "lora_r=16",
                  "--param", "n_checkpoints=2", "--param", "warmup_ratio=0.1", "--interval", "0.1")
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "status:           succeeded" in out and "fine-tuned model: ft:" + MODEL in out
    assert "Created fine-tuning job" in out and out.count("Created fine-tuning job") == 1
    lines = [line.split("  ", 1)[1] for line in out.splitlines() if line[:4].isdigit() and "  " in line]
    assert len(lines) == len(set(lines)), "every event once"
    err = result.stderr
    assert "≈ 48 tokens per epoch × 2 epochs" in err.replace(",", "") or "tokens per epoch × 2 epochs" in err
    assert "estimated price: ≈ $" in err and "as of 2025-08-07" in err
    assert "Together AI's estimate" in err and "limits: context 32,768 tokens" in err
    assert "parallel_tool_calls removed" in err  # converted, and said so


def test_together_client_follows_the_multipart_flow(served, tmp_path):
    from synth_cli.api.client import ApiClient
    from synth_cli.api.together import TogetherProvider

    handle, _ = served
    train = write_train(tmp_path / "big.jsonl", lines=400)
    with ApiClient(base_url=handle.root_url + "/together/v1", api_key=handle.api_key) as client:
        provider = TogetherProvider(client)
        provider.multipart_threshold = 1024
        provider.min_part = provider.target_part = 4096
        seen = []
        obj = provider.upload_file(train, progress=lambda done, total: seen.append((done, total)))
        assert obj.bytes == train.stat().st_size
        content = client.request("GET", f"files/{obj.id}/content").content
        assert content == train.read_bytes()
        assert seen[-1] == (train.stat().st_size, train.stat().st_size)
        assert train.stat().st_size > 4 * 4096  # several parts


def test_max_cost_below_the_estimate_uploads_nothing(served):
    handle, tmp = served
    before = len(_files(handle))
    train = write_train(tmp / "costly.jsonl")
    result = _cli(handle, "sft", "run", str(train), "-m", MODEL, "--max-cost", "0.00001")
    assert result.exit_code == 1
    assert "above --max-cost" in result.stderr and "nothing was uploaded" in result.stderr
    assert len(_files(handle)) == before
    # a model with no known price cannot be held to --max-cost: refused, nothing uploaded
    result = _cli(handle, "sft", "submit", str(train), "-m", "Qwen/Qwen3-0.6B", "--max-cost", "5")
    assert result.exit_code == 1 and "no price is known" in result.stderr
    assert len(_files(handle)) == before


def test_limits_are_checked_before_upload(served):
    handle, tmp = served
    before = len(_files(handle))
    train = write_train(tmp / "limits.jsonl")
    result = _cli(handle, "sft", "submit", str(train), "-m", MODEL, "--epochs", "30")
    assert result.exit_code == 2 and "trains at most 20 epochs" in result.stderr
    result = _cli(handle, "sft", "submit", str(train), "-m", MODEL, "--param", "lora_r=999")
    assert result.exit_code == 2 and "LoRA rank up to 64" in result.stderr
    result = _cli(handle, "sft", "submit", str(train), "-m", "nope/unknown")
    assert result.exit_code == 2 and "does not fine-tune 'nope/unknown'" in result.stderr
    result = _cli(handle, "sft", "submit", str(train), "-m", MODEL, "--metadata", "run=1")
    assert result.exit_code == 2 and "no job metadata" in result.stderr
    result = _cli(handle, "sft", "submit", str(train), "-m", MODEL, "--param", "bogus=1")
    assert result.exit_code == 2 and "not a Together fine-tuning parameter" in result.stderr
    assert len(_files(handle)) == before


def test_refused_lines_name_line_and_reason_and_nothing_is_uploaded(served):
    handle, tmp = served
    before = len(_files(handle))
    train = tmp / "refused.jsonl"
    write_train(train)
    with open(train, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"messages": [{"role": "user", "content": "hi", "name": "bob"},
                                          {"role": "assistant", "content": "yo"}]}) + "\n")
        fh.write(json.dumps({"messages": [{"role": "user", "content": "x"},
                                          {"role": "assistant", "content": None, "function_call":
                                           {"name": "f", "arguments": "{}"}}]}) + "\n")
    result = _cli(handle, "sft", "submit", str(train), "-m", MODEL, "--no-validate")
    assert result.exit_code == 1
    assert "line 13: message 'name' is not accepted by Together" in result.stderr
    assert len(_files(handle)) == before
    result = _cli(handle, "sft", "validate", str(train), "--provider", "together")
    assert result.exit_code == 1
    assert "message 'name' is not accepted" in result.stdout and "legacy function calling" in result.stdout


def test_compile_converts_or_refuses_never_drops(tmp_path):
    from synth_cli.dataset.together import compile_file

    src = tmp_path / "in.jsonl"
    rows = [
        {"messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": [
            {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}, {"role": "assistant", "content": "c"}],
         "parallel_tool_calls": True},
        {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:x"}}]},
                      {"role": "assistant", "content": "a cat"}]},
        {"messages": [{"role": "assistant", "content": "first"}]},
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "42"}, {"role": "assistant", "content": "42"}],
         "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]},
    ]
    src.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    report = compile_file(src, tmp_path / "out.jsonl", tools_ok=True, vision=False)
    assert not report.ok and not (tmp_path / "out.jsonl").exists()  # nothing written while any line is refused
    assert [(line, reason.split(",")[0]) for line, reason in report.refused] == [
        (2, "an image in the example"), (3, "the conversation starts with 'assistant'; Together wants system or "
                                           "user first")]
    src.write_text("\n".join(json.dumps(r) for r in (rows[0], rows[3])) + "\n")
    report = compile_file(src, tmp_path / "out.jsonl", tools_ok=True)
    assert report.ok and report.examples == 2
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out[0] == {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "ab"},
                                   {"role": "assistant", "content": "c"}]}
    assert out[1]["tools"] and out[1]["messages"][1]["tool_calls"][0]["id"] == "c1"
    assert set(report.conversions) == {"developer messages became system messages", "text parts joined into one "
                                       "string", "parallel_tool_calls removed (an OpenAI request option)"}
    report = compile_file(src, None, tools_ok=False)
    assert [r for _, r in report.refused] == ["tools in the example, but the base model has no tool-calling support"]
    report = compile_file(src, None, context_length=10)
    assert len(report.refused) == 2 and "context length (10)" in report.refused[0][1]


def test_job_request_maps_common_flags_and_params_and_matches_the_schema():
    from synth_cli.api.client import ApiClient
    from synth_cli.api.provider import JobSpec
    from synth_cli.api.together import TogetherProvider
    from synth_cli.errors import UsageError

    with ApiClient(base_url="http://127.0.0.1:9/together/v1", api_key="k" * 20) as client:
        provider = TogetherProvider(client)
        provider._limits[MODEL] = None
        spec = JobSpec(model=MODEL, training_file="file-1", validation_file="file-2", suffix="s", seed=3, epochs=2,
                       batch_size=16, learning_rate_multiplier=2.0,
                       params={"lora_r": "32", "n_checkpoints": "3", "warmup_ratio": "0.05",
                               "train_on_inputs": "false", "lr_scheduler": "cosine", "packing": "false"})
        body = provider.build_job_request(spec)
        assert body["learning_rate"] == pytest.approx(2e-5) and body["random_seed"] == 3
        assert body["training_type"] == {"type": "Lora", "lora_r": 32, "lora_alpha": 64}
        assert body["training_method"] == {"method": "sft", "train_on_inputs": False}
        assert body["n_checkpoints"] == 3 and body["warmup_ratio"] == 0.05 and body["packing"] is False
        assert _openapi.together_request_errors("/fine-tunes", "post", body) == []
        full = provider.build_job_request(JobSpec(model=MODEL, training_file="f", params={"lora": "false"}))
        assert full["training_type"] == {"type": "Full"}
        for params, needle in (({"lora": "maybe"}, "true or false"), ({"warmup_ratio": "2"}, "between 0 and 1"),
                               ({"n_checkpoints": "x"}, "an integer"), ({"lr_scheduler": "step"}, "linear, cosine"),
                               ({"lora": "false", "lora_r": "8"}, "no lora_\\* parameters")):
            with pytest.raises(UsageError, match=needle):
                provider.build_job_request(JobSpec(model=MODEL, training_file="f", params=params))


def test_params_command_documents_each_provider():
    result = invoke("sft", "params", "--provider", "together", "--json")
    keys = {p["key"] for p in json.loads(result.stdout)["params"]}
    assert {"lora", "lora_r", "n_checkpoints", "warmup_ratio", "train_on_inputs"} <= keys
    result = invoke("sft", "params", "--provider", "openai", "--quiet")
    assert result.stdout.split() == ["n_epochs", "batch_size", "learning_rate_multiplier"]


def test_the_live_view_on_a_terminal_is_the_same_for_together(tmp_path):
    import re

    from tests.test_sft_tty import SPARK, SPINNER, Terminal

    train = write_train(tmp_path / "tty.jsonl", lines=24)
    with running_server(tmp_path, step_seconds=0.05) as srv:
        term = Terminal("sft", "run", train, "--provider", "together", "--model", MODEL, "--epochs", "2",
                        "--batch-size", "8", "--interval", "0.2", "--base-url", srv.root_url + "/together/v1",
                        env={"SYNTH_API_KEY": srv.api_key})
        try:
            term.read()
            code = term.close()
        except BaseException:
            term.proc.kill()
            raise
        text = term.text
        assert code == 0, text
        job_id = re.search(r"created fine-tuning job (ftjob-\S+)", text).group(1)
        assert f"fine-tuning {job_id}  ·  {MODEL}" in text
        assert re.search(rf"[{SPINNER}] (queued|running) +elapsed \d", text), text
        steps = [(int(a), int(b)) for a, b in re.findall(r"step (\d+)/(\d+) \(\d+%\)", text)]
        assert steps and steps[-1][0] == steps[-1][1]
        assert re.findall(rf"train loss (\d+\.\d{{4}}) ([{SPARK}]+)", text)  # losses from /metrics
        printed = [m.group(1) for line in term.lines() if (m := re.match(r"\d\d:\d\d:\d\dZ  (.+?)\s*$", line))]
        printed = [p for p in printed if not p.startswith("status ")]
        assert printed[0].startswith("Created fine-tuning job") and len(printed) == len(set(printed))
        assert re.search(r"status +succeeded", text[text.rindex("status "):])
