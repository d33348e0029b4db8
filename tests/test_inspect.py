"""`session`, `experiments`, `experiment`, `recent`, `usage` and `status` against the fixture."""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading

import pytest

from helpers.inspectdb import copy_fixture, make_earlier_schema, make_old_timestamps, truth
from helpers import FIXTURE_COUNTS, FIXTURE_DB, FIXTURE_DIR, invoke, run_cli

C = FIXTURE_COUNTS
TRUTH = truth()
SESSION = "36f675cc-81e7-4ef5-e8e2-5d940ed90475"


# --------------------------------------------------------------------------- experiments


def test_experiments_json_matches_the_fixture():
    data = invoke("--json", "experiments", "--db", FIXTURE_DB).json()
    rows = data["experiments"]
    assert data["total"] == 3
    assert sorted(r["name"] for r in rows) == ["crafter_run_0", "crafter_run_1", "crafter_run_2"]
    assert all(r["sessions"] == 10 and r["events"] == 240 and r["messages"] == 160 and r["llm_calls"] == 80
               for r in rows)
    assert sum(r["total_tokens"] for r in rows) == TRUTH["total_tokens"]
    assert sum(r["cost_usd"] for r in rows) == pytest.approx(TRUTH["cost_usd"], abs=1e-8)
    assert all(r["first_activity"].startswith("2026-11-22T22:23:49") for r in rows)
    # most recently active first
    assert [r["last_activity"] for r in rows] == sorted((r["last_activity"] for r in rows), reverse=True)


def test_experiments_human_and_limit():
    result = invoke("experiments", "--db", FIXTURE_DB, "--limit", "2")
    assert result.exit_code == 0, result.output
    assert "crafter_run_2" in result.stdout and "crafter_run_0" not in result.stdout
    assert "showing 2 of 3" in result.stdout
    assert "33,703" in result.stdout  # thousands separators


def test_sessions_without_experiment_are_listed(tmp_path):
    import sqlite3

    db = copy_fixture(tmp_path / "t.db")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE session_traces SET experiment_id = NULL WHERE session_id = ?", (SESSION,))
    rows = invoke("--json", "experiments", "--db", db).json()["experiments"]
    loose = [r for r in rows if r["experiment_id"] is None]
    assert len(loose) == 1 and loose[0]["sessions"] == 1 and loose[0]["events"] == 24
    assert sum(r["sessions"] for r in rows) == 30
    assert "(no experiment)" in invoke("experiments", "--db", db).stdout


def test_experiment_by_name_and_id_prefix():
    by_name = invoke("--json", "experiment", "crafter_run_1", "--db", FIXTURE_DB)
    assert by_name.exit_code == 0, by_name.output
    data = by_name.json()
    assert data["experiment"]["experiment_id"] == "exp_d23f0824128b"
    sessions = data["sessions"]
    assert len(sessions) == 10
    assert all(s["steps"] == 8 and s["events"] == 24 and s["llm_calls"] == 8 and s["messages"] == 16 for s in sessions)
    assert all(s["models"] == ["gpt-4o-mini"] for s in sessions)
    for s in sessions:
        assert s["reward"] == TRUTH["rewards"][s["session_id"]]
    assert data["totals"]["total_tokens"] == TRUTH["per_model"]["gpt-4o-mini"]["total_tokens"]
    by_prefix = invoke("--json", "experiment", "exp_d23", "--db", FIXTURE_DB).json()
    assert by_prefix["sessions"] == sessions


def test_rewards_across_experiments_match_ground_truth():
    sessions = []
    for name in ("crafter_run_0", "crafter_run_1", "crafter_run_2"):
        sessions += invoke("--json", "experiment", name, "--db", FIXTURE_DB).json()["sessions"]
    assert len(sessions) == C["sessions"]
    assert sum(1 for s in sessions if s["reward"] >= 1) == C["reward_ge_1"]
    assert sum(1 for s in sessions if s["reward"] >= 2) == C["reward_ge_2"]


def test_experiment_human_output():
    result = invoke("experiment", "crafter_run_0", "--db", FIXTURE_DB)
    assert result.exit_code == 0
    assert "exp_6513270e269e" in result.stdout and SESSION in result.stdout
    assert "Qwen/Qwen3-4B-Instruct-2507" in result.stdout
    assert "hint: synth-ai session ID" in result.stderr


