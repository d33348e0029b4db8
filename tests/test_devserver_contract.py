"""Contract: `synth-ai serve` answers match OpenAI's published OpenAPI document, and the official
`openai` Python SDK drives it (files, jobs, events, checkpoints, cancel, errors).

Schemas are read from docs/openapi/openai-files-fine-tuning.openapi.yaml (tests/helpers/openapi.py rewrites the
document's OpenAPI-3.0-style `exclusiveMinimum: true` into the 2020-12 form and validates one
component schema at a time).
"""

from __future__ import annotations

import re
import time

import pytest

from helpers import openapi as _openapi
from helpers.devserver import BASE_MODEL, running_server
from tests.test_devserver import Api, write_train


def valid(component: str, instance) -> None:
    problems = _openapi.errors(component, instance)
    assert problems == [], f"{component}: {problems}\n{instance}"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("contract")
    with running_server(tmp, step_seconds=0.01) as srv:
        yield srv, tmp


def test_the_document_is_in_the_repo_with_its_licence():
    path = _openapi.CANDIDATES[0]
    assert path.is_file(), "docs/openapi/openai-files-fine-tuning.openapi.yaml is missing"
    doc = _openapi.document()
    assert doc["info"]["license"]["name"] == "MIT"
    assert doc["components"]["schemas"]["FineTuningJob"]["properties"]["status"]["enum"]


def test_responses_validate_against_the_schemas(served):
    srv, tmp = served
    api = Api(srv)
    train = api.upload(write_train(tmp / "train.jsonl"))
    valid("OpenAIFile", train)
    val = api.upload(write_train(tmp / "val.jsonl", n=3, start=50))
    valid("OpenAIFile", api.get(f"/files/{val['id']}").json())
    files = api.get("/files").json()
    valid("ListFilesResponse", files)

    request = {"model": BASE_MODEL, "training_file": train["id"], "validation_file": val["id"], "suffix": "contract",
               "seed": 9, "metadata": {"team": "qa"},
               "method": {"type": "supervised", "supervised": {"hyperparameters": {
                   "n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": 0.5}}}}
    valid("CreateFineTuningJobRequest", request)
    created = api.post("/fine_tuning/jobs", json=request).json()
    valid("FineTuningJob", created)
    assert created["status"] == "validating_files" and created["metadata"] == {"team": "qa"}
    legacy_request = {"model": BASE_MODEL, "training_file": train["id"], "hyperparameters": {"n_epochs": 50}}
    valid("CreateFineTuningJobRequest", legacy_request)
    legacy = api.post("/fine_tuning/jobs", json=legacy_request).json()
    valid("FineTuningJob", legacy)

    seen_statuses = set()
    deadline = time.monotonic() + 60
    while True:
        job = api.job(created["id"])
        valid("FineTuningJob", job)
        seen_statuses.add(job["status"])
        if job["status"] == "succeeded":
            break
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert "running" in seen_statuses
    assert job["trained_tokens"] > 0 and job["fine_tuned_model"].startswith(f"ft:{BASE_MODEL}:contract:")

    events = api.get(f"/fine_tuning/jobs/{job['id']}/events", params={"limit": 1000}).json()
    valid("ListFineTuningJobEventsResponse", events)
    for event in events["data"]:
        valid("FineTuningJobEvent", event)
    assert {e["type"] for e in events["data"]} == {"message", "metrics"}
    checkpoints = api.get(f"/fine_tuning/jobs/{job['id']}/checkpoints").json()
    valid("ListFineTuningJobCheckpointsResponse", checkpoints)
    assert len(checkpoints["data"]) == 2
    for ckpt in checkpoints["data"]:
        valid("FineTuningJobCheckpoint", ckpt)

    cancelled = api.post(f"/fine_tuning/jobs/{legacy['id']}/cancel").json()
    valid("FineTuningJob", cancelled)
    failed = api.wait(api.create_job(api.upload(write_train(tmp / "few.jsonl", n=2))["id"])["id"])
    assert failed["status"] == "failed"
    valid("FineTuningJob", failed)

    jobs = api.get("/fine_tuning/jobs", params={"limit": 2}).json()
    valid("ListPaginatedFineTuningJobsResponse", jobs)
    assert jobs["has_more"] is True

    deleted = api.delete(f"/files/{val['id']}").json()
    valid("DeleteFileResponse", deleted)
    api.http.close()


