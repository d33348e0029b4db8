"""`synth-ai demo`: the offline pipeline end to end, as a user runs it (a subprocess, no terminal)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import ROOT, run_cli

SMALL = ("--sessions", "12", "--steps", "6")


def backend_processes(marker: str, kind: str = "serve") -> list[int]:
    """PIDs of live processes whose command line mentions `marker` (the demo's backend data dir, or
    its trace DB for the proxy) and `kind` (serve, proxy)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().split()[2]
        except OSError:
            continue
        if marker in cmdline and kind in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids


def port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def spawn_demo(*args: str, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTH_", "DEFAULT_DEV"))}
    return subprocess.Popen([sys.executable, "-m", "synth_cli", "demo", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for stray processes")
def test_demo_runs_end_to_end_and_leaves_no_backend(tmp_path):
    out_dir = tmp_path / "demo"
    started = time.monotonic()
    res = run_cli("demo", "--dir", out_dir, *SMALL, timeout=120)
    took = time.monotonic() - started
    assert res.exit_code == 0, res.output
    assert took < 60, f"demo took {took:.0f}s"
    out = res.stdout
    # the seven steps, each with the command a user would type
    for title in ("1. Start the local backend", "2. Start the recording proxy", "3. A scripted agent",
                  "4. What is in the trace DB the proxy wrote", "5. Keep the good runs", "6. Fine-tune on it",
                  "7. What it cost", "8. Done"):
        assert title in out
    assert "$ synth-ai filter --db" in out and "--min-reward 1" in out
    assert re.search(r"\$ synth-ai proxy --upstream http://127\.0\.0\.1:\d+/v1 --db \S+traces\.db", out)
    assert re.search(r"^status: +succeeded$", out, re.M)
    assert re.search(r"fine-tuned model +ft:Qwen/Qwen3-4B-Instruct-2507:demo:ftjob-\w+", out)
    assert re.search(r"^balance +\$\d+\.\d\d", out, re.M)
    assert "Next, with your own traces and a real backend" in out
    assert "\x1b[" not in res.output and "Traceback" not in res.output
    # everything it made is in the directory it named
    for name in ("traces.db", "train.jsonl", "train.val.jsonl", "backend.log", "backend"):
        assert (out_dir / name).exists(), name
    lines = (out_dir / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert lines and all("messages" in json.loads(line) for line in lines)
    # and the backend is gone
    port = int(re.search(r"--base-url http://127\.0\.0\.1:(\d+)/v1", out).group(1))
    assert not port_answers(port)
    assert backend_processes(str(out_dir / "backend")) == []
    proxy_port = int(re.search(r"\$ synth-ai proxy .* --port (\d+)", out).group(1))
    assert not port_answers(proxy_port)
    assert backend_processes(str(out_dir / "traces.db"), "proxy") == []
    # a second run starts over in its own directory: a fresh backend, so the same balance
    again = run_cli("demo", "--dir", out_dir, *SMALL, timeout=120)
    assert again.exit_code == 0, again.output
    balance = re.compile(r"^balance +\$\d+\.\d\d", re.M)
    assert balance.search(again.stdout).group(0) == balance.search(out).group(0)
    # --quiet: the steps run quietly and only the fine-tuned model is printed
    quiet = run_cli("-q", "demo", "--dir", out_dir, *SMALL, timeout=120)
    assert quiet.exit_code == 0, quiet.output
    assert re.fullmatch(r"ft:Qwen/Qwen3-4B-Instruct-2507:demo:ftjob-\w+\n", quiet.stdout), quiet.stdout
    assert quiet.stderr == "", quiet.stderr


def test_demo_json_is_one_document(tmp_path):
    res = run_cli("--json", "demo", "--dir", tmp_path / "d", *SMALL, timeout=120)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["fine_tuned_model"].startswith("ft:Qwen/Qwen3-4B-Instruct-2507:demo:")
    assert Path(doc["train_file"]).is_file() and Path(doc["trace_db"]).is_file()
    assert doc["seconds"] > 0 and doc["files"]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for stray processes")
def test_ctrl_c_during_the_demo_stops_the_backend(tmp_path):
    out_dir = tmp_path / "demo"
    proc = spawn_demo("--dir", str(out_dir), "--sessions", "40", cwd=tmp_path)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "Step " in line:  # the job is training: the backend is up
                break
        assert any("Step " in line for line in seen), "".join(seen)
        assert backend_processes(str(out_dir / "backend"))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "error: interrupted: the demo stopped and its local backend and proxy were shut down" in err
    deadline = time.monotonic() + 10
    while backend_processes(str(out_dir / "backend")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend_processes(str(out_dir / "backend")) == []


def test_demo_refuses_a_directory_it_did_not_make(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me", encoding="utf-8")
    res = run_cli("demo", "--dir", mine)
    assert res.exit_code == 2 and "was not made by `synth-ai demo`" in res.stderr
    assert (mine / "notes.txt").read_text(encoding="utf-8") == "keep me"
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    a_file = tmp_path / "file"
    a_file.write_text("x", encoding="utf-8")
    res = run_cli("demo", "--dir", a_file)
    assert res.exit_code == 2 and "not a directory" in res.stderr


def test_demo_list_and_unknown_names(tmp_path):
    res = run_cli("--json", "demo", "--list")
    assert res.exit_code == 0
    assert [d["name"] for d in json.loads(res.stdout)["demos"]] == ["pipeline"]  # no examples/ here
    # examples/**/run_demo.sh under the working directory are listed too
    script = tmp_path / "examples" / "mine" / "run_demo.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/usr/bin/env bash\n# Says hello.\necho hello-from-example\n", encoding="utf-8")
    res = run_cli("demo", "--list")
    assert res.exit_code == 0 and "mine" in res.stdout and "Says hello." in res.stdout
    res = run_cli("demo", "mine")
    assert res.exit_code == 0 and "hello-from-example" in res.stdout
    script.write_text("#!/usr/bin/env bash\nexit 3\n", encoding="utf-8")
    res = run_cli("demo", "mine")
    assert res.exit_code == 1 and "demo mine failed (exit 3)" in res.stderr
    res = run_cli("demo", "nope")
    assert res.exit_code == 2 and "no demo named 'nope'" in res.stderr and "demo --list" in res.stderr


def test_repo_examples_are_listed_from_the_repo_root():
    res = run_cli("--json", "demo", "--list", cwd=ROOT)
    assert res.exit_code == 0, res.output
    names = [d["name"] for d in json.loads(res.stdout)["demos"]]
    assert names[0] == "pipeline" and "finetuning" in names


def test_on_a_terminal_with_several_demos_it_asks_which(tmp_path, monkeypatch):
    from synth_cli.output import Output
    from helpers import invoke

    script = tmp_path / "examples" / "hello" / "run_demo.sh"
    script.parent.mkdir(parents=True)
    script.write_text("#!/usr/bin/env bash\n# Says hello.\necho hello-from-example > said.txt\n", encoding="utf-8")
    monkeypatch.setattr(Output, "is_terminal", property(lambda self: True))
    res = invoke("demo", input="2\n")
    assert res.exit_code == 0, res.output
    assert "1. pipeline" in res.stdout and "2. hello: Says hello." in res.stdout and "Which demo" in res.stdout
    assert (tmp_path / "said.txt").read_text(encoding="utf-8").strip() == "hello-from-example"
    res = invoke("demo", input="nope\n")
    assert res.exit_code == 2 and "no demo named 'nope'" in res.stderr


def _kept_sessions(db: Path, min_reward: float = 1.0) -> dict[str, int]:
    """Sessions whose environment rewards add up to `min_reward` or more -> their LLM calls (read with sqlite3)."""
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT session_id, SUM(CASE WHEN event_type = 'environment' THEN COALESCE(reward, 0) ELSE 0 END), "
            "SUM(event_type = 'cais') FROM events GROUP BY session_id").fetchall()
    return {sid: calls for sid, reward, calls in rows if reward >= min_reward}


def test_the_trace_db_is_written_by_the_proxy_and_filter_keeps_the_rewarded_sessions(tmp_path):
    import sqlite3

    from synth_cli.demo.agent import ACTIONS, SYSTEM_PROMPT

    res = run_cli("--json", "demo", "--dir", tmp_path / "d", *SMALL, timeout=120)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    db = Path(doc["trace_db"])
    with sqlite3.connect(db) as conn:
        sessions = conn.execute("SELECT session_id, experiment_id, metadata FROM session_traces").fetchall()
        systems = conn.execute("SELECT event_type, system_instance_id, COUNT(*) FROM events "
                               "GROUP BY event_type, system_instance_id ORDER BY event_type").fetchall()
        experiments = sorted(r[0] for r in conn.execute("SELECT experiment_id FROM experiments"))
    # every call recorded by the proxy (its system id), every reward from the agent's POST to the proxy;
    # 12 sessions of 6 turns, grouped by the X-Synth-Session-Id header, named by the headers' experiment
    assert systems == [("cais", "proxy", 72), ("environment", "environment", 72)]
    assert len(sessions) == 12 and experiments == ["demo-careful", "demo-random"]
    assert all(json.loads(meta)["env_name"] == "crafter-lite" for _, _, meta in sessions)
    assert {exp for _, exp, _ in sessions} == {"demo-careful", "demo-random"}
    # filter --min-reward 1 kept exactly the rewarded sessions: one example per call they made
    kept = _kept_sessions(db)
    assert 0 < len(kept) < 12  # some runs are kept, some are not
    train = Path(doc["train_file"]).read_text(encoding="utf-8").splitlines()
    val = Path(doc["validation_file"]).read_text(encoding="utf-8").splitlines()
    assert len(train) + len(val) == sum(kept.values())
    # filter recorded how it made them (sft run puts this in the job's metadata: test_dataset_manifest.py)
    manifest = json.loads((db.parent / "train.jsonl.manifest.json").read_text(encoding="utf-8"))
    assert manifest["settings"]["filters"] == {"min_reward": 1.0}
    assert manifest["counts"]["sessions_kept"] == len(kept)
    assert manifest["files"][0]["sha256"] == hashlib.sha256(Path(doc["train_file"]).read_bytes()).hexdigest()
    assert str(db.parent / "train.jsonl.manifest.json") in doc["files"]
    turns = [0] * 7
    for line in train + val:
        example = json.loads(line)
        messages = example["messages"]
        assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
        last = messages[-1]
        assert last["role"] == "assistant" and last["tool_calls"][0]["function"]["name"] == "interact"
        actions = json.loads(last["tool_calls"][0]["function"]["arguments"])["actions"]
        assert actions and set(actions) <= set(ACTIONS)
        assert example["tools"][0]["function"]["name"] == "interact"
        turns[sum(m["role"] == "user" for m in messages)] += 1
    # each kept session gives its turns 1..6 once
    assert turns[1:] == [len(kept)] * 6 and turns[0] == 0


def test_demo_provider_together_fine_tunes_through_the_together_api(tmp_path):
    res = run_cli("demo", "--dir", tmp_path / "d", *SMALL, "--provider", "together", timeout=120)
    assert res.exit_code == 0, res.output
    out = res.stdout
    step = "".join(out.split("6. Fine-tune on it", 1)[1].split("7. What it cost", 1)[0].split())  # unwrapped
    assert re.search(r"--providertogether--base-urlhttp://127\.0\.0\.1:\d+/together/v1", step), out
    assert "on Together AI" in res.output  # the cost check names the provider
    assert re.search(r"^status: +succeeded$", out, re.M)
    assert re.search(r"fine-tuned model +ft:Qwen/Qwen3-4B-Instruct-2507:demo:", out)
    bad = run_cli("demo", "--dir", tmp_path / "e", "--provider", "azure")
    assert bad.exit_code == 2 and "expected openai or together" in bad.stderr


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to look for stray processes")
def test_ctrl_c_while_the_agent_runs_stops_the_proxy_and_the_backend(tmp_path):
    out_dir = tmp_path / "demo"
    proc = spawn_demo("--dir", str(out_dir), "--sessions", "2000", "--steps", "20", cwd=tmp_path)
    try:
        seen = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            seen.append(line)
            if "3. A scripted agent" in line:
                break
        assert any("3. A scripted agent" in line for line in seen), "".join(seen)
        time.sleep(1.0)  # the agent is calling the model through the proxy
        assert backend_processes(str(out_dir / "traces.db"), "proxy")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "error: interrupted: the demo stopped and its local backend and proxy were shut down" in err
    deadline = time.monotonic() + 10
    while (backend_processes(str(out_dir / "backend")) or backend_processes(str(out_dir / "traces.db"), "proxy")) \
            and time.monotonic() < deadline:
        time.sleep(0.1)
    assert backend_processes(str(out_dir / "backend")) == []
    assert backend_processes(str(out_dir / "traces.db"), "proxy") == []
    # what the agent did before Ctrl-C is in the DB: the proxy wrote its open sessions on the way out
    import sqlite3

    with sqlite3.connect(out_dir / "traces.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM events WHERE system_instance_id = 'proxy'").fetchone()[0] > 0