def test_experiment_table_is_capped_and_json_is_not():
    full = invoke("--json", "experiment", "crafter_run_1", "--db", FIXTURE_DB).json()["sessions"]
    ids = [s["session_id"] for s in full]
    result = invoke("experiment", "crafter_run_1", "--db", FIXTURE_DB, "--limit", "3")
    assert result.exit_code == 0, result.output
    assert all(i in result.stdout for i in ids[:3]) and not any(i in result.stdout for i in ids[3:])
    assert "showing 3 of 10 sessions: 7 more (use --limit N or --json)" in result.stdout
    assert "10" in result.stdout  # the totals still count every session
    assert invoke("--json", "experiment", "crafter_run_1", "--db", FIXTURE_DB, "--limit", "3"
                  ).json()["sessions"] == full
    default = invoke("experiment", "crafter_run_1", "--db", FIXTURE_DB)
    assert all(i in default.stdout for i in ids) and "more (use --limit" not in default.stdout


def test_experiment_ambiguous_and_unknown():
    amb = invoke("experiment", "crafter", "--db", FIXTURE_DB)
    assert amb.exit_code == 1
    line, hint = amb.stderr.splitlines()
    assert line.startswith("error: experiment 'crafter' is ambiguous: 3 match")
    assert all(x in line for x in ("crafter_run_0", "crafter_run_1", "crafter_run_2"))
    unknown = invoke("experiment", "nope", "--db", FIXTURE_DB)
    assert unknown.exit_code == 1
    assert unknown.stderr.splitlines()[0].startswith("error: no experiment 'nope' in ")
    assert unknown.stderr.splitlines()[1].startswith("hint: experiments: crafter_run_")


# --------------------------------------------------------------------------- recent


def test_recent_wide_window_has_every_run():
    data = invoke("--json", "recent", "--hours", "1000000", "--db", FIXTURE_DB).json()
    assert len(data["experiments"]) == 3
    assert sum(r["sessions"] for r in data["experiments"]) == 30
    assert sum(r["events"] for r in data["experiments"]) == 720
    assert sum(r["messages"] for r in data["experiments"]) == 480
    assert sum(r["total_tokens"] for r in data["experiments"]) == TRUTH["total_tokens"]


def test_recent_old_activity_is_not_recent(tmp_path):
    db = make_old_timestamps(copy_fixture(tmp_path / "old.db"))
    data = invoke("--json", "recent", "--hours", "24", "--db", db).json()
    assert data["experiments"] == [] and data["hours"] == 24
    human = invoke("recent", "--db", db)
    assert human.exit_code == 0 and "No activity in the last 24 hours" in human.stdout


def test_recent_window_counts_only_active_sessions(tmp_path):
    import sqlite3
    from datetime import datetime, timedelta, timezone

    db = make_old_timestamps(copy_fixture(tmp_path / "t.db"))
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    with sqlite3.connect(db) as conn:  # one session of crafter_run_0 ran an hour ago
        conn.execute("UPDATE session_traces SET created_at = ? WHERE session_id = ?",
                     (str(now - timedelta(hours=1)), SESSION))
    data = invoke("--json", "recent", "--hours", "2", "--db", db).json()
    [row] = data["experiments"]
    assert row["name"] == "crafter_run_0" and row["sessions"] == 1 and "runs" not in row and row["events"] == 24


def test_recent_rejects_a_bad_window():
    result = invoke("recent", "--hours", "0", "--db", FIXTURE_DB)
    assert result.exit_code == 2 and result.stderr.startswith("error: --hours 0: must be greater than 0")


# --------------------------------------------------------------------------- usage


def test_usage_per_model_matches_ground_truth():
    data = invoke("--json", "usage", "--db", FIXTURE_DIR).json()
    rows = {r["model"]: r for r in data["models"]}
    assert {m: r["calls"] for m, r in rows.items()} == C["per_model"]
    for model, expected in TRUTH["per_model"].items():
        row = rows[model]
        assert row["provider"] == expected["provider"]
        assert (row["input_tokens"], row["output_tokens"], row["total_tokens"]) == (
            expected["input_tokens"], expected["output_tokens"], expected["total_tokens"])
        assert row["cost_usd"] == pytest.approx(expected["cost_usd"], abs=1e-9)
        assert row["avg_latency_ms"] == expected["latency"] / expected["calls"]
        assert row["first_used"] == "2026-11-22T22:23:49.000Z" and row["last_used"] == "2026-11-22T22:23:50.000Z"
    assert data["totals"]["calls"] == 240 and data["totals"]["total_tokens"] == TRUTH["total_tokens"]


