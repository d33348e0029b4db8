"""End to end: `synth-ai filter` → `synth-ai sft run` against `synth-ai serve` in a subprocess.

Also: injected 5xx/429 (`serve --fail-rate/--rate-limit`), a server restart while following,
Ctrl-C while polling, and the contract (requests the client sends validate against the OpenAPI
document's request schemas).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

from helpers import openapi as _openapi
from helpers import FIXTURE_DB, run_cli

from helpers import devserver as _devserver
running_server = _devserver.running_server

ANSI = re.compile(r"\x1b\[")
MODEL = "Qwen/Qwen3-4B-Instruct-2507"


def env_for(srv) -> dict:
    return {"SYNTH_BACKEND_BASE_URL": srv.base_url, "SYNTH_BACKEND_API_KEY": srv.api_key}


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    """Training data written by `synth-ai filter` from the fixture trace DB."""
    out = tmp_path_factory.mktemp("data") / "train.jsonl"
    res = run_cli("filter", "--db", FIXTURE_DB, "--min-reward", "1", "--output", out)
    assert res.exit_code == 0, res.output
    assert out.stat().st_size > 0
    return out


def server_jobs(srv) -> list[dict]:
    r = httpx.get(srv.base_url + "/fine_tuning/jobs", params={"limit": 100},
                  headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def server_files(srv) -> list[dict]:
    """The files uploaded (not the result files succeeded jobs add)."""
    r = httpx.get(srv.base_url + "/files", params={"purpose": "fine-tune"},
                  headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def spawn(*args, env: dict) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTH_", "DEFAULT_DEV"))}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "synth_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def read_until(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> list[str]:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if rx.search(line):
            return lines
    raise AssertionError(f"{pattern!r} never appeared in: {''.join(lines)}")


# --------------------------------------------------------------------------- the pipeline


def test_filter_then_sft_run_plain_and_json(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.01) as srv:
        res = run_cli("sft", "run", train_file, "--model", MODEL, "--epochs", "2", "--suffix", "e2e",
                      "--interval", "0.2", env=env_for(srv))
        assert res.exit_code == 0, res.output
        assert not ANSI.search(res.stdout) and not ANSI.search(res.stderr)
        (job,) = server_jobs(srv)
        assert job["status"] == "succeeded"
        assert job["fine_tuned_model"] == f"ft:{MODEL}:e2e:{job['id']}"
        assert f"fine-tuned model: {job['fine_tuned_model']}" in res.stdout
        assert re.search(r"^status: +succeeded$", res.stdout, re.M)
        for line in res.stdout.splitlines():
            if ":" in line.split("  ")[0] and not line.startswith(("status:", "fine-tuned", "trained", "wall")):
                assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ", line), line
        # every event of the job appears exactly once
        events = run_cli("sft", "events", job["id"], "--json", env=env_for(srv)).json()["events"]
        for event in events:
            assert sum(line.endswith("  " + " ".join(event["message"].split()))
                       for line in res.stdout.splitlines()) == 1, event["message"]

        res = run_cli("--json", "sft", "run", train_file, "--model", MODEL, "--epochs", "1", "--interval", "0.2",
                      env=env_for(srv))
        assert res.exit_code == 0, res.output
        docs = [json.loads(line) for line in res.stdout.splitlines()]
        assert docs[-1]["object"] == "fine_tuning.job" and docs[-1]["status"] == "succeeded"
        assert docs[:-1] and all(d["object"] == "fine_tuning.job.event" for d in docs[:-1])
        assert len({d["id"] for d in docs[:-1]}) == len(docs) - 1
        assert any(d.get("type") == "metrics" for d in docs[:-1])


def test_submit_poll_and_the_inspection_commands(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.01) as srv:
        env = env_for(srv)
        res = run_cli("sft", "submit", train_file, "--model", MODEL, "--epochs", "2", env=env)
        assert res.exit_code == 0, res.output
        job_id = re.search(r"created fine-tuning job (\S+)", res.stdout).group(1)
        assert f"synth-ai sft poll {job_id}" in res.stdout
        res = run_cli("sft", "poll", job_id, "--interval", "0.2", env=env)
        assert res.exit_code == 0, res.output
        (results_id,) = run_cli("sft", "show", job_id, "--json", env=env).json()["result_files"]
        assert re.search(rf"^result files +{results_id}\s*$", run_cli("sft", "show", job_id, env=env).stdout, re.M)
        for command in ("show", "checkpoints", "predictions", "trends"):
            res = run_cli("sft", command, job_id, env=env)
            assert res.exit_code == 0, (command, res.output)
            assert not ANSI.search(res.stdout)
        assert len(run_cli("sft", "checkpoints", job_id, "--json", env=env).json()["checkpoints"]) == 2  # one per epoch
        trends = run_cli("sft", "trends", job_id, "--json", env=env).json()
        assert [t["epoch"] for t in trends["trends"]] == sorted(t["epoch"] for t in trends["trends"])
        res = run_cli("sft", "list", env=env)
        assert job_id in res.stdout


def test_events_of_a_fresh_job_whose_timestamps_all_tie(tmp_path, train_file):
    """Right after creation a job's events share one second: `sft events` still lists them, oldest first."""
    with running_server(tmp_path, step_seconds=60) as srv:
        env = env_for(srv)
        job_id = run_cli("--json", "sft", "submit", train_file, "--model", MODEL, env=env).json()["id"]
        res = run_cli("sft", "events", job_id, env=env)
        assert res.exit_code == 0, res.output
        messages = [line.split("  ", 1)[1] for line in res.stdout.splitlines()]
        assert messages[:2] == [f"Created fine-tuning job: {job_id}", messages[1]]
        assert messages[1].startswith("Validating training file: file-") and len(messages) == 2
        listed = run_cli("sft", "events", job_id, "--json", env=env).json()["events"]
        assert [e["message"] for e in listed] == messages


