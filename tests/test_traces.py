"""`synth-ai traces`: the inventory, against the fixture and DB layouts a user has."""

from __future__ import annotations

import os

from helpers.inspectdb import copy_fixture, make_earlier_schema, sqld_dir
from helpers import FIXTURE_COUNTS, FIXTURE_DB, FIXTURE_DIR, invoke, run_cli

C = FIXTURE_COUNTS


def _assert_fixture_row(row: dict) -> None:
    assert row["sessions"] == C["sessions"]
    assert row["experiments"] == C["experiments"]
    assert row["events"] == C["events"]
    assert row["events_by_type"] == {"cais": C["cais"], "environment": C["environment"], "runtime": C["runtime"]}
    assert row["messages"] == C["messages"]
    assert row["timesteps"] == C["timesteps"]
    assert row["llm_calls"] == C["call_records"]
    assert row["malformed_call_records"] == 0
    assert row["schema"] == "tracing_v3" and row["call_records"] is True
    assert row["size_bytes"] == os.path.getsize(FIXTURE_DB)
    assert row["last_activity"] == "2026-11-22T22:23:50.837Z"


def test_fixture_counts_json():
    result = invoke("--json", "traces", "--db", FIXTURE_DIR)
    assert result.exit_code == 0, result.output
    data = result.json()
    [row] = data["dbs"]
    _assert_fixture_row(row)
    assert row["db"] == str(FIXTURE_DIR)
    assert data["totals"] == {"dbs": 1, "sessions": 30, "experiments": 3, "events": 720, "messages": 480,
                              "llm_calls": 240, "input_tokens": row["input_tokens"],
                              "output_tokens": row["output_tokens"], "total_tokens": row["total_tokens"],
                              "cost_usd": row["cost_usd"], "size_bytes": os.path.getsize(FIXTURE_DB),
                              "malformed_call_records": 0}
    assert row["total_tokens"] > 0 and row["cost_usd"] > 0
    systems = {s["system"]: s for s in data["systems"]}
    assert systems["crafter-react-agent"]["event_types"] == {"cais": 240}
    assert systems["crafter-env"]["event_types"] == {"environment": 240}
    assert systems["crafter-runtime"]["events"] == 240
    assert all(s["dbs"] == [str(FIXTURE_DIR)] for s in data["systems"])


def test_human_table_has_separators_sizes_and_systems():
    result = invoke("traces", "--db", FIXTURE_DIR)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for header in ("DB", "sessions", "experiments", "events", "LLM calls", "last activity (UTC)", "size"):
        assert header in out
    assert "2026-11-22 22:23" in out
    assert "2.1 MB" in out  # SI: 10^6 bytes
    assert "Total storage: 2.1 MB in 1 DB · 30 sessions · 720 events · 240 LLM calls" in out
    assert "crafter-react-agent" in out and "cais 240" in out
    assert result.stderr == ""


def test_default_root_is_synth_ai_db_dbs_in_the_working_directory(tmp_path):
    sqld_dir(tmp_path / "synth_ai.db")
    copy_fixture(tmp_path / "synth_ai.db" / "dbs" / "second" / "data")
    (tmp_path / "synth_ai.db" / "dbs" / "not-a-db").mkdir()  # no data file: ignored
    data = invoke("--json", "traces").json()
    assert data["root"] == "synth_ai.db/dbs"
    assert [d["db"] for d in data["dbs"]] == ["synth_ai.db/dbs/default", "synth_ai.db/dbs/second"]
    assert data["totals"]["sessions"] == 60 and data["totals"]["llm_calls"] == 480
    assert data["systems"][0]["events"] == 480 and len(data["systems"][0]["dbs"]) == 2


def test_root_flag_env_and_sqlite_files(tmp_path, monkeypatch):
    root = tmp_path / "traces"
    copy_fixture(root / "run1.db")
    (root / "notes.db").write_text("not sqlite")  # a *.db that is not SQLite is not picked up
    data = invoke("--json", "traces", "--root", root).json()
    assert [d["db"] for d in data["dbs"]] == [str(root / "run1.db")]
    monkeypatch.setenv("SYNTH_TRACES_ROOT", str(root))
    assert invoke("--json", "traces").json()["totals"]["sessions"] == 30
    # a root given as the sqld directory itself (X.db) works too
    sqld_dir(tmp_path / "other.db")
    data = invoke("--json", "traces", "--root", tmp_path / "other.db").json()
    assert [d["db"] for d in data["dbs"]] == [str(tmp_path / "other.db" / "dbs" / "default")]


def test_db_flags_env_and_dedupe(tmp_path, monkeypatch):
    sqld_dir(tmp_path / "synth_ai.db")
    extra = copy_fixture(tmp_path / "extra.db")
    monkeypatch.setenv("SYNTH_TRACES_DB", str(extra))
    # the root's DB named again with --db, and the env DB named again: each counted once
    data = invoke("--json", "traces", "--db", "synth_ai.db", "--db", extra).json()
    assert data["totals"]["dbs"] == 2
    assert data["totals"]["sessions"] == 60