def test_usage_model_filter_exact_glob_and_case():
    for pattern in ("gpt-4o-mini", "GPT-4O-MINI", "gpt*"):
        rows = invoke("--json", "usage", "--db", FIXTURE_DB, "--model", pattern).json()["models"]
        assert [r["model"] for r in rows] == ["gpt-4o-mini"], pattern
    two = invoke("--json", "usage", "--db", FIXTURE_DB, "-m", "gpt-4o-mini", "-m", "claude-3-5-haiku").json()
    assert sorted(r["model"] for r in two["models"]) == ["claude-3-5-haiku", "gpt-4o-mini"]
    none = invoke("usage", "--db", FIXTURE_DB, "--model", "o3")
    assert none.exit_code == 0 and "No LLM calls matching o3." in none.stdout


def test_usage_since():
    assert invoke("--json", "usage", "--db", FIXTURE_DB, "--since", "2026-11-22").json()["totals"]["calls"] == 240
    later = invoke("--json", "usage", "--db", FIXTURE_DB, "--since", "2026-11-22T22:23:50Z").json()
    assert 0 < later["totals"]["calls"] < 240
    assert invoke("--json", "usage", "--db", FIXTURE_DB, "--since", "2099-01-01").json()["models"] == []
    relative = invoke("--json", "usage", "--db", FIXTURE_DB, "--since", "36500d").json()
    assert relative["totals"]["calls"] == 240 and relative["since"] is not None
    bad = invoke("usage", "--db", FIXTURE_DB, "--since", "yesterday-ish")
    assert bad.exit_code == 2 and bad.stderr.startswith("error: --since 'yesterday-ish'")


def test_usage_human_table():
    result = invoke("usage", "--db", FIXTURE_DB)
    assert result.exit_code == 0
    for text in ("Qwen/Qwen3-4B-Instruct-2507", "claude-3-5-haiku", "gpt-4o-mini", "30,019", "400 ms", "total"):
        assert text in result.stdout


def test_usage_earlier_schema_uses_the_event_columns(tmp_path):
    db = make_earlier_schema(copy_fixture(tmp_path / "old.db"))
    rows = {r["model"]: r for r in invoke("--json", "usage", "--db", db).json()["models"]}
    assert {m: r["calls"] for m, r in rows.items()} == C["per_model"]
    assert all(r["cost_usd"] == 0 for r in rows.values())  # only the (truncated) cents column is left


def test_usage_remote_flags():
    both = invoke("usage", "--remote", "--db", FIXTURE_DB)
    assert both.exit_code == 2 and "--remote" in both.stderr
    stray = invoke("usage", "--db", FIXTURE_DB, "--base-url", "http://127.0.0.1:9")
    assert stray.exit_code == 2 and "only used with --remote" in stray.stderr


def test_usage_remote_delegates_to_the_backend_client(monkeypatch):
    seen = {}

    def fake_remote_usage(models=None, base_url=None, api_key=None):
        seen.update(models=models, base_url=base_url, api_key=api_key)

    import synth_cli.commands.balance as balance

    monkeypatch.setattr(balance, "remote_usage", fake_remote_usage)
    result = invoke("usage", "--remote", "--model", "m1", "--base-url", "http://127.0.0.1:9", "--api-key", "k" * 20)
    assert result.exit_code == 0, result.output
    assert seen == {"models": ["m1"], "base_url": "http://127.0.0.1:9", "api_key": "k" * 20}


# --------------------------------------------------------------------------- session


