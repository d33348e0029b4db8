"""`synth-ai serve` under hostile or unlucky input: bounded bodies, uploads and form fields (413/400,
memory flat while rejecting), deeply nested JSON, listening beyond loopback with the public key,
and idempotency records that survive a crash of the server in the middle of a job creation.

Every test talks to a real `synth-ai serve` subprocess on a free 127.0.0.1 port.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from helpers import run_cli
from helpers.devserver import BASE_MODEL, running_server
from tests.test_devserver import Api, assert_openai_error, write_train

JSON = {"content-type": "application/json"}


def peak_rss_mb(pid: int) -> float | None:
    """The server process's own peak RSS (VmHWM: never counts this test process)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("limits"), step_seconds=0.01, max_upload_bytes=100_000,
                        max_form_fields=4) as handle:
        yield handle


def test_an_oversize_json_body_is_a_413_and_memory_stays_flat(srv):
    before = peak_rss_mb(srv.proc.pid)
    big = b'{"model": "' + b"x" * (64 * 1024 * 1024) + b'"}'
    r = httpx.post(srv.base_url + "/fine_tuning/jobs", content=big, headers={**srv.headers, **JSON}, timeout=60)
    error = assert_openai_error(r, 413, code="request_too_large")
    assert "1,048,576 bytes" in error["message"] and "--max-json-bytes" in error["message"]

    def chunks():  # no Content-Length: counted as it arrives
        for _ in range(64):
            yield b"x" * (1024 * 1024)

    r = httpx.post(srv.base_url + "/fine_tuning/jobs", content=chunks(), headers={**srv.headers, **JSON}, timeout=60)
    assert_openai_error(r, 413, code="request_too_large")
    after = peak_rss_mb(srv.proc.pid)
    if before is not None and after is not None:
        assert after - before < 24, (before, after)  # 128 MB rejected; nothing of it was kept
    assert httpx.get(srv.base_url + "/fine_tuning/jobs", headers=srv.headers).status_code == 200


def test_a_100k_deep_json_body_is_a_400(srv):
    deep = b"[" * 100_000 + b"]" * 100_000
    for path in ("/fine_tuning/jobs", "/chat/completions"):
        r = httpx.post(srv.base_url + path, content=deep, headers={**srv.headers, **JSON}, timeout=30)
        if r.status_code == 404:  # the route is not there
            continue
        assert r.status_code == 400, r.text
        assert "1024 levels" in json.dumps(r.json())
    r = httpx.post(srv.base_url + "/fine_tuning/jobs", content=deep, timeout=30,
                   headers={**srv.headers, **JSON, "Idempotency-Key": "deep-1"})
    assert_openai_error(r, 400)


def test_uploads_are_bounded_and_leave_nothing_behind(srv, tmp_path):
    api = Api(srv)
    ok = api.upload(write_train(tmp_path / "small.jsonl"))
    assert ok["bytes"] < 100_000
    big = tmp_path / "big.jsonl"
    write_train(big, n=2000)
    assert big.stat().st_size > 100_000
    with big.open("rb") as fh:
        r = api.post("/files", files={"file": (big.name, fh)}, data={"purpose": "fine-tune"})
    error = assert_openai_error(r, 413, code="request_too_large")
    assert "100,000 bytes" in error["message"] and "--max-upload-bytes" in error["message"]

    def chunked_body():  # the same upload without Content-Length: refused at the first byte past the limit
        yield (b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
               b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n')
        for _ in range(100):
            yield b"y" * 10_000
        yield b"\r\n--b--\r\n"

    r = api.post("/files", content=chunked_body(), headers={"content-type": "multipart/form-data; boundary=b"})
    assert_openai_error(r, 413, code="request_too_large")
    assert [f["id"] for f in api.get("/files").json()["data"]] == [ok["id"]]
    assert sorted(p.name for p in (srv.data_dir / "files").iterdir()) == [ok["id"]]
    assert list((srv.data_dir / "tmp").iterdir()) == []


def test_form_fields_are_bounded(srv, tmp_path):
    api = Api(srv)
    path = write_train(tmp_path / "t.jsonl")
    fields = {"purpose": "fine-tune", **{f"extra{i}": "v" for i in range(10)}}
    with path.open("rb") as fh:
        r = api.post("/files", files={"file": (path.name, fh)}, data=fields)
    error = assert_openai_error(r, 400)
    assert "too many form fields" in error["message"] and "4" in error["message"]
    huge_field = {"purpose": "fine-tune", "note": "z" * (200 * 1024)}
    with path.open("rb") as fh:
        r = api.post("/files", files={"file": (path.name, fh)}, data=huge_field)
    assert r.status_code in (400, 413) and "too large" in r.json()["error"]["message"]


def test_a_refused_upload_does_not_use_up_its_idempotency_key(srv, tmp_path):
    api = Api(srv)
    big = write_train(tmp_path / "big.jsonl", n=2000)
    with big.open("rb") as fh:
        r = api.post("/files", files={"file": (big.name, fh)}, data={"purpose": "fine-tune"},
                     headers={"Idempotency-Key": "retry-smaller"})
    assert r.status_code == 413
    small = api.upload(write_train(tmp_path / "small.jsonl"), headers={"Idempotency-Key": "retry-smaller"})
    assert small["bytes"] == (tmp_path / "small.jsonl").stat().st_size
    api.delete(f"/files/{small['id']}")


def test_the_json_limit_is_configurable(tmp_path):
    with running_server(tmp_path, max_json_bytes=2048, max_chat_bytes=8192) as srv:
        chat = {"model": "m", "messages": [{"role": "user", "content": "w " * 2000}]}  # 4 KB: over the JSON limit
        r = httpx.post(srv.base_url + "/chat/completions", json=chat, headers=srv.headers)
        assert r.status_code == 200, r.text
        chat["messages"][0]["content"] = "w " * 5000
        r = httpx.post(srv.base_url + "/chat/completions", json=chat, headers=srv.headers)
        assert "--max-chat-bytes" in assert_openai_error(r, 413, code="request_too_large")["message"]
        body = json.dumps({"model": BASE_MODEL, "training_file": "file-x", "suffix": "s" * 3000}).encode()
        r = httpx.post(srv.base_url + "/fine_tuning/jobs", content=body, headers={**srv.headers, **JSON})
        assert "2,048 bytes" in assert_openai_error(r, 413, code="request_too_large")["message"]
        small = json.dumps({"model": BASE_MODEL, "training_file": "file-x"}).encode()
        r = httpx.post(srv.base_url + "/fine_tuning/jobs", content=small, headers={**srv.headers, **JSON})
        assert_openai_error(r, 400, code="file_not_found")


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "example.com", "192.168.1.10"])
def test_listening_beyond_loopback_needs_configured_keys(tmp_path, host):
    res = run_cli("serve", "--host", host, "--port", "0", "--data-dir", tmp_path / "d", timeout=30,
                  env={"SYNTH_DEV_API_KEYS": ""})
    assert res.exit_code == 1 and "Traceback" not in res.output
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "public default dev key" in lines[0], res.stderr
    assert "SYNTH_DEV_API_KEYS" in res.stderr
    assert not (tmp_path / "d").exists()  # refused before anything was created