# --------------------------------------------------------------------------- faults


def test_survives_injected_5xx_and_429_and_creates_one_job(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.01, fail_rate=0.3, rate_limit=5) as srv:
        res = run_cli("sft", "run", train_file, "--model", MODEL, "--epochs", "1", "--interval", "0.1",
                      env=env_for(srv), timeout=180)
        assert res.exit_code == 0, res.output
    with running_server(tmp_path) as srv:  # same data dir, no faults: count what was created
        jobs = server_jobs(srv)
        assert len(jobs) == 1 and jobs[0]["status"] == "succeeded"
        assert len(server_files(srv)) == 1


def test_server_restart_mid_poll(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.05) as srv:
        env = env_for(srv)
        job_id = run_cli("--json", "sft", "submit", train_file, "--model", MODEL, "--epochs", "3", "--batch-size", "4",
                         env=env).json()["id"]
        proc = spawn("sft", "poll", job_id, "--interval", "0.2", env=env)
        try:
            read_until(proc, r"Step \d+")
            srv.restart()
            out, err = proc.communicate(timeout=180)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert re.search(r"^status: +succeeded$", out, re.M)
        assert "Traceback" not in err


def test_ctrl_c_keeps_the_job_and_poll_resumes(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.05) as srv:
        env = {"SYNTH_BACKEND_API_KEY": srv.api_key}
        proc = spawn("sft", "run", train_file, "--model", MODEL, "--epochs", "3", "--batch-size", "4",
                     "--interval", "0.2", "--base-url", srv.base_url, env=env)
        try:
            read_until(proc, r"status .*running|Step \d+")
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 130, err
        (job,) = server_jobs(srv)
        assert f"synth-ai sft poll {job['id']} --base-url {srv.base_url}" in err
        assert "keeps running" in err and "Traceback" not in err
        assert job["status"] in ("queued", "running")
        res = run_cli("sft", "poll", job["id"], "--base-url", srv.base_url, "--interval", "0.2", env=env, timeout=180)
        assert res.exit_code == 0, res.output
        assert server_jobs(srv)[0]["status"] == "succeeded"


# --------------------------------------------------------------------------- bad input


