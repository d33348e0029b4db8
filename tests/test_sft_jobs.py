"""`synth-ai sft submit|poll|run|list|show|events|cancel|checkpoints|predictions|trends` as a user runs them.

These talk to the scriptable API of tests/helpers/fakeapi.py on 127.0.0.1 (deterministic job progress,
faults on cue); tests/test_sft_e2e.py runs the same commands against `synth-ai serve`.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers.fakeapi import KEY, free_port, serve_fake
from helpers import invoke

ANSI = re.compile(r"\x1b\[")


def write_jsonl(path, lines: int = 4) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                              {"role": "assistant", "content": f"a{i}"}]}) + "\n")


@pytest.fixture
def fake():
    with serve_fake(steps=3) as srv:
        yield srv


@pytest.fixture
def train(tmp_path):
    path = tmp_path / "train.jsonl"
    write_jsonl(path)
    return path


def sft(srv, *args, key: str = KEY):
    return invoke("sft", *args, "--base-url", srv.base_url, env={"SYNTH_API_KEY": key})


def test_submit_prints_job_id_and_the_command_to_follow(fake, train):
    res = sft(fake, "submit", train, "--model", "gpt-4o-mini", "--no-validate", "--epochs", "3", "--suffix", "x")
    assert res.exit_code == 0, res.output
    (job_id,) = fake.api.jobs
    assert f"created fine-tuning job {job_id}" in res.stdout
    assert f"synth-ai sft poll {job_id} --base-url {fake.base_url}" in res.stdout
    assert "uploaded train.jsonl as file-" in res.stderr
    body = fake.api.calls("POST", "/v1/fine_tuning/jobs")[0].json
    assert body["method"]["supervised"]["hyperparameters"] == {"n_epochs": 3} and body["suffix"] == "x"
    # --quiet: just the id; --json: the job object
    res = invoke("-q", "sft", "submit", train, "-m", "m", "--no-validate", "--base-url", fake.base_url,
                 "--api-key", KEY)
    assert res.exit_code == 0 and re.fullmatch(r"ftjob-\d+\n", res.stdout)
    res = sft(fake, "submit", train, "-m", "m", "--no-validate", "--json")
    assert res.json()["object"] == "fine_tuning.job"


def test_submit_with_a_file_id_skips_the_upload(fake, train):
    file_id = sft(fake, "submit", train, "-m", "m", "--no-validate", "--json").json()["training_file"]
    uploads = len(fake.api.calls("POST", "/v1/files"))
    res = sft(fake, "submit", file_id, "-m", "m", "--validation-file", file_id, "--json")
    assert res.exit_code == 0, res.output
    assert len(fake.api.calls("POST", "/v1/files")) == uploads
    job = res.json()
    assert job["training_file"] == file_id and job["validation_file"] == file_id


def test_run_plain_output_has_no_ansi_and_ends_with_a_summary(fake, train):
    res = sft(fake, "run", train, "--model", "gpt-4o-mini", "--no-validate", "--interval", "0.05")
    assert res.exit_code == 0, res.output
    (job_id,) = fake.api.jobs
    assert not ANSI.search(res.stdout + res.stderr)
    lines = res.stdout.splitlines()
    stamped = [line for line in lines if re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ  ", line)]
    messages = [e["message"] for e in fake.api.events[job_id]]
    for message in messages:  # every event exactly once, in order
        assert sum(line.endswith("  " + message) for line in stamped) == 1
    positions = [next(i for i, line in enumerate(lines) if line.endswith("  " + m)) for m in messages]
    assert positions == sorted(positions)
    assert any("status running -> succeeded" in line for line in lines)
    assert f"fine-tuned model: ft:gpt-4o-mini:synth:{job_id}" in res.stdout
    assert re.search(r"^status: +succeeded$", res.stdout, re.M)
    assert re.search(r"^trained tokens: +1,234$", res.stdout, re.M)
    assert re.search(r"^wall time: +\S+", res.stdout, re.M)


def test_run_json_is_ndjson_events_then_the_job(fake, train):
    res = sft(fake, "run", train, "-m", "gpt-4o-mini", "--no-validate", "--interval", "0.05", "--json")
    assert res.exit_code == 0, res.output
    docs = [json.loads(line) for line in res.stdout.splitlines()]
    (job_id,) = fake.api.jobs
    assert [d["id"] for d in docs[:-1]] == [e["id"] for e in fake.api.events[job_id]]
    assert all(d["object"] == "fine_tuning.job.event" for d in docs[:-1])
    assert docs[-1]["object"] == "fine_tuning.job" and docs[-1]["status"] == "succeeded"


def test_quiet_run_prints_only_the_model(fake, train):
    res = invoke("-q", "sft", "run", train, "-m", "gpt-4o-mini", "--no-validate", "--interval", "0.05",
                 "--base-url", fake.base_url, "--api-key", KEY)
    assert res.exit_code == 0, res.output
    (job_id,) = fake.api.jobs
    assert res.stdout == f"ft:gpt-4o-mini:synth:{job_id}\n"


def test_failed_job_exits_1_with_the_jobs_error(fake, train):
    res = sft(fake, "run", train, "-m", "will-fail", "--no-validate", "--interval", "0.05")
    assert res.exit_code == 1
    assert re.search(r"^status: +failed$", res.stdout, re.M)
    assert "error: job ftjob-" in res.stderr and "failed: Line 3: assistant message missing" in res.stderr
    assert "code invalid_training_file" in res.stderr
    assert "ERROR: Training failed" in res.stdout


def test_cancel_then_poll_exits_1(fake, train):
    job_id = sft(fake, "submit", train, "-m", "m", "--no-validate", "--json").json()["id"]
    res = sft(fake, "cancel", job_id)
    assert res.exit_code == 0 and f"cancelled {job_id} (status cancelled)" in res.stdout
    res = sft(fake, "poll", job_id, "--interval", "0.05")
    assert res.exit_code == 1 and f"job {job_id} was cancelled" in res.stderr
    res = sft(fake, "cancel", job_id)  # already over: the server's message, one line
    assert res.exit_code == 1 and "already cancelled" in res.stderr and res.stderr.count("\n") <= 2


def test_timeout_stops_waiting_but_does_not_cancel(fake, train):
    job_id = sft(fake, "submit", train, "-m", "m", "--no-validate", "--json").json()["id"]
    fake.api.hold[job_id] = True
    started = time.monotonic()
    res = sft(fake, "poll", job_id, "--interval", "0.1", "--timeout", "0.5")
    assert time.monotonic() - started < 5
    assert res.exit_code == 124
    assert "stopped waiting after" in res.stderr and "not cancelled" in res.stderr
    assert f"synth-ai sft poll {job_id}" in res.stderr
    assert fake.api.jobs[job_id]["status"] == "validating_files"
    assert not fake.api.calls("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")


def test_list_show_events_checkpoints(fake, train):
    job_id = sft(fake, "run", train, "-m", "gpt-4o-mini", "--no-validate", "--interval", "0.05", "--json") \
        .stdout.splitlines()[-1]
    job_id = json.loads(job_id)["id"]
    res = sft(fake, "list")
    assert res.exit_code == 0 and job_id in res.stdout and "succeeded" in res.stdout
    assert [j["id"] for j in sft(fake, "list", "--json").json()["jobs"]] == [job_id]
    sft(fake, "submit", train, "-m", "m", "--no-validate")
    listed_doc = sft(fake, "list", "--limit", "1", "--json").json()
    listed = listed_doc["jobs"]
    assert len(listed) == 1 and listed[0]["id"] != job_id
    assert listed_doc["has_more"] is True
    assert "more with --limit" in sft(fake, "list", "--limit", "1").stdout
    res = sft(fake, "show", job_id)
    assert res.exit_code == 0 and "fine-tuned model" in res.stdout and f"ft:gpt-4o-mini:synth:{job_id}" in res.stdout
    assert sft(fake, "show", job_id, "--json").json()["id"] == job_id
    res = sft(fake, "events", job_id)
    assert res.exit_code == 0
    assert [line.split("  ", 1)[1] for line in res.stdout.splitlines()] == \
        [e["message"] for e in fake.api.events[job_id]]
    assert [e["id"] for e in sft(fake, "events", job_id, "--json").json()["events"]] == \
        [e["id"] for e in fake.api.events[job_id]]
    res = sft(fake, "checkpoints", job_id)
    assert res.exit_code == 0 and f"ftckpt-{job_id}-1" in res.stdout and "0.5000" in res.stdout
    assert sft(fake, "checkpoints", job_id, "--json").json()["checkpoints"][0]["step"] == 2


def test_events_follow_streams_until_the_end(fake, train):
    job_id = sft(fake, "submit", train, "-m", "m", "--no-validate", "--json").json()["id"]
    res = sft(fake, "events", job_id, "--follow", "--interval", "0.05", "--json")
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["id"] for line in res.stdout.splitlines()] == [e["id"] for e in fake.api.events[job_id]]


def test_predictions_and_trends(fake, train):
    job_id = sft(fake, "submit", train, "-m", "m", "--no-validate", "--json").json()["id"]
    res = sft(fake, "predictions", job_id, "--epoch", "2", "--limit", "1")
    assert res.exit_code == 0, res.output
    assert "answer 0" in res.stdout and "rows 1-1 of 2" in res.stdout and "--offset 1" in res.stdout
    call = fake.api.calls("GET", f"/v1/fine_tuning/jobs/{job_id}/predictions")[-1]
    assert call.query == {"epoch": "2", "limit": "1", "offset": "0"}
    data = sft(fake, "predictions", job_id, "--offset", "1", "--json").json()
    assert data["total"] == 4 and len(data["predictions"]) == 3 and data["has_more"] is False
    res = sft(fake, "predictions", job_id, "--offset", "9")
    assert res.exit_code == 0 and res.stdout.strip() == f"no predictions past --offset 9: {job_id} has 4"
    res = sft(fake, "trends", job_id)
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    epoch1 = next(line for line in lines if line.strip().startswith("1 "))
    epoch2 = next(line for line in lines if line.strip().startswith("2 "))
    assert epoch1.count("█") == 12 and epoch2.count("█") == 24  # 0.4 and 0.8 of 30 cells
    assert "overall improvement: +0.500" in res.stdout
    assert sft(fake, "trends", job_id, "--json").json()["trends"][1]["epoch"] == 2


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("args", [
    ("--epochs", "0"), ("--epochs", "51"), ("--batch-size", "0"), ("--learning-rate-multiplier", "0"),
    ("--learning-rate-multiplier", "-1"), ("--interval", "0"), ("--timeout", "-5"),
])
def test_bad_numbers_are_usage_errors(train, args):
    res = invoke("sft", "run", train, "-m", "m", *args, "--api-key", KEY, "--base-url", "http://127.0.0.1:9")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: ") and "Traceback" not in res.output


def test_directory_and_missing_file_are_refused_before_any_request(fake, tmp_path):
    res = sft(fake, "submit", tmp_path, "-m", "m")
    assert res.exit_code == 2 and "is a directory" in res.stderr
    res = sft(fake, "run", tmp_path / "nope.jsonl", "-m", "m")
    assert res.exit_code == 2 and "no such file" in res.stderr
    res = sft(fake, "submit", "file-abc", "-m", "m", "--validation-file", tmp_path)
    assert res.exit_code == 2 and "validation file" in res.stderr
    assert fake.api.requests == []


def test_missing_key(train):
    res = invoke("sft", "list", "--base-url", "http://127.0.0.1:9")
    assert res.exit_code == 1
    assert res.stderr.splitlines()[0] == ("error: no API key configured (tried --api-key, then SYNTH_BACKEND_API_KEY, "
                                          "SYNTH_API_KEY, OPENAI_API_KEY and DEFAULT_DEV_API_KEY in the environment and .env)")
    assert "--api-key" in res.stderr and "SYNTH_BACKEND_API_KEY" in res.stderr


def test_wrong_key_shows_masked_key_and_source_never_the_key(fake, train, tmp_path):
    wrong = "sk-wrong-0123456789abcdefXYZ"
    res = invoke("sft", "list", "--base-url", fake.base_url, env={"SYNTH_BACKEND_API_KEY": wrong})
    assert res.exit_code == 1
    assert wrong not in res.output
    assert "rejected the API key" in res.stderr and "sk-wro…fXYZ" in res.stderr
    assert "env SYNTH_BACKEND_API_KEY" in res.stderr
    res = invoke("sft", "list", "--base-url", fake.base_url, "--api-key", wrong)
    assert wrong not in res.output and "from --api-key" in res.stderr
    (tmp_path / ".env").write_text(f"SYNTH_API_KEY={wrong}\n")
    res = invoke("sft", "list", "--base-url", fake.base_url)
    assert wrong not in res.output and ".env SYNTH_API_KEY" in res.stderr


def test_unknown_job(fake):
    for command in ("show", "poll", "cancel", "events", "checkpoints", "trends"):
        res = sft(fake, command, "ftjob-doesnotexist")
        assert res.exit_code == 1, (command, res.output)
        lines = res.stderr.splitlines()
        assert lines[0].startswith("error: ") and "ftjob-doesnotexist" in lines[0] and "404" in lines[0]
        assert lines[1].startswith("hint: ") and "no such endpoint or job" in lines[1]


def test_unreachable_server_is_one_line_and_a_hint():
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    res = invoke("sft", "list", "--base-url", url, "--api-key", KEY)
    assert time.monotonic() - started < 6
    assert res.exit_code == 1
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and "Traceback" not in res.output
    assert lines[0].startswith(f"error: cannot connect to {url}/v1") and "refused" in lines[0]
    assert "synth-ai serve" in lines[1]


def test_injected_429_and_5xx_create_one_job(fake, train):
    fake.api.fail_next(1, 429, headers={"Retry-After": "1"}, method="POST", path_prefix="/v1/fine_tuning/jobs")
    fake.api.fail_next(2, 503, method="POST", path_prefix="/v1/fine_tuning/jobs")
    fake.api.fail_next(2, 500, method="GET")
    started = time.monotonic()
    res = sft(fake, "run", train, "-m", "gpt-4o-mini", "--no-validate", "--interval", "0.05")
    assert res.exit_code == 0, res.output
    assert time.monotonic() - started >= 1.0  # waited as told
    assert len(fake.api.jobs) == 1 and len(fake.api.calls("POST", "/v1/fine_tuning/jobs")) == 4


# --------------------------------------------------------------------------- Ctrl-C


def _spawn(*args: str, env: dict) -> subprocess.Popen:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTH_", "DEFAULT_DEV"))}
    full.update(env)
    return subprocess.Popen([sys.executable, "-m", "synth_cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=full)


def wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 30) -> list[str]:
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    raise AssertionError(f"{needle!r} never appeared: {lines}")


def test_ctrl_c_leaves_the_job_running_and_poll_resumes(fake, train):
    job_id = sft(fake, "submit", train, "-m", "gpt-4o-mini", "--no-validate", "--json").json()["id"]
    fake.api.hold[job_id] = True
    proc = _spawn("sft", "poll", job_id, "--interval", "0.1", "--base-url", fake.base_url, env={"SYNTH_API_KEY": KEY})
    try:
        wait_for_line(proc, "following")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert f"stopped following {job_id}" in err and "keeps running" in err
    assert f"synth-ai sft poll {job_id} --base-url {fake.base_url}" in err
    # one `error:` line and one `hint:` line, like every other Ctrl-C
    error, hint = err.strip().splitlines()[-2:]
    assert error.startswith(f"error: interrupted: stopped following {job_id}") and "keeps running" in error
    assert hint == f"hint: resume with `synth-ai sft poll {job_id} --base-url {fake.base_url}`"
    assert "Traceback" not in err
    assert fake.api.jobs[job_id]["status"] == "validating_files"
    fake.api.hold[job_id] = False
    res = sft(fake, "poll", job_id, "--interval", "0.05")
    assert res.exit_code == 0 and "succeeded" in res.stdout