def test_limit_lists_fewer_dbs_but_totals_count_all(tmp_path):
    for name in ("a", "b", "c"):
        copy_fixture(tmp_path / "synth_ai.db" / "dbs" / name / "data")
    data = invoke("--json", "traces", "--limit", "2").json()
    assert len(data["dbs"]) == 2
    assert data["totals"]["dbs"] == 3 and data["totals"]["sessions"] == 90
    human = invoke("traces", "--limit", "1")
    assert "showing 1 of 3 DBs" in human.stdout
    assert invoke("traces", "--limit", "0").exit_code == 2


def test_no_db_found_is_friendly_and_exit_0(tmp_path):
    result = invoke("traces")
    assert result.exit_code == 0
    assert "No trace databases found in synth_ai.db/dbs." in result.stdout
    assert result.stderr.startswith("hint: ") and "synth-ai demo" in result.stderr
    assert not (tmp_path / "synth_ai.db").exists()
    data = invoke("--json", "traces").json()
    assert data["dbs"] == [] and data["totals"]["dbs"] == 0


def test_directory_with_no_dbs(tmp_path):
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    result = invoke("traces", "--root", empty)
    assert result.exit_code == 0
    assert f"No trace databases found in {empty}" in result.stdout
    assert sorted(p.name for p in empty.iterdir()) == ["sub"]


def test_unreadable_db_under_the_root_is_skipped_with_a_warning(tmp_path):
    sqld_dir(tmp_path / "synth_ai.db")
    bad = tmp_path / "synth_ai.db" / "dbs" / "broken" / "data"
    bad.parent.mkdir()
    bad.write_bytes(os.urandom(4096))
    result = invoke("--json", "traces")
    assert result.exit_code == 0
    assert result.json()["totals"]["dbs"] == 1
    assert result.json()["skipped"][0]["db"] == "synth_ai.db/dbs/broken"
    assert result.stderr.startswith("warning: skipping ") and "not a SQLite database" in result.stderr


def test_earlier_schema_reports_llm_calls_unavailable(tmp_path):
    db = make_earlier_schema(copy_fixture(tmp_path / "old.db"))
    data = invoke("--json", "traces", "--db", db).json()
    [row] = data["dbs"]
    assert row["call_records"] is False and row["llm_calls"] is None
    assert row["schema"] == "tracing_v3 (no call_records)"
    assert row["sessions"] == 30 and row["events"] == 720 and row["events_by_type"]["cais"] == 240
    human = invoke("traces", "--db", db)
    assert human.exit_code == 0
    assert "n/a" in human.stdout
    assert "hint: n/a: DB written before events.call_records existed" in human.stderr


def test_end_to_end_subprocess_fixture_and_bad_db(tmp_path):
    ok = run_cli("traces", "--db", FIXTURE_DIR)
    assert ok.exit_code == 0 and "Traceback" not in ok.stderr
    assert "720" in ok.stdout
    missing = tmp_path / "nope.db"
    bad = run_cli("traces", "--db", missing)
    assert bad.exit_code == 1
    assert bad.stderr.splitlines()[0] == f"error: {missing}: no such file or directory"
    assert "Traceback" not in bad.stderr and bad.stdout == ""
    assert not missing.exists()


def test_fixture_is_not_modified_by_reading():
    before = {p.name: p.stat().st_mtime_ns for p in FIXTURE_DB.parent.iterdir() if p.name == "data"}
    invoke("traces", "--db", FIXTURE_DB)
    after = {p.name: p.stat().st_mtime_ns for p in FIXTURE_DB.parent.iterdir() if p.name == "data"}
    assert before == after



def test_startup_bench_runs_and_writes_nothing_into_the_repo():
    import json
    import subprocess
    import sys

    from helpers import ROOT

    before = {p: sorted(os.listdir(ROOT / p)) for p in (".", "bench", "tests")}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "startup.py"), "--runs", "1", "--warmup", "0",
                           "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    results = {r["name"]: r for r in json.loads(proc.stdout)["results"]}
    assert set(results) == {"floor", "help", "traces"}
    assert results["traces"]["target_s"] == 0.35 and results["help"]["target_s"] == 0.12
    assert all(r["median_s"] > 0 and r["peak_rss_mb"] > 5 for r in results.values())
    # peak RSS through /usr/bin/time -v: a bare interpreter importing typer + rich stays small
    assert results["floor"]["peak_rss_mb"] < 40 and results["help"]["ratio_to_floor"] > 0
    assert {p: sorted(os.listdir(ROOT / p)) for p in (".", "bench", "tests")} == before
