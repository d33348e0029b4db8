"""`--quiet` keeps the essential result: IDs of a listing, the report when it has no shorter form,
nothing when the result is a file or an exit code, and never progress lines."""

from __future__ import annotations

import json

import pytest

from helpers import FIXTURE_DB
from helpers.fakeapi import KEY, serve_fake


@pytest.mark.parametrize("flag", ["-q", "--quiet"])
def test_experiments_quiet_lists_ids_for_scripts(cli, flag):
    ids = [r["experiment_id"] for r in cli("--json", "experiments", "--db", FIXTURE_DB).json()["experiments"]]
    res = cli("experiments", "--db", FIXTURE_DB, flag)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == ids and len(ids) == 3
    assert res.stderr == ""


def test_experiment_quiet_lists_its_session_ids(cli):
    full = cli("--json", "experiment", "crafter_run_1", "--db", FIXTURE_DB).json()
    res = cli("-q", "experiment", "crafter_run_1", "--db", FIXTURE_DB)
    assert res.exit_code == 0, res.output
    assert res.stdout.splitlines() == [s["session_id"] for s in full["sessions"]]
    assert len(res.stdout.splitlines()) == 10


def test_traces_quiet_lists_the_dbs(cli):
    dbs = [d["db"] for d in cli("--json", "traces", "--db", FIXTURE_DB).json()["dbs"]]
    res = cli("-q", "traces", "--db", FIXTURE_DB)
    assert res.exit_code == 0 and res.stdout.splitlines() == dbs == [str(FIXTURE_DB)]


@pytest.mark.parametrize("args", [("usage", "--db"), ("status", "--db")])
def test_reports_without_a_shorter_form_print_in_full(cli, args):
    plain = cli(*args, FIXTURE_DB, "--base-url", "http://127.0.0.1:9") if args[0] == "status" \
        else cli(*args, FIXTURE_DB)
    quiet = cli(*args, FIXTURE_DB, "-q", *(("--base-url", "http://127.0.0.1:9") if args[0] == "status" else ()))
    assert quiet.exit_code == plain.exit_code == 0, quiet.output
    assert quiet.stdout.strip() and quiet.stdout == plain.stdout


def test_session_quiet_prints_the_session(cli):
    session = cli("--json", "experiment", "crafter_run_0", "--db", FIXTURE_DB).json()["sessions"][0]["session_id"]
    plain = cli("session", session, "--db", FIXTURE_DB)
    quiet = cli("session", session, "--db", FIXTURE_DB, "--quiet")
    assert quiet.exit_code == 0 and session in quiet.stdout and quiet.stdout == plain.stdout


def test_filter_and_validate_quiet_print_nothing_and_the_exit_code_speaks(cli, tmp_path):
    out = tmp_path / "train.jsonl"
    res = cli("filter", "--db", FIXTURE_DB, "-o", out, "-q")
    assert res.exit_code == 0 and res.stdout == "" and res.stderr == ""
    assert out.stat().st_size > 0
    assert cli("sft", "validate", out, "-q").stdout == ""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n')
    res = cli("sft", "validate", bad, "-q")
    assert res.exit_code == 1 and res.stdout == "" and res.stderr.splitlines()[-1].startswith("error: ")


def test_demo_list_quiet_prints_the_names(cli):
    names = [d["name"] for d in cli("--json", "demo", "--list").json()["demos"]]
    assert cli("demo", "--list", "-q").stdout.splitlines() == names and names


def test_man_write_quiet_prints_the_pages_it_changed(cli, tmp_path):
    res = cli("man", "--write", tmp_path / "man", "-q")
    written = res.stdout.splitlines()
    assert res.exit_code == 0 and written and all(p.endswith(".1") for p in written)
    assert cli("man", "--write", tmp_path / "man", "-q").stdout == ""  # nothing changed the second time


def test_sft_list_and_cancel_quiet_print_job_ids(cli, tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                      {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                             for i in range(3)))
    with serve_fake(steps=3) as srv:
        env = {"SYNTH_API_KEY": KEY}
        first = cli("-q", "sft", "submit", train, "-m", "m", "--no-validate", "--base-url", srv.base_url, env=env)
        second = cli("-q", "sft", "submit", train, "-m", "m", "--no-validate", "--base-url", srv.base_url, env=env)
        ids = [first.stdout.strip(), second.stdout.strip()]
        assert all(i.startswith("ftjob") for i in ids), (first.output, second.output)
        listed = cli("sft", "list", "-q", "--base-url", srv.base_url, env=env)
        assert listed.exit_code == 0 and sorted(listed.stdout.splitlines()) == sorted(ids)
        cancelled = cli("sft", "cancel", ids[0], "-q", "--base-url", srv.base_url, env=env)
        assert cancelled.exit_code == 0 and cancelled.stdout == ids[0] + "\n"