def test_bad_input_against_serve(tmp_path, train_file):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n', encoding="utf-8")
    with running_server(tmp_path) as srv:
        env = env_for(srv)
        # refused locally with the validation report: nothing uploaded
        res = run_cli("sft", "submit", bad, "--model", MODEL, env=env)
        assert res.exit_code == 1 and "Traceback" not in res.output
        assert "not valid fine-tuning data" in res.stderr and "line 2" in res.stderr.lower()
        assert server_files(srv) == []
        # --no-validate: the backend refuses the job naming the line
        res = run_cli("sft", "submit", bad, "--model", MODEL, "--no-validate", env=env)
        assert res.exit_code == 1 and "Traceback" not in res.output
        # progress lines ("uploading …", "uploaded …") may precede it; the error is one line
        errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
        assert len(errors) == 1 and re.search(r"line 2", errors[0], re.I)
        assert "uploaded bad.jsonl as file-" in res.stderr
        # wrong key: masked, with its source
        wrong = "sk-definitely-wrong-key-123456"
        res = run_cli("sft", "list", env={**env, "SYNTH_BACKEND_API_KEY": wrong})
        assert res.exit_code == 1 and wrong not in res.output
        assert "sk-def…3456" in res.stderr and "env SYNTH_BACKEND_API_KEY" in res.stderr
        # unknown job
        res = run_cli("sft", "poll", "ftjob-nope", env=env)
        assert res.exit_code == 1 and "404" in res.stderr and "no such endpoint or job" in res.stderr
        # --epochs 0, a directory
        assert run_cli("sft", "run", train_file, "--model", MODEL, "--epochs", "0", env=env).exit_code == 2
        res = run_cli("sft", "run", tmp_path, "--model", MODEL, env=env)
        assert res.exit_code == 2 and "is a directory" in res.stderr
        assert server_jobs(srv) == []
    # nothing listening any more
    res = run_cli("sft", "list", env=env)
    assert res.exit_code == 1 and "cannot connect" in res.stderr and "synth-ai serve" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 2


# --------------------------------------------------------------------------- contract


class Recording(httpx.BaseTransport):
    def __init__(self):
        self.inner = httpx.HTTPTransport()
        self.requests: list[tuple[httpx.Request, bytes]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        body = b"".join(request.stream) if request.method == "POST" else b""
        self.requests.append((request, body))
        request.stream = httpx.ByteStream(body)
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def _multipart_fields(request: httpx.Request, body: bytes) -> dict:
    boundary = request.headers["content-type"].split("boundary=", 1)[1].encode()
    fields = {}
    for part in body.split(b"--" + boundary)[1:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head).group(1).decode()
        fields[name] = value[:-2].decode("utf-8") if b"filename=" not in head else "<binary>"
    return fields


def test_requests_match_the_openapi_request_schemas(tmp_path, train_file):
    from synth_cli.api.client import ApiClient
    from synth_cli.api.files import Files
    from synth_cli.api.fine_tuning import FineTuning
    from synth_cli.api.follow import JobFollower
    from synth_cli.api.openai_compat import OpenAIProvider

    with running_server(tmp_path, step_seconds=0.01) as srv:
        rec = Recording()
        with ApiClient(base_url=srv.base_url, api_key=srv.api_key, transport=rec) as client:
            ft = FineTuning(client)
            file_id = Files(client).upload(train_file)["id"]
            job = ft.create_job(MODEL, file_id, validation_file=file_id, suffix="c", seed=1, n_epochs=1,
                                batch_size=2, learning_rate_multiplier=0.5, metadata={"k": "v"})
            legacy = ft.create_job(MODEL, file_id, hyperparameters={"n_epochs": 1})
            list(JobFollower(OpenAIProvider(client), job["id"], interval=0.05))
            ft.cancel(legacy["id"])
            ft.list_jobs(limit=5)
            ft.checkpoints(job["id"], limit=10)
        doc = _openapi.document()
        for request, body in rec.requests:
            path = "/" + request.url.path.split("/v1/", 1)[1]
            assert request.headers["authorization"] == f"Bearer {srv.api_key}"
            if request.method == "POST" and path == "/files":
                fields = _multipart_fields(request, body)
                assert _openapi.errors("CreateFileRequest", fields) == []
                assert int(request.headers["content-length"]) == len(body)
            elif request.method == "POST" and path == "/fine_tuning/jobs":
                assert request.headers["content-type"] == "application/json"
                assert _openapi.errors("CreateFineTuningJobRequest", json.loads(body)) == []
                assert request.headers.get("idempotency-key")
            # query parameters: only the documented ones, with the documented types
            template = re.sub(r"(ftjob|file)-[^/]+", "{id}", path)
            spec_path = next(p for p in doc["paths"] if re.sub(r"\{[^}]+\}", "{id}", p) == template)
            params = {p["name"]: p for p in doc["paths"][spec_path][request.method.lower()].get("parameters", [])
                      if p.get("in") == "query"}
            for name, value in request.url.params.items():
                assert name in params, (path, name)
                if params[name]["schema"].get("type") == "integer":
                    assert value.isdigit()
        assert {r.method + " " + r.url.path.split("/v1")[1].split("/")[1] for r, _ in rec.requests} >= {
            "POST files", "POST fine_tuning", "GET fine_tuning"}
