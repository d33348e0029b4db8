"""Every file under examples/ runs as its docs say, against a local backend started here."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from helpers.devserver import running_server
from helpers import FIXTURE_DB, ROOT, run_cli
from tests.test_demo import backend_processes

EXAMPLES = ROOT / "examples"
RUN_DEMO = EXAMPLES / "finetuning" / "run_demo.sh"
AGENT = EXAMPLES / "tracing" / "agent.py"
FILTER_TOML = EXAMPLES / "filter.toml"


def example_env(**extra: str) -> dict[str, str]:
    """A user's shell: `python` and `synth-ai` on PATH, no synth-ai or OpenAI settings."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SYNTH_", "DEFAULT_DEV", "OPENAI_", "LIBSQL_", "TURSO_"))}
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def run_example(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def count(db: Path, sql: str) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for stray processes")
def test_run_demo_sh_starts_its_own_local_backend(tmp_path):
    work = tmp_path / "work"
    proc = run_example(["bash", str(RUN_DEMO)], tmp_path, example_env(WORK=str(work)))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    assert re.search(r"^traced 30 sessions into .*traces\.db", out, re.M)
    assert re.search(r"^status: +succeeded$", out, re.M)
    assert re.search(r"^fine-tuned model: ft:Qwen/Qwen3-4B-Instruct-2507:example:ftjob-\w+$", out, re.M)
    assert re.search(r"^balance +\$\d+\.\d\d", out, re.M)
    assert "Traceback" not in proc.stderr
    assert (work / "train.jsonl").stat().st_size > 0 and (work / "train.val.jsonl").exists()  # val_fraction
    assert backend_processes(str(work / "backend")) == []  # the script's trap stopped it


def test_run_demo_sh_uses_a_configured_backend(tmp_path):
    work = tmp_path / "work"
    with running_server(tmp_path, step_seconds=0.01) as srv:
        env = example_env(WORK=str(work), SYNTH_BASE_URL=srv.base_url, SYNTH_API_KEY=srv.api_key)
        proc = run_example(["bash", str(RUN_DEMO)], tmp_path, env)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        jobs = httpx.get(srv.base_url + "/fine_tuning/jobs", headers=srv.headers, timeout=10).json()["data"]
    assert len(jobs) == 1 and jobs[0]["status"] == "succeeded"
    assert jobs[0]["fine_tuned_model"] in proc.stdout
    assert not (work / "backend").exists()  # no local backend of its own


def test_demo_runs_the_example_by_name(tmp_path):
    # `synth-ai demo finetuning` from a directory holding examples/
    res = run_cli("demo", "finetuning", cwd=ROOT, env={"WORK": str(tmp_path / "w"),
                  "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}, timeout=180)
    assert res.exit_code == 0, res.output[-3000:]
    assert "fine-tuned model: ft:" in res.stdout
    assert not (ROOT / "synth-example").exists()


def test_tracing_agent_scripted_policy_feeds_filter(tmp_path):
    db = tmp_path / "agent.db"
    proc = run_example([sys.executable, str(AGENT), "--db", str(db), "--sessions", "8", "--seed", "3"], tmp_path,
                       example_env())
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"traced 8 sessions into .*: \d+ solved", proc.stdout)
    assert count(db, "SELECT count(*) FROM session_traces") == 8
    calls = count(db, "SELECT count(*) FROM events WHERE call_records IS NOT NULL")
    assert calls >= 8
    res = run_cli("--json", "filter", "--db", db, "--config", FILTER_TOML, "--val-fraction", "0",
                  "--output", tmp_path / "train.jsonl")
    assert res.exit_code == 0, res.output
    examples = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text(encoding="utf-8").splitlines()]
    assert examples and all(e["messages"][-1]["role"] == "assistant" for e in examples)
    assert all(e["messages"][-1]["tool_calls"][0]["function"]["name"] == "guess" for e in examples)
    assert all(e["tools"][0]["function"]["name"] == "guess" for e in examples)
    # later turns carry the tool results of earlier ones
    assert any(m["role"] == "tool" for e in examples for m in e["messages"])


class _ChatStub(BaseHTTPRequestHandler):
    """A tiny OpenAI-compatible /chat/completions endpoint: always guesses 32 (a real server could not run here)."""

    seen: list[dict] = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        answer = {
            "id": "chatcmpl-stub", "object": "chat.completion", "created": 1_760_000_000, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": f"call_{len(self.seen)}", "type": "function",
                                "function": {"name": "guess", "arguments": "{\"number\": 32}"}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59},
        }
        data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # keep test output quiet
        pass


def test_tracing_agent_calls_a_configured_endpoint(tmp_path):
    _ChatStub.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatStub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/v1"
        db = tmp_path / "real.db"
        env = example_env(OPENAI_BASE_URL=base, OPENAI_API_KEY="sk-test-not-a-real-key-0000", OPENAI_MODEL="stub-1")
        proc = run_example([sys.executable, str(AGENT), "--db", str(db), "--sessions", "2"], tmp_path, env)
    finally:
        server.shutdown()
    assert proc.returncode == 0, proc.stderr
    assert _ChatStub.seen and all(r["path"] == "/v1/chat/completions" for r in _ChatStub.seen)
    assert all(r["auth"] == "Bearer sk-test-not-a-real-key-0000" for r in _ChatStub.seen)
    assert all(r["body"]["model"] == "stub-1" and r["body"]["tools"] for r in _ChatStub.seen)
    assert count(db, "SELECT count(*) FROM events WHERE call_records IS NOT NULL") == len(_ChatStub.seen)
    res = run_cli("--json", "usage", "--db", db)
    assert res.exit_code == 0, res.output
    assert "stub-1" in res.stdout


def test_filter_toml_is_a_valid_config():
    res = run_cli("--json", "filter", "--db", FIXTURE_DB, "--config", FILTER_TOML, "--dry-run")
    assert res.exit_code == 0, res.output
    stats = res.json()
    assert json.dumps(stats).count("min_reward") >= 1
