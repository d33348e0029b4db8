"""The HTTP client (synth_cli.api): retries, errors, uploads, job follower — against servers on 127.0.0.1."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from synth_cli.api.client import ApiClient, ApiError, backoff_delay, parse_retry_after
from synth_cli.api.errors import (APIConnectionError)
from synth_cli.api.files import Files
from synth_cli.api.fine_tuning import FineTuning, build_job_request
from synth_cli.api.follow import JobFollower
from synth_cli.api.openai_compat import OpenAIProvider
from synth_cli.config import Setting
from synth_cli.errors import SynthError, UsageError
from helpers import openapi as _openapi
from helpers.fakeapi import KEY, FakeApi, free_port, serve_fake


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_client(base_url: str, key: str = KEY, **kwargs) -> ApiClient:
    kwargs.setdefault("sleep", Sleeps())
    return ApiClient(base_url=base_url, api_key=Setting(key, "env SYNTH_API_KEY"), **kwargs)


def write_jsonl(path, lines: int = 3) -> None:
    import json

    with open(path, "w", encoding="utf-8") as fh:
        for i in range(lines):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                              {"role": "assistant", "content": f"a{i}"}]}) + "\n")


# --------------------------------------------------------------------------- pure helpers


def test_retry_after_seconds_date_and_ms():
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after({"retry-after": "3"}, now) == 3.0
    assert parse_retry_after({"retry-after": "0.5"}, now) == 0.5
    assert parse_retry_after({"retry-after": format_datetime(now + timedelta(seconds=7), usegmt=True)}, now) == 7.0
    assert parse_retry_after({"retry-after": format_datetime(now - timedelta(seconds=7), usegmt=True)}, now) == 0.0
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}, now) == 0.25
    assert parse_retry_after({"retry-after": "soon"}, now) is None
    assert parse_retry_after({}, now) is None


def test_backoff_is_capped_full_jitter():
    assert [backoff_delay(n, base=0.5, cap=4.0, rng=lambda: 1.0) for n in range(6)] == [0.5, 1, 2, 4, 4, 4]
    assert backoff_delay(10, base=0.5, cap=4.0, rng=lambda: 0.0) == 0.0
    samples = {round(backoff_delay(3, base=0.5, cap=8.0), 6) for _ in range(50)}
    assert len(samples) > 10 and all(0 <= s <= 4.0 for s in samples)


def test_base_url_is_normalised_and_resolved_from_env(monkeypatch):
    client = ApiClient(base_url="http://127.0.0.1:9/", api_key="k" * 20)
    assert client.base_url == "http://127.0.0.1:9/v1"
    monkeypatch.setenv("SYNTH_BACKEND_BASE_URL", "http://localhost:7/v1///")
    monkeypatch.setenv("SYNTH_API_KEY", "sk-env-key-0123456789")
    client = ApiClient()
    assert client.base_url == "http://localhost:7/v1"
    assert client.base.source == "env SYNTH_BACKEND_BASE_URL"
    assert client.key.source == "env SYNTH_API_KEY"


def test_missing_key_is_a_clear_error():
    with pytest.raises(ApiError) as info:
        ApiClient(base_url="http://127.0.0.1:9")
    assert info.value.kind == "auth" and "no API key" in info.value.message
    assert "--api-key" in info.value.hint and "SYNTH_BACKEND_API_KEY" in info.value.hint
    assert isinstance(info.value, SynthError)


def test_job_request_forms_match_the_openapi_schema():
    current = build_job_request("gpt-4o-mini", "file-abc", validation_file="file-val", suffix="x", seed=3,
                                n_epochs=2, batch_size=4, learning_rate_multiplier=0.5, metadata={"team": "a"})
    assert current["method"] == {"type": "supervised", "supervised": {"hyperparameters": {
        "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}}}
    assert "hyperparameters" not in current
    legacy = build_job_request("gpt-4o-mini", "file-abc", hyperparameters={"n_epochs": 3, "batch_size": "auto"})
    assert legacy["hyperparameters"] == {"n_epochs": 3, "batch_size": "auto"} and "method" not in legacy
    bare = build_job_request("m", "file-abc")
    for body in (current, legacy, bare):
        assert _openapi.errors("CreateFineTuningJobRequest", body) == []
    # the schema check can fail: a zero learning-rate multiplier is outside the contract
    bad = build_job_request("m", "file-abc", learning_rate_multiplier=0)
    assert _openapi.errors("CreateFineTuningJobRequest", bad)
    with pytest.raises(ValueError):
        build_job_request("m", "f", hyperparameters={"n_epochs": 1}, n_epochs=2)


# --------------------------------------------------------------------------- retries


def test_get_retries_5xx_then_succeeds():
    with serve_fake() as srv:
        srv.api.fail_next(2, 503)
        client = make_client(srv.base_url)
        assert FineTuning(client).list_jobs()["data"] == []
        assert len(srv.api.calls("GET", "/v1/fine_tuning/jobs")) == 3
        assert client.request_count == 3 and len(client._sleep) == 2
        # auth header on every attempt
        assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in srv.api.requests)


def test_429_waits_exactly_as_told_seconds_and_http_date():
    with serve_fake() as srv:
        srv.api.fail_next(1, 429, headers={"Retry-After": "2"})
        client = make_client(srv.base_url)
        FineTuning(client).list_jobs()
        assert client._sleep == [2.0]
        when = datetime.now(timezone.utc) + timedelta(seconds=5)
        srv.api.fail_next(1, 429, headers={"Retry-After": format_datetime(when, usegmt=True)})
        FineTuning(client).list_jobs()
        assert 3.0 <= client._sleep[1] <= 5.0


def test_429_real_wait_with_real_sleep():
    with serve_fake() as srv:
        srv.api.fail_next(1, 429, headers={"Retry-After": "1"})
        client = make_client(srv.base_url, sleep=time.sleep)
        started = time.monotonic()
        FineTuning(client).list_jobs()
        assert time.monotonic() - started >= 1.0


def test_408_409_retried_400_not():
    with serve_fake() as srv:
        srv.api.fail_next(1, 408)
        srv.api.fail_next(1, 409)
        client = make_client(srv.base_url)
        FineTuning(client).list_jobs()
        assert len(srv.api.calls("GET")) == 3
        srv.api.fail_next(1, 400, body={"error": {"message": "bad limit"}})
        with pytest.raises(ApiError) as info:
            FineTuning(client).list_jobs()
        assert info.value.status == 400 and "bad limit" in info.value.message and info.value.attempts == 1


def test_5xx_after_retries_is_one_typed_error():
    with serve_fake() as srv:
        srv.api.fail_next(10, 502, body={"detail": "upstream exploded"})
        client = make_client(srv.base_url, max_retries=3)
        with pytest.raises(ApiError) as info:
            FineTuning(client).list_jobs()
        err = info.value
        assert err.status == 502 and err.attempts == 4 and err.transient
        assert "after 4 attempts" in err.message and "upstream exploded" in err.message
        assert err.server_message == "upstream exploded" and err.hint


def test_429_after_retries_and_too_long_retry_after():
    with serve_fake() as srv:
        srv.api.fail_next(3, 429, headers={"Retry-After": "0"})
        client = make_client(srv.base_url, max_retries=2)
        with pytest.raises(ApiError) as info:
            FineTuning(client).list_jobs()
        assert info.value.status == 429 and "after 3 attempts" in info.value.message
        srv.api.faults.clear()
        srv.api.fail_next(1, 429, headers={"Retry-After": "3600"})
        with pytest.raises(ApiError) as info:
            FineTuning(client).list_jobs()
        assert info.value.attempts == 1 and "3600s" in info.value.hint


def test_post_without_idempotency_key_is_not_retried():
    with serve_fake() as srv:
        srv.api.fail_next(1, 503)
        client = make_client(srv.base_url)
        with pytest.raises(ApiError) as info:
            client.post("fine_tuning/jobs", json={"model": "m", "training_file": "file-x"})
        assert info.value.status == 503
        assert len(srv.api.calls("POST")) == 1


def test_job_create_retried_with_one_idempotency_key_creates_one_job(tmp_path):
    train = tmp_path / "train.jsonl"
    write_jsonl(train)
    with serve_fake() as srv:
        client = make_client(srv.base_url)
        file_id = Files(client).upload(train)["id"]
        # the first answer is lost after the job was created, the second is a 500
        srv.api.fail_next(1, 502, method="POST", path_prefix="/v1/fine_tuning/jobs", after_handling=True)
        srv.api.fail_next(1, 500, method="POST", path_prefix="/v1/fine_tuning/jobs")
        job = FineTuning(client).create_job("gpt-4o-mini", file_id, n_epochs=2)
        posts = srv.api.calls("POST", "/v1/fine_tuning/jobs")
        assert len(posts) == 3
        keys = {p.headers.get("idempotency-key") for p in posts}
        assert len(keys) == 1 and None not in keys
        assert list(srv.api.jobs) == [job["id"]]
        # a second logical create gets its own key (and its own job)
        FineTuning(client).create_job("gpt-4o-mini", file_id)
        assert len(srv.api.jobs) == 2
        for post in srv.api.calls("POST", "/v1/fine_tuning/jobs"):
            assert _openapi.errors("CreateFineTuningJobRequest", post.json) == []


# --------------------------------------------------------------------------- errors


def test_401_shows_masked_key_and_source_never_the_key():
    with serve_fake() as srv:
        wrong = "sk-wrong-key-abcdef0123456789"
        client = make_client(srv.base_url, key=wrong)
        with pytest.raises(ApiError) as info:
            FineTuning(client).list_jobs()
        err = info.value
        assert err.status == 401
        text = err.message + " " + err.hint
        assert wrong not in text  # the server echoed it; it is redacted
        assert "sk-wro…6789" in text and "env SYNTH_API_KEY" in text
        assert "Incorrect API key" in err.message


def test_404_hint_names_the_backend():
    with serve_fake() as srv:
        client = make_client(srv.base_url)
        with pytest.raises(ApiError) as info:
            FineTuning(client).retrieve("ftjob-nope")
        err = info.value
        assert err.status == 404 and "ftjob-nope" in err.message
        assert "no such endpoint or job" in err.hint and srv.base_url in err.hint
        # ids are quoted into the path: a slash cannot reach another endpoint
        with pytest.raises(ApiError):
            FineTuning(client).retrieve("../files")
        assert srv.api.requests[-1].raw_path == "/v1/fine_tuning/jobs/..%2Ffiles"


def test_connection_refused_is_retried_for_a_bounded_time_then_names_url_and_serve():
    port = free_port()
    # the refusal budget is time waited, not attempts: max_retries=0 still rides out a restart
    client = make_client(f"http://127.0.0.1:{port}", max_retries=0, connect_retry=3.0, rng=lambda: 1.0)
    with pytest.raises(ApiError) as info:
        FineTuning(client).list_jobs()
    err = info.value
    assert isinstance(err, APIConnectionError)
    assert err.kind == "connect" and err.status is None and err.transient
    assert f"http://127.0.0.1:{port}/v1" in err.message and "refused" in err.message
    assert "retried for 3.0s" in err.message and "SYNTH_CONNECT_RETRY_SECONDS" in err.message
    assert "synth-ai serve" in err.hint
    assert list(client._sleep) == [0.5, 1.0, 1.5] and client.request_count == 4


def test_connection_refused_budget_from_the_environment(monkeypatch):
    port = free_port()
    monkeypatch.setenv("SYNTH_CONNECT_RETRY_SECONDS", "0")
    client = make_client(f"http://127.0.0.1:{port}")
    with pytest.raises(APIConnectionError):
        FineTuning(client).list_jobs()
    assert client.request_count == 1 and list(client._sleep) == []
    for bad in ("soon", "-1", "inf"):
        monkeypatch.setenv("SYNTH_CONNECT_RETRY_SECONDS", bad)
        with pytest.raises(UsageError, match="SYNTH_CONNECT_RETRY_SECONDS"):
            make_client(f"http://127.0.0.1:{port}")


def test_a_restarting_backend_is_waited_for(tmp_path):
    """Nothing listens for a while, then the backend comes up: the request goes through."""
    import threading

    port = free_port()
    srv_box = {}

    def later():
        time.sleep(0.8)
        srv_box["cm"] = serve_fake(port=port)
        srv_box["srv"] = srv_box["cm"].__enter__()

    thread = threading.Thread(target=later)
    thread.start()
    try:
        client = make_client(f"http://127.0.0.1:{port}", connect_retry=20.0, sleep=time.sleep)
        assert FineTuning(client).list_jobs()["data"] == []
    finally:
        thread.join()
        if "cm" in srv_box:
            srv_box["cm"].__exit__(None, None, None)


def test_non_json_answer_is_reported():
    from starlette.applications import Starlette
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    class Html(FakeApi):
        def app(self):
            return Starlette(routes=[Route("/{p:path}", lambda r: HTMLResponse("<html>hi</html>"))])

    with serve_fake(Html()) as srv:
        with pytest.raises(ApiError) as info:
            FineTuning(make_client(srv.base_url)).list_jobs()
        assert info.value.kind == "decode" and "non-JSON" in info.value.message


# --------------------------------------------------------------------------- uploads


def test_upload_streams_with_exact_length_and_progress(tmp_path):
    train = tmp_path / "train.jsonl"
    write_jsonl(train, lines=40000)  # ~3 MB: several chunks
    size = train.stat().st_size
    seen = []
    with serve_fake() as srv:
        client = make_client(srv.base_url)
        obj = Files(client).upload(train, progress=lambda done, total: seen.append((done, total)))
        assert obj["id"].startswith("file-") and obj["bytes"] == size and obj["filename"] == "train.jsonl"
        rec = srv.api.calls("POST", "/v1/files")[0]
        assert rec.headers.get("transfer-encoding") is None
        assert int(rec.headers["content-length"]) == len(rec.body)
        assert rec.form["purpose"] == "fine-tune" and rec.form["file"]["size"] == size
        assert rec.form["file"]["head"] == train.read_bytes()[:200]
        assert _openapi.errors("CreateFileRequest", {"purpose": rec.form["purpose"], "file": "x"}) == []
        assert rec.headers.get("idempotency-key")
    assert seen[0] == (0, size) and seen[-1] == (size, size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) >= 3


def test_upload_retried_after_503_stores_one_file(tmp_path):
    train = tmp_path / "train.jsonl"
    write_jsonl(train)
    with serve_fake() as srv:
        srv.api.fail_next(1, 503, method="POST", path_prefix="/v1/files")
        Files(make_client(srv.base_url)).upload(train)
        posts = srv.api.calls("POST", "/v1/files")
        assert len(posts) == 2 and len(srv.api.files) == 1
        assert posts[0].headers["idempotency-key"] == posts[1].headers["idempotency-key"]
        assert posts[1].form["file"]["size"] == train.stat().st_size


def test_upload_rejects_directories_and_missing_files(tmp_path):
    client = make_client("http://127.0.0.1:9")
    with pytest.raises(UsageError, match="is a directory"):
        Files(client).upload(tmp_path)
    with pytest.raises(UsageError, match="no such file"):
        Files(client).upload(tmp_path / "nope.jsonl")


# --------------------------------------------------------------------------- following


def _create(srv, tmp_path, client):
    train = tmp_path / "train.jsonl"
    write_jsonl(train)
    return FineTuning(client).create_job("gpt-4o-mini", Files(client).upload(train)["id"])


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_follower_sees_every_event_once_in_order(tmp_path, order):
    with serve_fake(order=order, steps=5) as srv:
        client = make_client(srv.base_url)
        job = _create(srv, tmp_path, client)
        sleeps = Sleeps()
        follower = JobFollower(OpenAIProvider(client), job["id"], interval=0.5, sleep=sleeps)
        updates = list(follower)
        events = [u.event for u in updates if u.kind == "event"]
        assert [e.id for e in events] == [e["id"] for e in srv.api.events[job["id"]]]
        assert [u.kind for u in updates][-1] == "done"
        statuses = [(u.previous_status, u.job.status) for u in updates if u.kind == "status"]
        # (the fake advances on every GET: the first answer already says "queued")
        assert updates[0].kind == "job" and updates[0].job.status == "queued"
        assert statuses == [("queued", "running"), ("running", "succeeded")]
        assert follower.progress.step == 5 and follower.progress.total_steps == 5
        assert list(follower.progress.losses) == [round(2.0 / (1 + s), 4) for s in range(1, 6)]
        assert follower.job.fine_tuned_model.startswith("ft:gpt-4o-mini")
        event_calls = srv.api.calls("GET", f"/v1/fine_tuning/jobs/{job['id']}/events")
        job_calls = srv.api.calls("GET", f"/v1/fine_tuning/jobs/{job['id']}")
        # one events request per poll, plus at most one to learn the order of a newest-first backend
        assert len(event_calls) <= len(job_calls) + 1
        if order == "asc":
            cursors = [c.query.get("after") for c in event_calls]
            assert cursors[0] is None and all(cursors[1:])
        assert all(s <= 0.5 for s in sleeps) and len(sleeps) == len(job_calls) - 1


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_follower_with_equal_timestamps_misses_nothing(tmp_path, order):
    with serve_fake(order=order, steps=6, same_second=True) as srv:
        client = make_client(srv.base_url)
        job = _create(srv, tmp_path, client)
        follower = JobFollower(OpenAIProvider(client), job["id"], interval=0.01, sleep=Sleeps())
        got = [u.event.id for u in follower if u.kind == "event"]
        expected = [e["id"] for e in srv.api.events[job["id"]]]
        assert sorted(got) == sorted(expected) and len(set(got)) == len(got)
        # the first page cannot be ordered by time: it is held back until a new event shows the order
        assert follower.cursor.order == order
        assert got == expected


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_follower_on_an_ended_job_with_tied_timestamps_reads_the_contract_order(tmp_path, order):
    with serve_fake(order=order, steps=3, same_second=True) as srv:
        client = make_client(srv.base_url)
        job = _create(srv, tmp_path, client)
        list(JobFollower(OpenAIProvider(client), job["id"], interval=0.01, sleep=Sleeps()))  # run it to the end
        again = JobFollower(OpenAIProvider(client), job["id"], interval=0.01, sleep=Sleeps())
        got = [u.event.id for u in again if u.kind == "event"]
        expected = [e["id"] for e in srv.api.events[job["id"]]]
        assert sorted(got) == sorted(expected) and again.polls == 1
        # nothing new will come to tell the order: newest-first (OpenAI's) is assumed
        assert got == (expected if order == "desc" else expected[::-1]) or len(expected) < 2


def test_follower_rides_out_an_outage_and_times_out(tmp_path):
    with serve_fake(steps=50) as srv:
        client = make_client(srv.base_url, max_retries=0)
        job = _create(srv, tmp_path, client)
        srv.api.fail_next(3, 503, path_prefix=f"/v1/fine_tuning/jobs/{job['id']}")
        clock = [0.0]
        follower = JobFollower(OpenAIProvider(client), job["id"], interval=1.0, timeout=10.0,
                               clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
        kinds = [u.kind for u in follower]
        assert kinds.count("outage") >= 1 and "recovered" in kinds
        assert kinds[-1] == "done"
        assert follower.job.status == "running"  # timed out, not cancelled
        assert srv.api.jobs[job["id"]]["status"] == "running"


def test_follower_raises_on_unknown_job():
    with serve_fake() as srv:
        follower = JobFollower(OpenAIProvider(make_client(srv.base_url)), "ftjob-missing", interval=0.01)
        with pytest.raises(ApiError) as info:
            list(follower)
        assert info.value.status == 404


def test_follower_gives_up_after_max_outage(tmp_path):
    port = free_port()
    client = make_client(f"http://127.0.0.1:{port}", max_retries=0)
    clock = [0.0]
    follower = JobFollower(OpenAIProvider(client), "ftjob-x", interval=5.0, max_outage=12.0,
                           clock=lambda: clock[0], sleep=lambda s: clock.__setitem__(0, clock[0] + s))
    with pytest.raises(ApiError) as info:
        list(follower)
    assert info.value.kind == "connect"
    assert os.environ.get("SYNTH_API_KEY") is None