def test_every_documented_route_is_served(served):
    """Each path + method of the document reaches a handler (pause/resume of a job that is not
    running: the documented 400)."""
    srv, tmp = served
    api = Api(srv)
    file_id = api.upload(write_train(tmp / "routes.jsonl"))["id"]
    job_id = api.create_job(file_id, hyperparameters={"n_epochs": 50, "batch_size": 1})["id"]  # still running at cancel
    doc = _openapi.document()
    for path, methods in doc["paths"].items():
        for method in methods:
            url = path.replace("{file_id}", file_id).replace("{fine_tuning_job_id}", job_id)
            if method == "delete":
                url = path.replace("{file_id}", "file-not-there")
            kwargs = {}
            if method == "post" and path == "/files":
                kwargs = {"files": {"file": ("x.jsonl", b"{}\n")}, "data": {"purpose": "fine-tune"}}
            elif method == "post" and path == "/fine_tuning/jobs":
                kwargs = {"json": {"model": BASE_MODEL, "training_file": file_id}}
            r = api.http.request(method.upper(), url, **kwargs)
            if path.endswith(("/pause", "/resume")) and r.status_code == 400:
                assert r.json()["error"]["code"] in ("job_not_pausable", "job_not_resumable"), r.text
                continue
            assert r.status_code in (200, 404), (method, path, r.text)
            if r.status_code == 404:
                assert r.json()["error"]["code"] == "not_found", (method, path, r.text)
    api.http.close()


# --------------------------------------------------------------------------- the official SDK


@pytest.fixture(scope="module")
def sdk(served):
    openai = pytest.importorskip("openai")
    srv, _ = served
    client = openai.OpenAI(base_url=srv.base_url, api_key=srv.api_key, max_retries=0, timeout=30)
    yield openai, client
    client.close()


def test_the_openai_sdk_drives_a_job_end_to_end(served, sdk):
    srv, tmp = served
    openai, client = sdk
    path = write_train(tmp / "sdk.jsonl", n=15)
    uploaded = client.files.create(file=path, purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.bytes == path.stat().st_size
    assert client.files.retrieve(uploaded.id).filename == "sdk.jsonl"
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.content(uploaded.id).read() == path.read_bytes()

    job = client.fine_tuning.jobs.create(
        model=BASE_MODEL, training_file=uploaded.id, suffix="sdk", seed=42, metadata={"via": "sdk"},
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 3}}})
    assert job.status == "validating_files" and job.method.type == "supervised"
    assert job.method.supervised.hyperparameters.n_epochs == 2
    deadline = time.monotonic() + 60
    while job.status not in ("succeeded", "failed", "cancelled"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
        job = client.fine_tuning.jobs.retrieve(job.id)
    assert job.status == "succeeded" and job.fine_tuned_model == f"ft:{BASE_MODEL}:sdk:{job.id}"
    assert job.hyperparameters.n_epochs == 2 and job.hyperparameters.batch_size == 3
    assert job.trained_tokens and job.trained_tokens > 0 and job.finished_at

    # events: the SDK's cursor pagination (`after` = last id) walks the whole history exactly once
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=4))
    assert len({e.id for e in events}) == len(events)
    assert events[0].message == "The job has successfully completed"
    assert events[-1].message.startswith("Created fine-tuning job")
    steps = [e.data["step"] for e in events if e.type == "metrics"]
    assert sorted(steps) == list(range(1, 11))  # ceil(15 × 2 / 3)

    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    assert [c.step_number for c in checkpoints] == [10, 5]
    assert checkpoints[0].metrics.train_loss is not None
    assert checkpoints[0].fine_tuned_model_checkpoint.endswith(":ckpt-step-10")

    legacy = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id,
                                            hyperparameters={"n_epochs": 50})
    cancelled = client.fine_tuning.jobs.cancel(legacy.id)
    assert cancelled.status == "cancelled" and cancelled.hyperparameters.n_epochs == 50

    listed = [j.id for j in client.fine_tuning.jobs.list(limit=1)]  # auto-paginates one job per page
    assert listed.index(legacy.id) < listed.index(job.id)
    assert client.files.delete(uploaded.id).deleted is True