def test_loopback_names_are_recognised():
    from synth_cli.commands.serve import is_loopback

    assert all(is_loopback(h) for h in ("127.0.0.1", "127.0.0.2", "localhost", "::1", "[::1]"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "", "::", "10.0.0.1", "myhost", "::ffff:10.0.0.1"))


# --------------------------------------------------------------------------- idempotency after a crash


def _idempotency_rows(data_dir: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{data_dir / 'state.db'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT key, state FROM idempotency").fetchall()
    finally:
        conn.close()


def test_a_pending_record_of_a_crashed_server_does_not_answer_409(tmp_path):
    """A server killed while creating a job leaves a pending record; the retry after the restart
    gets the one job (not a 409, not a second job)."""
    train = tmp_path / "big.jsonl"
    write_train(train, n=60_000)  # validated at job creation: long enough to kill the server meanwhile
    with running_server(tmp_path, step_seconds=0.05) as srv:
        api = Api(srv)
        file_id = api.upload(train)["id"]
        request = {"model": BASE_MODEL, "training_file": file_id}
        headers = {"Idempotency-Key": "crash-1"}
        first: dict = {}

        def create() -> None:
            try:
                first["response"] = httpx.post(srv.base_url + "/fine_tuning/jobs", json=request,
                                               headers={**srv.headers, **headers}, timeout=60)
            except httpx.HTTPError as exc:
                first["error"] = exc

        thread = threading.Thread(target=create)
        thread.start()
        deadline = time.monotonic() + 30
        while not _idempotency_rows(srv.data_dir) and time.monotonic() < deadline:
            time.sleep(0.005)
        srv.proc.kill()  # SIGKILL: no clean shutdown
        srv.proc.wait(timeout=10)
        thread.join(timeout=60)
        srv.restart()
        api = Api(srv)
        r = api.post("/fine_tuning/jobs", json=request, headers=headers)
        assert r.status_code == 200, r.text
        job = r.json()
        again = api.post("/fine_tuning/jobs", json=request, headers=headers)
        assert again.status_code == 200 and again.json()["id"] == job["id"]
        jobs = api.get("/fine_tuning/jobs").json()["data"]
        assert [j["id"] for j in jobs] == [job["id"]]
        if "response" in first:  # the first answer got out before the kill: it named the same job
            assert first["response"].json()["id"] == job["id"]


def test_a_pending_record_left_by_an_earlier_run_is_taken_over(tmp_path):
    """Deterministic version: a pending record written by another run of the server (as a crash
    leaves it) is taken over by the next request with that key."""
    api_key_owner = None
    with running_server(tmp_path, step_seconds=0.05) as srv:
        api = Api(srv)
        file_id = api.upload(write_train(tmp_path / "t.jsonl"))["id"]
        api.create_job(file_id, headers={"Idempotency-Key": "seen"})
        conn = sqlite3.connect(srv.data_dir / "state.db")
        api_key_owner = conn.execute("SELECT owner FROM idempotency WHERE key = 'seen'").fetchone()[0]
        conn.close()
    conn = sqlite3.connect(srv.data_dir / "state.db")
    with conn:
        conn.execute("INSERT INTO idempotency (owner, key, route, fingerprint, state, created_at, instance) "
                     "VALUES (?, 'orphan', 'POST /v1/fine_tuning/jobs', 'x', 'pending', ?, 'an-earlier-run')",
                     (api_key_owner, time.time()))
    conn.close()
    with running_server(tmp_path, step_seconds=0.05) as srv:
        api = Api(srv)
        job = api.create_job(file_id, headers={"Idempotency-Key": "orphan"})
        assert api.create_job(file_id, headers={"Idempotency-Key": "orphan"})["id"] == job["id"]
        assert len(api.get("/fine_tuning/jobs").json()["data"]) == 2
        assert ("orphan", "done") in _idempotency_rows(srv.data_dir)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
