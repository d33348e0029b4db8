"""`synth-ai serve` as a user's HTTP client sees it: jobs, files, auth, idempotency, bad input, accounts.

Every test talks to a real `synth-ai serve` subprocess on a free 127.0.0.1 port (tests/helpers/devserver.py).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import httpx
import pytest

from helpers.devserver import BASE_MODEL, DEFAULT_DEV_KEY, running_server

TERMINAL = ("succeeded", "failed", "cancelled")


# --------------------------------------------------------------------------- helpers


def write_train(path: Path, n: int = 12, *, start: int = 0) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for i in range(start, start + n):
            fh.write(json.dumps({"messages": [
                {"role": "system", "content": "You play Crafter."},
                {"role": "user", "content": f"Step {i}: a tree is to the north. What do you do?"},
                {"role": "assistant", "content": f"Move north, then collect wood number {i}."},
            ]}) + "\n")
    return path


class Api:
    """A tiny authenticated client for one server."""

    def __init__(self, srv, key: str | None = None):
        self.srv = srv
        self.http = httpx.Client(base_url=srv.base_url, timeout=30,
                                 headers={"Authorization": f"Bearer {key or srv.api_key}"})

    def get(self, path: str, **kw) -> httpx.Response:
        return self.http.get(path, **kw)

    def post(self, path: str, **kw) -> httpx.Response:
        return self.http.post(path, **kw)

    def delete(self, path: str, **kw) -> httpx.Response:
        return self.http.delete(path, **kw)

    def upload(self, path: Path, purpose: str = "fine-tune", headers: dict | None = None) -> dict:
        with path.open("rb") as fh:
            r = self.post("/files", files={"file": (path.name, fh, "application/jsonl")}, data={"purpose": purpose},
                          headers=headers)
        assert r.status_code == 200, r.text
        return r.json()

    def create_job(self, file_id: str, *, expect: int = 200, headers: dict | None = None, **body) -> dict:
        r = self.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id, **body},
                      headers=headers)
        assert r.status_code == expect, r.text
        return r.json()

    def job(self, job_id: str) -> dict:
        r = self.get(f"/fine_tuning/jobs/{job_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def wait(self, job_id: str, statuses=TERMINAL, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if job["status"] in statuses:
                return job
            time.sleep(0.05)
        raise AssertionError(f"job {job_id} still {job['status']} after {timeout}s")

    def events(self, job_id: str) -> list[dict]:
        """All events, oldest first (the API lists newest first)."""
        r = self.get(f"/fine_tuning/jobs/{job_id}/events", params={"limit": 1000})
        assert r.status_code == 200, r.text
        return list(reversed(r.json()["data"]))


def assert_openai_error(r: httpx.Response, status: int, *, param: str | None = "any", code: str | None = "any") -> dict:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    if param != "any":
        assert body["error"]["param"] == param, body
    if code != "any":
        assert body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("devserver"), step_seconds=0.01, seed=7) as handle:
        yield handle


@pytest.fixture(scope="module")
def api(srv):
    client = Api(srv)
    yield client
    client.http.close()


@pytest.fixture(scope="module")
def train_id(api, tmp_path_factory) -> str:
    return api.upload(write_train(tmp_path_factory.mktemp("data") / "train.jsonl"))["id"]


# --------------------------------------------------------------------------- health and auth


def test_health_says_it_is_a_simulator_and_needs_no_key(srv):
    for url in (srv.root_url + "/health", srv.base_url + "/health"):
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200
        body = r.json()
        assert body["status"] == "healthy" and body["simulator"] is True and "simulat" in body["note"]


def test_missing_and_wrong_keys_get_401_in_openai_shape(srv):
    r = httpx.get(srv.base_url + "/fine_tuning/jobs", timeout=10)
    assert_openai_error(r, 401, code="missing_api_key")
    wrong = "sk-wrong-key-0123456789-abcd"
    for headers in ({"Authorization": f"Bearer {wrong}"}, {"X-API-Key": wrong}):
        r = httpx.get(srv.base_url + "/files", headers=headers, timeout=10)
        error = assert_openai_error(r, 401, code="invalid_api_key")
        assert wrong not in r.text and "sk-wro…abcd" in error["message"]
    r = httpx.get(srv.base_url + "/files", headers={"Authorization": "Basic abc"}, timeout=10)
    assert_openai_error(r, 401, code="missing_api_key")
    r = httpx.get(srv.base_url + "/files", headers={"X-API-Key": DEFAULT_DEV_KEY}, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "list"


def test_unknown_routes_and_methods_answer_in_openai_shape(api):
    assert_openai_error(api.get("/no/such/thing"), 404, code="unknown_url")
    assert_openai_error(api.delete("/fine_tuning/jobs"), 405)


# --------------------------------------------------------------------------- a job's life


def test_job_lifecycle_to_succeeded(api, train_id):
    created = api.create_job(train_id, suffix="life", seed=11,
                             method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}})
    assert created["status"] == "validating_files" and created["object"] == "fine_tuning.job"
    assert created["hyperparameters"] == {"n_epochs": 2, "batch_size": 1, "learning_rate_multiplier": 1.8}
    job = api.wait(created["id"])
    assert job["status"] == "succeeded", job
    assert job["fine_tuned_model"] == f"ft:{BASE_MODEL}:life:{job['id']}"
    assert job["finished_at"] >= job["created_at"] and job["error"] is None and job["seed"] == 11
    events = api.events(job["id"])
    messages = [e["message"] for e in events]
    # status changes in order
    order = [next(i for i, m in enumerate(messages) if m.startswith(prefix)) for prefix in (
        "Created fine-tuning job", "Validating training file", "Files validated", "Fine-tuning job started",
        "New fine-tuned model created", "The job has successfully completed")]
    assert order == sorted(order)
    # one metrics event per step: steps = ceil(12 examples × 2 epochs / batch 1)
    metrics = [e for e in events if e["type"] == "metrics"]
    total = math.ceil(12 * 2 / 1)
    assert [e["data"]["step"] for e in metrics] == list(range(1, total + 1))
    assert all(e["data"]["total_steps"] == total and e["data"]["train_loss"] > 0 for e in metrics)
    assert metrics[-1]["data"]["train_loss"] < metrics[0]["data"]["train_loss"]
    assert f"Step 1/{total}: training loss=" in metrics[0]["message"]
    # trained tokens are estimated from the data, for every epoch
    assert job["trained_tokens"] > 12 * 2 * 20
    # a checkpoint at the end of each epoch, newest first
    ckpts = api.get(f"/fine_tuning/jobs/{job['id']}/checkpoints").json()
    assert [c["step_number"] for c in ckpts["data"]] == [24, 12]
    assert ckpts["data"][0]["fine_tuned_model_checkpoint"] == f"{job['fine_tuned_model']}:ckpt-step-24"
    assert ckpts["data"][0]["metrics"]["train_loss"] == metrics[-1]["data"]["train_loss"]
    # the result file, as OpenAI makes one: step_metrics.csv with one row per step
    (results_id,) = job["result_files"]
    results = api.get(f"/files/{results_id}").json()
    assert results["purpose"] == "fine-tune-results" and results["filename"] == "step_metrics.csv"
    csv_text = api.get(f"/files/{results_id}/content").text
    assert results["bytes"] == len(csv_text.encode())
    header, *rows = csv_text.splitlines()
    assert header == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert [r.split(",")[:2] for r in rows] == [[str(e["data"]["step"]), str(e["data"]["train_loss"])]
                                                for e in metrics]
    assert all(r.endswith(",,") for r in rows)  # no validation file: no validation columns
    assert results_id in [f["id"] for f in api.get("/files", params={"purpose": "fine-tune-results"}).json()["data"]]
    assert api.job(created["id"])["result_files"] == [results_id]


def test_predictions_approach_the_ground_truth(api, train_id):
    job = api.wait(api.create_job(train_id, seed=5, hyperparameters={"n_epochs": 4})["id"])
    assert job["status"] == "succeeded"
    base = f"/fine_tuning/jobs/{job['id']}/predictions"
    epochs = api.get(base + "/epochs").json()
    assert epochs["job_id"] == job["id"]
    assert [e["epoch"] for e in epochs["epochs"]] == [1, 2, 3, 4]
    assert all(e["prediction_count"] == 5 for e in epochs["epochs"])
    assert [e["latest_step"] for e in epochs["epochs"]] == [12, 24, 36, 48]

    page = api.get(base, params={"limit": 100}).json()
    assert page["total_count"] == 20 and page["epoch_count"] == 4 and len(page["predictions"]) == 20
    from synth_cli.devserver import metrics as m

    for p in page["predictions"]:
        # the metrics are computed for real between prediction and ground truth
        assert p["exact_match"] == (p["prediction"].strip() == p["ground_truth"].strip())
        assert p["char_error_rate"] == pytest.approx(m.levenshtein(p["prediction"], p["ground_truth"])
                                                     / len(p["ground_truth"]), abs=1e-6)
        assert p["length_ratio"] == pytest.approx(len(p["prediction"]) / len(p["ground_truth"]), abs=1e-6)
        assert 0 <= p["word_overlap"] <= 1
        assert p["ground_truth"].startswith("Move north, then collect wood number") and p["prompt"].startswith("Step ")
    assert {p["sample_index"] for p in page["predictions"]} == {0, 3, 6, 8, 11}  # spread over the file
    first = api.get(base, params={"epoch": 1}).json()
    assert first["total_count"] == 5 and {p["epoch"] for p in first["predictions"]} == {1}
    paged = api.get(base, params={"limit": 3, "offset": 18}).json()
    assert len(paged["predictions"]) == 2 and paged["total_count"] == 20

    trends = api.get(base + "/trends").json()
    t = trends["trends"]
    assert [x["epoch"] for x in t] == [1, 2, 3, 4] and all(x["sample_count"] == 5 for x in t)
    assert t[-1]["avg_char_error_rate"] < t[0]["avg_char_error_rate"]
    assert t[-1]["avg_word_overlap"] > t[0]["avg_word_overlap"]
    assert trends["overall_improvement"] == pytest.approx(t[-1]["avg_word_overlap"] - t[0]["avg_word_overlap"],
                                                          abs=1e-5)
    assert all(x["min_char_error_rate"] <= x["avg_char_error_rate"] <= x["max_char_error_rate"] for x in t)


def test_same_seed_same_curve_and_predictions(api, train_id):
    def run(seed):
        job = api.wait(api.create_job(train_id, seed=seed, hyperparameters={"n_epochs": 1, "batch_size": 4})["id"])
        losses = [e["data"]["train_loss"] for e in api.events(job["id"]) if e["type"] == "metrics"]
        preds = [p["prediction"] for p in
                 api.get(f"/fine_tuning/jobs/{job['id']}/predictions").json()["predictions"]]
        return losses, preds

    a, b, c = run(1234), run(1234), run(99)
    assert a == b
    assert len(a[0]) == math.ceil(12 / 4)
    assert a[0] != c[0]


def test_auto_hyperparameters_are_resolved(api, tmp_path):
    file_id = api.upload(write_train(tmp_path / "t40.jsonl", n=40))["id"]
    job = api.create_job(file_id, hyperparameters={"n_epochs": "auto", "batch_size": "auto",
                                                   "learning_rate_multiplier": "auto"})
    # OpenAI's rule: 3 epochs unless fewer than 100 examples would be seen → ceil(100 / 40) = 3
    assert job["hyperparameters"] == {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8}
    assert job["method"]["supervised"]["hyperparameters"] == job["hyperparameters"]
    small = api.create_job(api.upload(write_train(tmp_path / "t12.jsonl"))["id"])
    assert small["hyperparameters"]["n_epochs"] == 9  # ceil(100 / 12)
    api.post(f"/fine_tuning/jobs/{job['id']}/cancel")
    api.post(f"/fine_tuning/jobs/{small['id']}/cancel")


def test_validation_file_adds_validation_loss(api, train_id, tmp_path):
    val_id = api.upload(write_train(tmp_path / "val.jsonl", n=3, start=100))["id"]
    job = api.wait(api.create_job(train_id, validation_file=val_id, hyperparameters={"n_epochs": 1})["id"])
    assert job["status"] == "succeeded" and job["validation_file"] == val_id
    metrics = [e for e in api.events(job["id"]) if e["type"] == "metrics"]
    assert all("valid_loss" in e["data"] and "validation loss=" in e["message"] for e in metrics)
    (ckpt,) = api.get(f"/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"]
    assert "full_valid_loss" in ckpt["metrics"]
    rows = api.get(f"/files/{job['result_files'][0]}/content").text.splitlines()[1:]
    assert [r.split(",")[3] for r in rows] == [str(e["data"]["valid_loss"]) for e in metrics]


def test_cancel(tmp_path):
    with running_server(tmp_path, step_seconds=0.5) as slow:
        api = Api(slow)
        job = api.create_job(api.upload(write_train(tmp_path / "t.jsonl"))["id"])
        r = api.post(f"/fine_tuning/jobs/{job['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        again = api.post(f"/fine_tuning/jobs/{job['id']}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        time.sleep(1.2)  # the runner does not move a cancelled job
        job = api.job(job["id"])
        assert job["status"] == "cancelled" and job["finished_at"] and job["fine_tuned_model"] is None
        assert job["result_files"] == []
        assert api.events(job["id"])[-1]["message"] == "Fine-tuning job cancelled by the user"
        assert_openai_error(api.post("/fine_tuning/jobs/ftjob-nope/cancel"), 404)
        api.http.close()


def test_cancelling_a_finished_job_is_refused(api, train_id):
    job = api.wait(api.create_job(train_id, hyperparameters={"n_epochs": 1, "batch_size": 12})["id"])
    assert job["status"] == "succeeded"
    assert_openai_error(api.post(f"/fine_tuning/jobs/{job['id']}/cancel"), 400, code="job_not_cancellable")


# --------------------------------------------------------------------------- lists and cursors


def test_events_are_newest_first_and_after_pages_to_older(api, train_id):
    job = api.wait(api.create_job(train_id, hyperparameters={"n_epochs": 1})["id"])
    everything = api.get(f"/fine_tuning/jobs/{job['id']}/events", params={"limit": 1000}).json()
    assert everything["has_more"] is False
    default = api.get(f"/fine_tuning/jobs/{job['id']}/events").json()
    assert len(default["data"]) == 20 and default["has_more"] is True  # OpenAI's default limit
    pages, after = [], None
    while True:
        params = {"limit": 7, **({"after": after} if after else {})}
        page = api.get(f"/fine_tuning/jobs/{job['id']}/events", params=params).json()
        pages += page["data"]
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert [e["id"] for e in pages] == [e["id"] for e in everything["data"]]
    assert everything["data"][0]["message"] == "The job has successfully completed"
    assert everything["data"][-1]["message"].startswith("Created fine-tuning job")
    times = [e["created_at"] for e in everything["data"]]
    assert times == sorted(times, reverse=True)


def test_job_and_file_lists_paginate(tmp_path):
    with running_server(tmp_path, step_seconds=5) as fresh:  # its own, empty account
        api = Api(fresh)
        ids = [api.upload(write_train(tmp_path / f"f{i}.jsonl"), purpose=p)["id"]
               for i, p in enumerate(("fine-tune", "batch", "fine-tune"))]
        listed = api.get("/files").json()
        assert [f["id"] for f in listed["data"]] == ids[::-1]
        assert listed["first_id"] == ids[2] and listed["last_id"] == ids[0] and listed["has_more"] is False
        assert [f["id"] for f in api.get("/files", params={"order": "asc"}).json()["data"]] == ids
        assert [f["id"] for f in api.get("/files", params={"purpose": "batch"}).json()["data"]] == [ids[1]]
        page = api.get("/files", params={"limit": 2}).json()
        assert len(page["data"]) == 2 and page["has_more"] is True
        assert [f["id"] for f in api.get("/files", params={"after": page["last_id"]}).json()["data"]] == [ids[0]]

        jobs = [api.create_job(ids[0], metadata={"run": str(i)})["id"] for i in range(3)]
        page = api.get("/fine_tuning/jobs", params={"limit": 2}).json()
        assert [j["id"] for j in page["data"]] == jobs[:0:-1] and page["has_more"] is True
        rest = api.get("/fine_tuning/jobs", params={"limit": 2, "after": page["data"][-1]["id"]}).json()
        assert [j["id"] for j in rest["data"]] == [jobs[0]] and rest["has_more"] is False
        by_meta = api.get("/fine_tuning/jobs", params={"metadata[run]": "1"}).json()
        assert [j["id"] for j in by_meta["data"]] == [jobs[1]]
        assert_openai_error(api.get("/fine_tuning/jobs", params={"limit": "many"}), 400, param="limit")
        assert_openai_error(api.get("/files", params={"order": "sideways"}), 400, param="order")
        api.http.close()


def test_file_content_retrieve_and_delete(api, tmp_path):
    path = write_train(tmp_path / "c.jsonl", n=3)
    file = api.upload(path)
    assert file["bytes"] == path.stat().st_size and file["filename"] == "c.jsonl" and file["purpose"] == "fine-tune"
    assert api.get(f"/files/{file['id']}").json() == file
    content = api.get(f"/files/{file['id']}/content")
    assert content.status_code == 200 and content.content == path.read_bytes()
    r = api.delete(f"/files/{file['id']}")
    assert r.json() == {"id": file["id"], "object": "file", "deleted": True}
    assert_openai_error(api.get(f"/files/{file['id']}"), 404, param="file_id")
    assert_openai_error(api.get(f"/files/{file['id']}/content"), 404)
    assert_openai_error(api.delete(f"/files/{file['id']}"), 404)


def test_upload_errors(api, tmp_path):
    path = write_train(tmp_path / "u.jsonl", n=1)
    with path.open("rb") as fh:
        r = api.post("/files", files={"file": ("u.jsonl", fh)}, data={"purpose": "homework"})
    assert_openai_error(r, 400, param="purpose")
    with path.open("rb") as fh:
        r = api.post("/files", files={"file": ("u.jsonl", fh)})
    assert_openai_error(r, 400, param="purpose")
    assert_openai_error(api.post("/files", data={"purpose": "fine-tune"}), 400, param="file")
    assert_openai_error(api.post("/files", json={"purpose": "fine-tune"}), 400, param="file")
    r = api.post("/files", content=b"--xyz\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\nab",
                 headers={"Content-Type": "multipart/form-data; boundary=xyz"})
    assert_openai_error(r, 400, param="file")


# --------------------------------------------------------------------------- bad input


def test_unknown_job_is_404(api):
    for path in ("", "/events", "/checkpoints", "/predictions", "/predictions/epochs", "/predictions/trends"):
        assert_openai_error(api.get(f"/fine_tuning/jobs/ftjob-nope{path}"), 404, param="fine_tuning_job_id")


def test_malformed_training_file_is_rejected_naming_lines(api, tmp_path):
    bad = tmp_path / "bad.jsonl"
    good_line = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]})
    bad.write_text(good_line + "\nnot json\n" + good_line + "\n" + json.dumps({"messages": [
        {"role": "user", "content": "no answer"}]}) + "\n" + json.dumps({"messages": [
            {"role": "user", "content": "x"}]}) + "\n", encoding="utf-8")
    file_id = api.upload(bad)["id"]  # uploads are not judged; job creation is
    error = assert_openai_error(api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id}),
                                400, param="training_file", code="invalid_training_file")
    assert "line 2: not valid JSON" in error["message"]
    assert "lines 4, 5: no assistant message" in error["message"]
    # the same for a validation file, and nothing was created
    good = api.upload(write_train(tmp_path / "good.jsonl"))["id"]
    error = assert_openai_error(api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": good,
                                                                    "validation_file": file_id}),
                                400, param="validation_file", code="invalid_validation_file")
    assert "line 2" in error["message"]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n", encoding="utf-8")
    error = assert_openai_error(api.post("/fine_tuning/jobs", json={
        "model": BASE_MODEL, "training_file": api.upload(empty)["id"]}), 400, param="training_file")
    assert "no examples" in error["message"]


def test_too_few_examples_ends_failed_with_error_code(api, tmp_path):
    file_id = api.upload(write_train(tmp_path / "three.jsonl", n=3))["id"]
    job = api.create_job(file_id)
    assert job["status"] == "validating_files"
    job = api.wait(job["id"])
    assert job["status"] == "failed" and job["fine_tuned_model"] is None and job["finished_at"]
    assert job["error"]["code"] == "invalid_n_examples" and job["error"]["param"] == "training_file"
    assert "3 example(s)" in job["error"]["message"]
    events = api.events(job["id"])
    assert events[-1]["level"] == "error" and events[-1]["message"] == job["error"]["message"]
    assert any(e["level"] == "warn" for e in events)  # the validator's warning, passed on


@pytest.mark.parametrize("body, param", [
    ({"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}}},
     "method.supervised.hyperparameters.n_epochs"),
    ({"hyperparameters": {"n_epochs": 0}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"n_epochs": 51}}, "hyperparameters.n_epochs"),
    ({"hyperparameters": {"batch_size": "big"}}, "hyperparameters.batch_size"),
    ({"hyperparameters": {"learning_rate_multiplier": 0}}, "hyperparameters.learning_rate_multiplier"),
    ({"hyperparameters": {"epochs": 3}}, "hyperparameters.epochs"),
    ({"hyperparameters": {"n_epochs": 1}, "method": {"type": "supervised"}}, "hyperparameters"),
    ({"method": {"type": "dpo"}}, "method.type"),
    ({"suffix": "x" * 65}, "suffix"),
    ({"seed": -1}, "seed"),
    ({"metadata": {"k": 1}}, "metadata"),
    ({"temperature": 1}, "temperature"),
    ({"model": ""}, "model"),
    ({"training_file": "file-missing"}, "training_file"),
])
def test_bad_job_requests_are_400(api, train_id, body, param):
    payload = {"model": BASE_MODEL, "training_file": train_id, **body}
    assert_openai_error(api.post("/fine_tuning/jobs", json=payload), 400, param=param)


def test_non_json_body_and_wrong_purpose(api, tmp_path):
    assert_openai_error(api.post("/fine_tuning/jobs", content=b"{nope", headers={"Content-Type": "application/json"}),
                        400)
    batch = api.upload(write_train(tmp_path / "b.jsonl"), purpose="batch")["id"]
    error = assert_openai_error(api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": batch}), 400,
                                param="training_file")
    assert "purpose" in error["message"]


# --------------------------------------------------------------------------- idempotency


def test_idempotency_key_replays_job_creation(api, train_id):
    before = len(api.get("/fine_tuning/jobs", params={"limit": 1000}).json()["data"])
    headers = {"Idempotency-Key": "idem-job-1"}
    first = api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": train_id}, headers=headers)
    second = api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": train_id}, headers=headers)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    assert second.headers.get("idempotent-replayed") == "true"
    assert len(api.get("/fine_tuning/jobs", params={"limit": 1000}).json()["data"]) == before + 1
    # another body under the same key is refused; another key makes another job
    r = api.post("/fine_tuning/jobs", json={"model": "gpt-4o-mini", "training_file": train_id}, headers=headers)
    assert_openai_error(r, 422, code="idempotency_key_reused")
    other = api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": train_id},
                     headers={"Idempotency-Key": "idem-job-2"})
    assert other.json()["id"] != first.json()["id"]
    # a refused request is replayed as refused too (no second validation, no job)
    bad = {"model": BASE_MODEL, "training_file": train_id, "hyperparameters": {"n_epochs": 0}}
    for _ in range(2):
        assert_openai_error(api.post("/fine_tuning/jobs", json=bad, headers={"Idempotency-Key": "idem-bad"}), 400)
    for job_id in (first.json()["id"], other.json()["id"]):
        api.post(f"/fine_tuning/jobs/{job_id}/cancel")


def test_idempotency_key_replays_uploads(api, tmp_path):
    path = write_train(tmp_path / "i.jsonl", n=2)
    uploaded = {"purpose": "fine-tune"}  # jobs of other tests finishing meanwhile add result files
    before = len(api.get("/files", params=uploaded).json()["data"])
    a = api.upload(path, headers={"Idempotency-Key": "idem-file-1"})
    b = api.upload(path, headers={"Idempotency-Key": "idem-file-1"})
    assert a == b and len(api.get("/files", params=uploaded).json()["data"]) == before + 1


# --------------------------------------------------------------------------- accounts (issue 5)


def test_account_endpoints_agree_after_a_job(tmp_path):
    with running_server(tmp_path, step_seconds=0.01, credit_usd=12.5, api_keys=["sk-alpha-0000000000001",
                                                                                  "sk-beta-00000000000002"]) as srv:
        alpha, beta = Api(srv, "sk-alpha-0000000000001"), Api(srv, "sk-beta-00000000000002")
        fresh = alpha.get("/balance/current").json()
        assert fresh["balance_cents"] == 1250 and fresh["balance_dollars"] == 12.5
        windows = alpha.get("/balance/usage/windows", params={"hours": "24,168"}).json()["windows"]
        assert [w["window_hours"] for w in windows] == [24, 168]
        assert all(w["total_spend_cents"] == 0 for w in windows)

        file_id = alpha.upload(write_train(tmp_path / "t.jsonl", n=30))["id"]
        job = alpha.wait(alpha.create_job(file_id, model="gpt-4o-mini", hyperparameters={"n_epochs": 2})["id"])
        assert job["status"] == "succeeded"

        balance = alpha.get("/balance/current").json()
        usage = alpha.get("/balance/usage", params=[("model", "gpt-4o-mini"), ("model", BASE_MODEL)]).json()
        windows = alpha.get("/balance/usage/windows", params={"hours": "1,24,168"}).json()["windows"]
        spent = usage["current_month"]["total_spend_cents"]
        assert spent > 0 and balance["balance_cents"] == 1250 - spent
        assert balance["balance_dollars"] == pytest.approx((1250 - spent) / 100)
        for section in (usage["current_month"], usage["last_30_days"], *windows):
            assert section["total_spend_cents"] == spent
            assert section["token_spend_cents"] > 0 and section["gpu_spend_cents"] > 0
            assert section["token_spend_cents"] + section["gpu_spend_cents"] == spent
        models = {m["model"]: m for m in usage["models"]}
        assert list(models) == ["gpt-4o-mini", BASE_MODEL]
        assert models["gpt-4o-mini"] == {"model": "gpt-4o-mini", "requests": 1, "input_tokens": job["trained_tokens"],
                                         "output_tokens": 0, "spend_cents": spent}
        assert models[BASE_MODEL]["spend_cents"] == 0 and models[BASE_MODEL]["requests"] == 0
        # the charge for the tokens follows the per-model price
        from synth_cli.devserver import billing

        assert usage["current_month"]["token_spend_cents"] == billing.token_charge_cents("gpt-4o-mini",
                                                                                         job["trained_tokens"])
        # accounts are per key: beta sees neither the job nor the spend
        assert beta.get("/balance/current").json()["balance_cents"] == 1250
        assert_openai_error(beta.get(f"/fine_tuning/jobs/{job['id']}"), 404)
        assert beta.get("/files").json()["data"] == []
        assert "models" not in beta.get("/balance/usage").json()
        assert_openai_error(alpha.get("/balance/usage/windows", params={"hours": "a,b"}), 400, param="hours")
        alpha.http.close()
        beta.http.close()


def test_used_up_credit_refuses_new_jobs(tmp_path):
    with running_server(tmp_path, step_seconds=0.01, credit_usd=0) as srv:
        api = Api(srv)
        file_id = api.upload(write_train(tmp_path / "t.jsonl"))["id"]
        assert_openai_error(api.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id}),
                            402, code="insufficient_quota")
        api.http.close()


def test_polled_reads_answer_exactly_what_the_full_app_answers(srv, api, train_id):
    """The jobs list and the events page are answered by a shortcut in front of Starlette
    (`server.hot_read`); for every query, good or bad, the server must answer the same status,
    headers and bytes as the full app (the routes behind the gate) over the same data."""
    import asyncio

    from synth_cli.devserver.server import ServerConfig, create_app, owner_of
    from synth_cli.devserver.store import Store

    job = api.wait(api.create_job(train_id, hyperparameters={"n_epochs": 1}, metadata={"run": "hot"})["id"])
    events = api.get(f"/fine_tuning/jobs/{job['id']}/events", params={"limit": 1000}).json()["data"]
    jobs = api.get("/fine_tuning/jobs").json()["data"]
    queries = ["", "limit=1", "limit=", "limit=0", "limit=1000", "limit=1001", "limit=many", "limit=%2B3",
               "limit=2&limit=3", "limit=%207", f"after={jobs[0]['id']}", f"after={events[3]['id']}&limit=2",
               "after=", "after=nope", "metadata[run]=hot", "order=asc"]
    paths = ["/v1/fine_tuning/jobs", f"/v1/fine_tuning/jobs/{job['id']}/events", "/v1/fine_tuning/jobs/ftjob-nope/events",
             "/v1/fine_tuning/jobs//events", f"/v1/fine_tuning/jobs/{job['id']}/x/events", "/v1/fine_tuning/jobs/"]
    store = Store(srv.data_dir)
    full = create_app(ServerConfig(data_dir=srv.data_dir, api_keys=(srv.api_key,)), store=store).app

    async def ask_full(path: str, query: str) -> tuple[int, dict[str, str], bytes]:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(b"host", f"127.0.0.1:{srv.port}".encode())], "client": ("127.0.0.1", 1),
                 "server": ("127.0.0.1", srv.port), "state": {"owner": owner_of(srv.api_key)}}
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        await full(scope, receive, send)
        headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])

    try:
        statuses = set()
        with httpx.Client(headers=srv.headers) as http:
            for path in paths:
                for query in queries:
                    r = http.get(f"{srv.root_url}{path}" + (f"?{query}" if query else ""))
                    status, headers, body = asyncio.run(ask_full(path, query))
                    assert (r.status_code, r.content) == (status, body), (path, query)
                    assert {k: r.headers[k] for k in headers} == headers, (path, query)
                    statuses.add(status)
        assert statuses == {200, 307, 400, 404}  # 307: the trailing-slash redirect
    finally:
        store.close()


def test_one_keys_jobs_and_events_are_not_anothers(tmp_path):
    with running_server(tmp_path, api_keys=["sk-first-key-0001", "sk-second-key-0002"], step_seconds=0.01) as fresh:
        first, second = Api(fresh, "sk-first-key-0001"), Api(fresh, "sk-second-key-0002")
        job = first.wait(first.create_job(first.upload(write_train(tmp_path / "t.jsonl"))["id"])["id"])
        assert first.get(f"/fine_tuning/jobs/{job['id']}/events").json()["data"]
        assert [j["id"] for j in first.get("/fine_tuning/jobs").json()["data"]] == [job["id"]]
        assert second.get("/fine_tuning/jobs").json() == {"object": "list", "data": [], "has_more": False}
        for params in ({}, {"limit": 5}):
            assert_openai_error(second.get(f"/fine_tuning/jobs/{job['id']}/events", params=params), 404,
                                param="fine_tuning_job_id")
        assert_openai_error(second.get(f"/fine_tuning/jobs/{job['id']}"), 404, param="fine_tuning_job_id")
        first.http.close()
        second.http.close()