def test_the_openai_sdk_sees_errors_as_typed_exceptions(served, sdk):
    srv, tmp = served
    openai, client = sdk
    wrong = openai.OpenAI(base_url=srv.base_url, api_key="sk-wrong-0000000000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        wrong.fine_tuning.jobs.list()
    assert info.value.code == "invalid_api_key" and "sk-wrong-0000000000000000" not in str(info.value)
    wrong.close()
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-nope")
    file_id = client.files.create(file=write_train(tmp / "e.jsonl"), purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=file_id, hyperparameters={"n_epochs": 0})
    assert info.value.param == "hyperparameters.n_epochs"
    bad = tmp / "bad.jsonl"
    bad.write_text("{}\n" * 3, encoding="utf-8")
    bad_id = client.files.create(file=bad, purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.create(model=BASE_MODEL, training_file=bad_id)
    assert info.value.code == "invalid_training_file"
    assert re.search(r"lines 1, 2, 3: missing or empty messages list", info.value.message)


def valid_job(job: dict) -> None:
    """A job object against the schema; `paused` (what OpenAI answers for a paused job) is not in the
    published document's status enum, so a paused job is checked as the running job it was."""
    valid("FineTuningJob", {**job, "status": "running"} if job["status"] == "paused" else job)


def _steps(api: Api, job_id: str) -> list[int]:
    return sorted(e["data"]["step"] for e in api.events(job_id) if e["type"] == "metrics")


def test_pause_and_resume(served, sdk):
    """POST …/pause stops the simulated training where it is (status paused); …/resume continues
    from the same step; both through the official SDK and validated against the document."""
    srv, tmp = served
    openai, client = sdk
    api = Api(srv)
    file_id = api.upload(write_train(tmp / "pause.jsonl", n=40))["id"]
    job = api.create_job(file_id, hyperparameters={"n_epochs": 10, "batch_size": 1})  # 400 steps
    assert api.wait(job["id"], statuses=("running",))["status"] == "running"
    paused = client.fine_tuning.jobs.pause(job["id"])
    assert paused.status == "paused" and paused.estimated_finish is None
    raw = api.post(f"/fine_tuning/jobs/{job['id']}/pause")  # again: the same answer
    assert raw.status_code == 200 and raw.json()["status"] == "paused"
    valid_job(raw.json())
    valid_job(api.job(job["id"]))
    at_pause = _steps(api, job["id"])
    time.sleep(0.3)  # 30 steps' worth at 0.01 s per step: none may happen while paused
    assert _steps(api, job["id"]) == at_pause and api.job(job["id"])["status"] == "paused"
    assert api.events(job["id"])[-1]["message"] == "Fine-tuning job paused by the user"
    assert any(j.id == job["id"] and j.status == "paused" for j in client.fine_tuning.jobs.list(limit=100))

    resumed = client.fine_tuning.jobs.resume(job["id"])
    assert resumed.status == "running" and resumed.estimated_finish
    valid_job(api.post(f"/fine_tuning/jobs/{job['id']}/resume").json())  # resuming a running job: a no-op
    deadline = time.monotonic() + 30
    while len(_steps(api, job["id"])) < len(at_pause) + 5:
        assert time.monotonic() < deadline, "the resumed job did not advance"
        time.sleep(0.02)
    steps = _steps(api, job["id"])
    assert steps == list(range(1, len(steps) + 1))  # continued from where it stopped: no step lost or repeated
    messages = [e["message"] for e in api.events(job["id"])]
    assert f"Fine-tuning job resumed at step {at_pause[-1] if at_pause else 0}/400" in messages

    client.fine_tuning.jobs.pause(job["id"])
    cancelled = client.fine_tuning.jobs.cancel(job["id"])  # a paused job can be cancelled
    assert cancelled.status == "cancelled"
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.pause(job["id"])
    assert info.value.code == "job_not_pausable" and "cancelled" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.fine_tuning.jobs.resume(job["id"])
    assert info.value.code == "job_not_resumable"
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.pause("ftjob-nope")
    api.http.close()
