"""`synth-ai serve` as an operator sees it: restarts, fault injection, the command itself, big uploads."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers.devserver import BASE_MODEL, DEFAULT_DEV_KEY, free_port, running_server
from helpers import run_cli
from tests.test_devserver import Api, assert_openai_error, write_train


# --------------------------------------------------------------------------- persistence


def test_restart_loses_nothing_and_running_jobs_resume(tmp_path):
    with running_server(tmp_path, step_seconds=0.05) as srv:
        api = Api(srv)
        train = write_train(tmp_path / "t.jsonl")
        done_file = api.upload(train)["id"]
        done = api.wait(api.create_job(done_file, hyperparameters={"n_epochs": 1, "batch_size": 6})["id"])
        assert done["status"] == "succeeded"
        running = api.create_job(done_file, seed=3, hyperparameters={"n_epochs": 3})  # 36 steps ≈ 2 s
        deadline = time.monotonic() + 30
        while True:
            metrics = [e for e in api.events(running["id"]) if e["type"] == "metrics"]
            if len(metrics) >= 3:
                break
            assert time.monotonic() < deadline, "the job never started running"
            time.sleep(0.05)
        uploads = {"purpose": "fine-tune"}  # the running job may finish meanwhile and add its result file
        files_before = api.get("/files", params=uploads).json()["data"]
        done_events = api.events(done["id"])
        events_before = api.events(running["id"])
        api.http.close()

        srv.restart()

        api = Api(srv)
        assert api.get("/files", params=uploads).json()["data"] == files_before
        assert api.get(f"/files/{done_file}/content").content == train.read_bytes()
        assert api.job(done["id"]) == done
        assert api.events(done["id"]) == done_events
        job = api.job(running["id"])
        assert job["status"] in ("running", "succeeded")
        after = api.events(running["id"])
        assert after[: len(events_before)] == events_before  # nothing lost, nothing rewritten
        job = api.wait(running["id"], timeout=60)
        assert job["status"] == "succeeded"
        events = api.events(running["id"])
        steps = [e["data"]["step"] for e in events if e["type"] == "metrics"]
        assert steps == list(range(1, 37))  # resumed where it was: no step twice, none skipped
        assert len({e["id"] for e in events}) == len(events)
        assert len(api.get(f"/fine_tuning/jobs/{running['id']}/checkpoints").json()["data"]) == 3
        # same seed, same curve, restart or not
        assert [e["data"]["train_loss"] for e in events if e["type"] == "metrics"][:3] == [
            e["data"]["train_loss"] for e in events_before if e["type"] == "metrics"][:3]
        api.http.close()


# --------------------------------------------------------------------------- fault injection


def test_fail_rate_one_fails_every_api_call_but_not_health(tmp_path):
    with running_server(tmp_path, fail_rate=1.0, seed=1) as srv:
        statuses = set()
        for _ in range(12):
            r = httpx.get(srv.base_url + "/files", headers=srv.headers, timeout=10)
            error = assert_openai_error(r, r.status_code, code="injected_fault")
            assert error["type"] == "server_error"
            statuses.add(r.status_code)
        assert statuses <= {500, 502, 503} and len(statuses) > 1
        assert httpx.get(srv.base_url + "/health", timeout=10).status_code == 200
        # auth is checked first: a wrong key is a 401, not an injected 5xx
        r = httpx.get(srv.base_url + "/files", headers={"Authorization": "Bearer sk-nope-000000000000"}, timeout=10)
        assert r.status_code == 401


def test_faults_with_idempotency_keys_still_create_exactly_one_job(tmp_path):
    train = write_train(tmp_path / "t.jsonl")
    with running_server(tmp_path, fail_rate=0.5, seed=4, step_seconds=0.01) as srv:
        http = httpx.Client(base_url=srv.base_url, headers=srv.headers, timeout=10)

        def until_ok(send) -> httpx.Response:
            for _ in range(60):
                r = send()
                if r.status_code < 500:
                    return r
                assert r.json()["error"]["code"] == "injected_fault"
            raise AssertionError("never got through")

        def upload():
            with train.open("rb") as fh:
                return http.post("/files", files={"file": ("t.jsonl", fh)}, data={"purpose": "fine-tune"},
                                 headers={"Idempotency-Key": "up-1"})

        file_id = until_ok(upload).json()["id"]
        job = until_ok(lambda: http.post("/fine_tuning/jobs", json={"model": BASE_MODEL, "training_file": file_id},
                                         headers={"Idempotency-Key": "job-1"})).json()
        assert job["object"] == "fine_tuning.job"
        http.close()
    with running_server(tmp_path) as srv:  # same data dir, no faults
        api = Api(srv)
        assert [f["id"] for f in api.get("/files").json()["data"]] == [file_id]
        assert [j["id"] for j in api.get("/fine_tuning/jobs").json()["data"]] == [job["id"]]
        api.http.close()


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    with running_server(tmp_path, rate_limit=3) as srv:
        http = httpx.Client(base_url=srv.base_url, headers=srv.headers, timeout=10)
        answers = [http.get("/files") for _ in range(10)]
        assert [r.status_code for r in answers[:3]] == [200, 200, 200]  # a burst of `rate` requests passes
        limited = [r for r in answers if r.status_code == 429]
        assert len(limited) >= 3
        error = assert_openai_error(limited[0], 429, code="rate_limit_exceeded")
        assert error["type"] == "requests"
        assert int(limited[0].headers["retry-after"]) >= 1 and int(limited[0].headers["retry-after-ms"]) > 0
        # waiting as told is enough
        for _ in range(20):
            r = http.get("/files")
            if r.status_code == 429:
                break
        assert r.status_code == 429
        time.sleep(int(r.headers["retry-after-ms"]) / 1000 + 0.02)
        assert http.get("/files").status_code == 200
        assert httpx.get(srv.base_url + "/health", timeout=10).status_code == 200
        http.close()


def test_latency_is_added_to_api_calls(tmp_path):
    with running_server(tmp_path, latency_ms=400) as srv:
        started = time.monotonic()
        assert httpx.get(srv.base_url + "/files", headers=srv.headers, timeout=10).status_code == 200
        assert time.monotonic() - started >= 0.4


# --------------------------------------------------------------------------- the command


def test_banner_masks_configured_keys_and_ctrl_c_is_clean(tmp_path):
    key = "sk-team-secret-0123456789-xyz1"
    with running_server(tmp_path, api_keys=[key], step_seconds=0.3) as srv:
        assert httpx.get(srv.base_url + "/files", headers=srv.headers, timeout=10).status_code == 200
        assert httpx.get(srv.base_url + "/files", headers={"Authorization": f"Bearer {DEFAULT_DEV_KEY}"},
                         timeout=10).status_code == 401
        code = srv.stop()
        log = srv.log()
    assert code == 0, log
    assert key not in log and "sk-tea…xyz1" in log
    assert f"http://127.0.0.1:{srv.port}/v1" in log and "simulator" in log
    assert "Traceback" not in log and "synth-ai serve stopped" in log


def test_default_key_is_printed_and_sigterm_is_clean(tmp_path):
    with running_server(tmp_path) as srv:
        srv.proc.terminate()
        assert srv.proc.wait(timeout=15) == 0
        log = srv.log()
    assert DEFAULT_DEV_KEY in log and "public default dev key" in log and "Traceback" not in log


def test_port_in_use_is_one_line(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = run_cli("serve", "--port", port, "--data-dir", tmp_path / "d", timeout=30)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.strip().splitlines() == [f"error: port {port} on 127.0.0.1 is already in use "
                                               "(stop the other server or pass another --port)"]


def test_a_data_dir_from_before_result_files_is_upgraded(tmp_path):
    """Jobs of a data dir written before jobs had result files read as `result_files: []`; new ones get theirs."""
    import sqlite3

    train = write_train(tmp_path / "t.jsonl")
    with running_server(tmp_path, step_seconds=0.01) as srv:
        api = Api(srv)
        file_id = api.upload(train)["id"]
        old = api.wait(api.create_job(file_id, hyperparameters={"n_epochs": 1, "batch_size": 6})["id"])
        assert len(old["result_files"]) == 1
        api.http.close()
    with sqlite3.connect(srv.data_dir / "state.db") as conn:  # as an older `serve` (schema 1) left it
        conn.executescript("DROP TRIGGER jobs_object_insert; DROP TRIGGER jobs_object_update; "
                           "DROP TRIGGER jobs_object_delete; DROP TRIGGER events_object_insert; "
                           "DROP TABLE job_objects; DROP TABLE meta; ALTER TABLE events DROP COLUMN body; "
                           "ALTER TABLE jobs DROP COLUMN result_files; PRAGMA user_version = 1;")
    with running_server(tmp_path, step_seconds=0.01) as srv:
        api = Api(srv)
        assert api.job(old["id"])["result_files"] == [] and api.job(old["id"])["status"] == "succeeded"
        assert [j["id"] for j in api.get("/fine_tuning/jobs").json()["data"]] == [old["id"]]
        events = api.events(old["id"])  # rendered once by the upgrade
        assert events[0]["message"].startswith("Created fine-tuning job") and events[-1]["message"] == (
            "The job has successfully completed")
        new = api.wait(api.create_job(file_id, hyperparameters={"n_epochs": 1, "batch_size": 6})["id"])
        (results_id,) = new["result_files"]
        assert api.get(f"/files/{results_id}/content").text.count("\n") == 1 + 2  # header + 2 steps
        api.http.close()


def test_data_dir_in_use_and_bad_flags(tmp_path):
    with running_server(tmp_path) as srv:
        res = run_cli("serve", "--port", free_port(), "--data-dir", srv.data_dir, timeout=30)
        assert res.exit_code == 1 and "another `synth-ai serve` is using" in res.stderr
    not_dir = tmp_path / "file"
    not_dir.write_text("x")
    res = run_cli("serve", "--data-dir", not_dir, timeout=30)
    assert res.exit_code == 2 and "not a directory" in res.stderr
    for flags in (["--fail-rate", "2"], ["--step-seconds", "0"], ["--rate-limit", "-1"], ["--port", "70000"]):
        res = run_cli("serve", *flags, timeout=30)
        assert res.exit_code == 2 and "Traceback" not in res.output, flags


def test_data_dir_from_env(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    env["SYNTH_DATA_DIR"] = str(tmp_path / "from-env")
    proc = subprocess.Popen([sys.executable, "-m", "synth_cli", "--json", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        banner = json.loads(proc.stdout.readline())
        assert banner["data_dir"] == str(tmp_path / "from-env") and banner["simulator"] is True
        assert banner["base_url"] == f"http://127.0.0.1:{port}/v1" and banner["api_keys"] == [DEFAULT_DEV_KEY]
        assert (tmp_path / "from-env" / "state.db").is_file()
    finally:
        proc.terminate()
        proc.communicate(timeout=15)


def test_serve_command_imports_stay_light():
    code = ("import sys, synth_cli.app; "
            "heavy = [m for m in ('starlette', 'uvicorn', 'multipart', 'python_multipart', 'synth_cli.devserver.server') "
            "if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stderr


# --------------------------------------------------------------------------- big uploads


def _rss_peak_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc to read the server's peak RSS")
def test_large_upload_streams_to_disk_with_flat_memory(tmp_path):
    size_mb = 200
    line = (json.dumps({"messages": [{"role": "user", "content": "x" * 900},
                                     {"role": "assistant", "content": "y" * 60}]}) + "\n").encode()
    lines_per_mb = (1 << 20) // len(line)
    total_lines = lines_per_mb * size_mb
    boundary = "synthtestboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nfine-tune\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.jsonl\"\r\n"
            "Content-Type: application/jsonl\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body():
        yield head
        chunk = line * lines_per_mb
        for _ in range(size_mb):
            yield chunk
        yield tail

    length = len(head) + len(line) * total_lines + len(tail)
    with running_server(tmp_path) as srv:
        http = httpx.Client(base_url=srv.base_url, headers=srv.headers, timeout=120)
        http.get("/files")  # warm up: imports and first request done before measuring
        before = _rss_peak_kb(srv.proc.pid)
        r = http.post("/files", content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                                         "Content-Length": str(length)})
        assert r.status_code == 200, r.text
        grown_mb = (_rss_peak_kb(srv.proc.pid) - before) / 1024
        file = r.json()
        assert file["bytes"] == len(line) * total_lines
        assert (srv.data_dir / "files" / file["id"]).stat().st_size == file["bytes"]
        assert grown_mb < 40, f"server peak RSS grew by {grown_mb:.0f} MB for a {size_mb} MB upload"
        http.close()


def test_corrupt_state_db_is_one_clear_error(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "state.db").write_bytes(b"this is not sqlite at all, just text" * 10)
    res = run_cli("serve", "--port", free_port(), "--data-dir", data, timeout=30)
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.stderr.startswith(f"error: cannot use data dir {data}: state.db is not usable")
    assert (data / "state.db").read_bytes().startswith(b"this is not sqlite")  # left as it was


def test_accepted_connections_get_tcp_nodelay():
    """The listening socket says it is TCP, so asyncio turns Nagle's algorithm off on every accepted
    connection (with protocol 0 it did not, and each answer on a kept-alive connection waited for a
    delayed ACK)."""
    import asyncio
    import socket

    from synth_cli.devserver.run import bind

    async def accepted_nodelay() -> int:
        listener = bind("127.0.0.1", 0)
        seen: asyncio.Future = asyncio.get_running_loop().create_future()

        def on_client(reader, writer) -> None:
            sock = writer.get_extra_info("socket")
            seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(on_client, sock=listener)
        _, writer = await asyncio.open_connection(*listener.getsockname()[:2])
        try:
            return await asyncio.wait_for(seen, 10)
        finally:
            writer.close()
            server.close()
            await server.wait_closed()

    assert asyncio.run(accepted_nodelay()) != 0


def test_a_paused_job_stays_paused_across_a_restart(tmp_path):
    train = write_train(tmp_path / "t.jsonl", n=40)
    with running_server(tmp_path, step_seconds=0.01) as srv:
        api = Api(srv)
        job = api.create_job(api.upload(train)["id"], hyperparameters={"n_epochs": 10, "batch_size": 1})
        api.wait(job["id"], statuses=("running",))
        assert api.post(f"/fine_tuning/jobs/{job['id']}/pause").json()["status"] == "paused"
        steps = [e for e in api.events(job["id"]) if e["type"] == "metrics"]
        srv.restart()
        api = Api(srv)
        assert api.job(job["id"])["status"] == "paused"
        assert [e for e in api.events(job["id"]) if e["type"] == "metrics"] == steps
        assert api.post(f"/fine_tuning/jobs/{job['id']}/resume").json()["status"] == "running"
        api.wait(job["id"], statuses=("succeeded",), timeout=120)
        metrics = sorted(e["data"]["step"] for e in api.events(job["id"]) if e["type"] == "metrics")
        assert metrics == list(range(1, 401))
        api.http.close()


def test_read_models_are_rendered_again_when_their_definition_changes(tmp_path):
    """The job and event objects kept by SQLite are rebuilt on start when the definition they were
    rendered with is not the current one (recorded in the meta table)."""
    import sqlite3

    train = write_train(tmp_path / "t.jsonl")
    with running_server(tmp_path, step_seconds=0.01) as srv:
        api = Api(srv)
        job = api.wait(api.create_job(api.upload(train)["id"], hyperparameters={"n_epochs": 1})["id"])
        events = api.events(job["id"])
        api.http.close()
    with sqlite3.connect(srv.data_dir / "state.db") as conn:  # as an older definition left them
        conn.execute("UPDATE meta SET value = 'an-older-definition' WHERE key = 'derived'")
        conn.execute("UPDATE job_objects SET body = '{\"stale\": true}'")
        conn.execute("UPDATE events SET body = '{\"stale\": true}'")
    with running_server(tmp_path, step_seconds=0.01) as srv:
        api = Api(srv)
        assert api.job(job["id"]) == job
        assert api.get("/fine_tuning/jobs").json()["data"] == [job]
        assert api.events(job["id"]) == events
        api.http.close()