def test_session_by_prefix_json():
    result = invoke("--json", "session", "36f6", "--db", FIXTURE_DB)
    assert result.exit_code == 0, result.output
    data = result.json()
    assert data["session_id"] == SESSION
    assert data["experiment_name"] == "crafter_run_0"
    assert data["metadata"]["model"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert [t["step_id"] for t in data["timesteps"]] == [f"step_{i}" for i in range(8)]
    totals = data["totals"]
    assert totals["steps"] == 8 and totals["events"] == 24 and totals["messages"] == 16
    assert totals["llm_calls"] == 8 and totals["reward"] == TRUTH["rewards"][SESSION]
    first = data["timesteps"][0]
    cais = [e for e in first["events"] if e["type"] == "cais"]
    assert cais[0]["call_records"][0]["model_name"] == "Qwen/Qwen3-4B-Instruct-2507"
    assert len(first["messages"]) == 2


def test_every_session_adds_up_to_the_ground_truth():
    """All 30 sessions through the same code the command uses: calls, tool calls, rewards."""
    from synth_cli.store import sessions as queries
    from synth_cli.store.reader import TraceStore

    with TraceStore.open(FIXTURE_DB) as store:
        ids = [r[0] for r in store.rows("SELECT session_id FROM session_traces")]
        details = [queries.session_detail(store, sid) for sid in ids]
    totals = [d.totals() for d in details]
    assert sum(t["llm_calls"] for t in totals) == C["call_records"]
    assert sum(t["tool_calls"] for t in totals) == TRUTH["tool_calls"]
    assert sum(1 for d in details if any(c.output_tool_calls for e in d.events for c in (e.calls or []))) > 0
    assert sum(1 for t in totals if t["reward"] >= 1) == C["reward_ge_1"]
    assert sum(1 for t in totals if t["reward"] >= 2) == C["reward_ge_2"]
    assert sum(t["messages"] for t in totals) == C["messages"]
    records_with_tools = sum(1 for d in details for e in d.events for c in (e.calls or []) if c.output_tool_calls)
    assert records_with_tools == C["with_tool_calls"]


def test_session_human_rendering():
    result = invoke("session", SESSION[:8], "--db", FIXTURE_DB)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith(f"Session {SESSION}")
    assert "experiment  crafter_run_0 (exp_6513270e269e)" in out
    assert "Step step_0 · turn 0" in out and "Step step_7 · turn 7" in out
    assert "LLM call · Qwen/Qwen3-4B-Instruct-2507 (synth) · 400 ms" in out
    assert "system: You are an agent playing Crafter." in out
    assert "→ tool call interact({\"actions\":" in out
    assert "environment crafter-env · reward 1" in out and "achievements: collect_wood" in out
    assert "runtime crafter-runtime · actions [" in out
    assert "Totals" in out and "LLM calls 8" in out and "reward 1" in out
    # the system prompt is shown once; later calls show only what is new
    assert out.count("system: You are an agent") == 1
    assert "earlier messages" in out
    full = invoke("session", SESSION, "--db", FIXTURE_DB, "--full").stdout
    assert full.count("system: You are an agent") == 8


def test_session_ambiguous_prefix_lists_candidates():
    result = run_cli("session", "3", "--db", FIXTURE_DB)
    assert result.exit_code == 1
    assert "Traceback" not in result.stderr and result.stdout == ""
    error, hint = result.stderr.splitlines()
    assert error.startswith("error: session ID prefix '3' is ambiguous: 4 sessions match: ")
    for sid in ("327bcda3-a4fc-8621-5d20-c6a6cd5e4aa0", "36ad61dd-9132-f7ad-9632-b0917c7f2cba", SESSION,
                "38f4aa22-3058-1eb8-d91d-bfb30720a1d1"):
        assert sid in error
    assert hint == "hint: type more characters of the session ID"


def test_session_unknown_id_suggests_recent_ones():
    result = invoke("session", "deadbeef", "--db", FIXTURE_DB)
    assert result.exit_code == 1
    error, hint = result.stderr.splitlines()
    assert error == f"error: no session 'deadbeef' in {FIXTURE_DB}"
    assert hint.startswith("hint: recent sessions: ")


def test_session_earlier_schema_shows_messages(tmp_path):
    db = make_earlier_schema(copy_fixture(tmp_path / "old.db"))
    data = invoke("--json", "session", SESSION, "--db", db).json()
    assert data["call_records_available"] is False and data["totals"]["llm_calls"] is None
    assert data["totals"]["events"] == 24
    human = invoke("session", SESSION, "--db", db)
    assert human.exit_code == 0
    assert "LLM call records: not stored in this DB" in human.stdout
    assert "LLM event · Qwen/Qwen3-4B-Instruct-2507 (synth) · 400 ms" in human.stdout
    assert "user: Step 0. Health" in human.stdout and "assistant: I see" in human.stdout
    assert "LLM calls n/a" in human.stdout


def test_session_searches_several_dbs(tmp_path):
    other = make_old_timestamps(copy_fixture(tmp_path / "other.db"))
    both = invoke("--json", "session", SESSION, "--db", FIXTURE_DB, "--db", other)
    assert both.exit_code == 0 and both.json()["db"] == str(FIXTURE_DB)  # the full ID: first exact match
    amb = invoke("session", SESSION[:10], "--db", FIXTURE_DB, "--db", other)
    assert amb.exit_code == 1
    assert f"({other})" in amb.stderr and f"({FIXTURE_DB})" in amb.stderr


# --------------------------------------------------------------------------- status


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = 200 if self.path == "/v1/health" else 404
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _health_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_status_with_a_backend_that_answers(monkeypatch):
    key = "sk_live_" + "q" * 24 + "ac95"
    monkeypatch.setenv("SYNTH_API_KEY", key)
    with _health_server() as url:
        monkeypatch.setenv("SYNTH_BACKEND_BASE_URL", url)
        result = invoke("--json", "status", "--db", FIXTURE_DB)
        human = invoke("status", "--db", FIXTURE_DB)
    assert result.exit_code == 0, result.output
    data = result.json()
    [db] = data["dbs"]
    assert (db["sessions"], db["events"], db["messages"], db["experiments"]) == (30, 720, 480, 3)
    assert db["total_tokens"] == TRUTH["total_tokens"]
    assert db["cost_usd"] == pytest.approx(TRUTH["cost_usd"], abs=1e-8)
    backend = data["backend"]
    assert backend["base_url"] == url + "/v1" and backend["base_url_source"] == "env SYNTH_BACKEND_BASE_URL"
    assert backend["answered"] and backend["ok"] and backend["status_code"] == 200
    assert backend["api_key"] == "sk_liv…ac95" and backend["api_key_source"] == "env SYNTH_API_KEY"
    assert key not in result.stdout + result.stderr
    assert human.exit_code == 0 and key not in human.stdout + human.stderr
    assert "up (HTTP 200" in human.stdout and "sk_liv…ac95 (env SYNTH_API_KEY)" in human.stdout
    assert "101,443" in human.stdout


def test_status_backend_down_or_without_health():
    port = _closed_port()
    data = invoke("--json", "status", "--db", FIXTURE_DB, "--base-url", f"http://127.0.0.1:{port}").json()
    assert data["backend"]["answered"] is False and data["backend"]["error"] == "connection refused"
    assert data["backend"]["base_url_source"] == "--base-url" and data["backend"]["api_key"] is None
    with _health_server() as url:
        data = invoke("--json", "status", "--db", FIXTURE_DB, "--base-url", url + "/api").json()
        human = invoke("status", "--db", FIXTURE_DB, "--base-url", url + "/api")
    assert data["backend"]["answered"] is True and data["backend"]["ok"] is False
    assert data["backend"]["status_code"] == 404
    assert "answers, but GET /health gave HTTP 404" in human.stdout


def test_status_without_dbs_still_reports_the_backend():
    result = invoke("status", "--base-url", f"http://127.0.0.1:{_closed_port()}")
    assert result.exit_code == 0
    assert "Trace DBs: none found in synth_ai.db/dbs" in result.stdout
    assert "not reachable (connection refused)" in result.stdout


# --------------------------------------------------------------------------- default DBs


def test_read_commands_default_to_env_then_the_traces_root(tmp_path, monkeypatch):
    from helpers.inspectdb import sqld_dir

    none = invoke("usage")
    assert none.exit_code == 1
    assert none.stderr.startswith("error: no trace DB given and none found in synth_ai.db/dbs")
    assert "hint: pass --db PATH_OR_URL or set SYNTH_TRACES_DB" in none.stderr
    sqld_dir(tmp_path / "synth_ai.db")
    assert invoke("--json", "usage").json()["totals"]["calls"] == 240
    assert invoke("--json", "usage").json()["dbs"] == ["synth_ai.db/dbs/default"]
    monkeypatch.setenv("SYNTH_TRACES_DB", str(FIXTURE_DIR))
    assert invoke("--json", "experiments").json()["dbs"] == [str(FIXTURE_DIR)]
    assert invoke("--json", "session", "36f6").json()["db"] == str(FIXTURE_DIR)


def test_status_backend_that_accepts_but_never_answers():
    with socket.socket() as silent:  # listens (the kernel accepts) but never replies
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        result = invoke("--json", "status", "--db", FIXTURE_DB, "--base-url", f"http://127.0.0.1:{port}")
    assert result.exit_code == 0, result.output
    backend = result.json()["backend"]
    assert backend["answered"] is False and backend["error"] == "no answer within 1.5 s"
    assert 1400 <= backend["elapsed_ms"] < 5000


def test_status_probe_uses_no_http_library_and_follows_no_plain_http_redirect(tmp_path):
    """status imports neither httpx nor libsql_client (they cost ~0.2 s of start-up); a 3xx is an answer."""
    script = (
        "import sys, http.server, threading\n"
        "class H(http.server.BaseHTTPRequestHandler):\n"
        "    def do_GET(self):\n"
        "        self.send_response(302); self.send_header('Location', '/v1/health'); self.end_headers()\n"
        "    def log_message(self, *a): pass\n"
        "srv = http.server.ThreadingHTTPServer(('127.0.0.1', 0), H)\n"
        "threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
        "sys.argv = ['synth-ai', '--json', 'status', '--db', sys.argv[1], '--base-url',\n"
        "            f'http://127.0.0.1:{srv.server_address[1]}/old']\n"
        "from synth_cli.app import app\n"
        "try:\n"
        "    app()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print([m for m in ('httpx', 'libsql_client', 'sqlite_utils') if m in sys.modules], file=sys.stderr)\n"
    )
    import json
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", script, str(FIXTURE_DB)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "[]"
    backend = json.loads(proc.stdout)["backend"]
    assert (backend["answered"], backend["ok"], backend["status_code"]) == (True, False, 302)


def test_status_names_the_provider_and_its_key_chain(monkeypatch):
    for var in ("SYNTH_PROVIDER", "SYNTH_BACKEND_API_KEY", "SYNTH_API_KEY", "OPENAI_API_KEY", "TOGETHER_API_KEY",
                "DEFAULT_DEV_API_KEY", "SYNTH_BACKEND_BASE_URL", "SYNTH_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    together_key = "tgp_v1_" + "t" * 24 + "7c1d"
    openai_key = "sk-proj-" + "o" * 24 + "e0f2"
    monkeypatch.setenv("TOGETHER_API_KEY", together_key)
    monkeypatch.setenv("OPENAI_API_KEY", openai_key)
    port = _closed_port()
    # openai by default: OPENAI_API_KEY is in its chain, TOGETHER_API_KEY is not
    data = invoke("--json", "status", "--db", FIXTURE_DB, "--base-url", f"http://127.0.0.1:{port}").json()["backend"]
    assert (data["provider"], data["provider_source"]) == ("openai", "default")
    assert data["api_key_source"] == "env OPENAI_API_KEY"
    # a Together base URL picks together, as `sft` does, and its own key
    data = invoke("--json", "status", "--db", FIXTURE_DB, "--base-url", f"http://127.0.0.1:{port}/together/v1"
                  ).json()["backend"]
    assert data["provider"] == "together" and data["provider_source"].startswith("inferred from the base URL")
    assert data["api_key_source"] == "env TOGETHER_API_KEY" and data["api_key"] == config_mask(together_key)
    # --provider together without a base URL: Together's default URL; SYNTH_API_KEY still comes first
    monkeypatch.setenv("SYNTH_PROVIDER", "together")
    monkeypatch.setenv("SYNTH_API_KEY", "sk-synth-" + "s" * 20)
    human = invoke("status", "--db", FIXTURE_DB)
    assert human.exit_code == 0, human.output
    assert "together: Together AI (env SYNTH_PROVIDER)" in human.stdout
    assert "https://api.together.xyz/v1 (default)" in human.stdout and "(env SYNTH_API_KEY)" in human.stdout
    assert together_key not in human.output and openai_key not in human.output
    assert "`synth-ai serve` starts the local backend" not in human.output
    bad = invoke("status", "--db", FIXTURE_DB, "--provider", "azure")
    assert bad.exit_code == 2 and "unknown provider 'azure'" in bad.stderr


def config_mask(key: str) -> str:
    from synth_cli.config import mask_key

    return mask_key(key)
