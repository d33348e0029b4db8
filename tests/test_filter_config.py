"""`synth-ai filter --config FILE.toml`: our [filter] table, the published package's shape, overrides."""

from __future__ import annotations

import pytest

from helpers.filterdb import read_jsonl
from helpers import FIXTURE_DB, invoke


def run_json(*args):
    res = invoke("--json", "filter", *args)
    assert res.exit_code == 0, res.output
    return res.json()


def test_filter_table(tmp_path):
    out = tmp_path / "from-config.jsonl"
    cfg = tmp_path / "f.toml"
    cfg.write_text(f"""
[filter]
db = "{FIXTURE_DB}"
output = "{out}"
mode = "sessions"
min_reward = 1
model = ["gpt-4o-mini", "claude-3-5-haiku"]
where = {{ task_split = "train" }}
include_metadata = true
""")
    data = run_json("--config", cfg)
    assert data["mode"] == "sessions"
    assert data["filters"]["min_reward"] == 1
    assert data["filters"]["where"] == [["task_split", "train"]]
    lines = read_jsonl(out)
    assert lines and all(e["metadata"]["model"] in ("gpt-4o-mini", "claude-3-5-haiku") for e in lines)
    assert all(e["metadata"]["total_reward"] >= 1 for e in lines)


def test_flags_override_the_file(tmp_path):
    cfg = tmp_path / "f.toml"
    cfg.write_text(f'[filter]\ndb = "{FIXTURE_DB}"\nmin_reward = 2\nmode = "sessions"\ninclude_metadata = true\n')
    out = tmp_path / "o.jsonl"
    assert run_json("--config", cfg, "--dry-run")["sessions"]["kept"] == 9
    data = run_json("--config", cfg, "--min-reward", "1", "--mode", "calls", "-o", out, "--no-include-metadata")
    assert data["sessions"]["kept"] == 20 and data["mode"] == "calls"
    assert all("metadata" not in e for e in read_jsonl(out))


def test_where_as_a_nested_table_means_dotted_keys(tmp_path):
    # TOML dotted keys (`where.task.split = "train"`) build nested tables: they name nested metadata keys
    from helpers.filterdb import conversation_calls, make_db

    db = make_db(tmp_path / "t.db", [
        {"id": "a", "calls": conversation_calls(1, prefix="a"), "metadata": {"task": {"split": "train"}, "n": 3}},
        {"id": "b", "calls": conversation_calls(1, prefix="b"), "metadata": {"task": {"split": "test"}, "n": 3}}])
    cfg = tmp_path / "f.toml"
    cfg.write_text('[filter]\nwhere.task.split = "train"\nwhere.n = 3\n')
    data = run_json("--config", cfg, "--db", db, "--dry-run")
    assert data["filters"]["where"] == [["task.split", "train"], ["n", "3"]]
    assert data["sessions"]["kept"] == 1 and data["sessions"]["dropped_by"] == {"where": 1}
    assert run_json("--db", db, "--dry-run", "--where", "task.split=train")["sessions"]["kept"] == 1


def test_published_shape(tmp_path):
    cfg = tmp_path / "filter_config_modal.toml"
    cfg.write_text("""
# the published synth-ai package's config
mode = "trajectory"

[filters]
min_total_reward = 2.0
min_achievements = 1
max_cost = 1.0
max_tokens = 50000
models = ["gpt-4o-mini", "Qwen/Qwen3-4B-Instruct-2507", "claude-3-5-haiku"]

[window]
window_size = 10
stride = 5
min_window_reward = 2.0

[output]
include_metadata = true
max_context_length = 4096
""")
    res = invoke("--json", "filter", "--config", cfg, "--db", FIXTURE_DB, "-o", tmp_path / "o.jsonl")
    assert res.exit_code == 0, res.output
    data = res.json()
    assert data["mode"] == "sessions"
    assert data["filters"] == {"min_reward": 2.0, "min_achievements": 1, "max_cost": 1.0, "max_tokens": 50000,
                               "models": ["gpt-4o-mini", "Qwen/Qwen3-4B-Instruct-2507", "claude-3-5-haiku"]}
    assert data["sessions"]["kept"] == 9
    assert "warning: config: [output] max_context_length has no equivalent here and is ignored" in res.stderr
    assert all("metadata" in e for e in read_jsonl(tmp_path / "o.jsonl"))


def test_published_window_mode_is_calls(tmp_path):
    cfg = tmp_path / "w.toml"
    cfg.write_text('mode = "window"\n[filters]\nmin_total_reward = 1\n[window]\nwindow_size = 4\n')
    res = invoke("--json", "filter", "--config", cfg, "--db", FIXTURE_DB, "--dry-run")
    assert res.exit_code == 0, res.output
    assert res.json()["mode"] == "calls" and res.json()["examples"]["written"] == 160
    assert "[window] window_size has no equivalent here and is ignored" in res.stderr


@pytest.mark.parametrize("body, message", [
    ("[filter]\nmin_rewards = 1\n", "f.toml [filter]: unknown key(s) min_rewards; allowed: db, output, mode, "
                                     "min_reward, max_reward"),
    ("[filters]\nmin_reward = 1\n", "f.toml [filters]: unknown key(s) min_reward; allowed: min_total_reward, "
                                    "min_achievements, max_cost, max_tokens, models"),
    ("mode = \"trajectory\"\ncolour = 1\n", "f.toml: unknown key(s) colour; allowed: mode, filters, window, output"),
    ("[filter]\nmin_reward = \"lots\"\n", "f.toml [filter]: min_reward: expected a number, got 'lots'"),
    ("[filter]\nmode = \"turns\"\n", "f.toml [filter]: mode 'turns': expected calls or sessions"),
    ("[filter]\nwhere = { seed = [1, 2] }\n", "f.toml [filter]: where seed: expected a string, number or boolean "
                                               "to compare with, got [1, 2]"),
    ("[filter\n", "--config "),
])
def test_bad_config_is_a_usage_error(tmp_path, body, message):
    cfg = tmp_path / "f.toml"
    cfg.write_text(body)
    res = invoke("filter", "--config", cfg, "--db", FIXTURE_DB, "--dry-run")
    assert res.exit_code == 2, res.output
    assert res.stderr.startswith("error: " + message), res.stderr
    assert len(res.stderr.strip().splitlines()) <= 2


def test_missing_config_file(tmp_path):
    res = invoke("filter", "--config", tmp_path / "nope.toml", "--db", FIXTURE_DB, "--dry-run")
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: --config {tmp_path / 'nope.toml'}: no such file")


@pytest.mark.parametrize("how", ["same path", "symlink", "val file", "manifest"])
def test_output_onto_the_config_file_is_refused(tmp_path, how):
    cfg = tmp_path / "f.toml"
    body = f'[filter]\ndb = "{FIXTURE_DB}"\n'
    cfg.write_text(body)
    args = ["-o", cfg]
    if how == "symlink":
        (tmp_path / "link.jsonl").symlink_to(cfg)
        args = ["-o", tmp_path / "link.jsonl"]
    elif how == "val file":  # f.toml is not a .jsonl: the val file of `-o f.jsonl` is f.val.jsonl
        cfg = tmp_path / "f.val.jsonl"
        cfg.write_text(body)
        args = ["-o", tmp_path / "f.jsonl", "--val-fraction", "0.2"]
    elif how == "manifest":  # `-o f.jsonl` also writes f.jsonl.manifest.json
        cfg = tmp_path / "f.jsonl.manifest.json"
        cfg.write_text(body)
        args = ["-o", tmp_path / "f.jsonl"]
    res = invoke("filter", "--config", cfg, *args)
    assert res.exit_code != 0
    first = res.stderr.splitlines()[0]
    assert first.startswith("error: refusing to write ") and "the --config file being read" in first, res.stderr
    assert len(res.stderr.strip().splitlines()) == 2  # the error and its hint
    assert cfg.read_text() == body
    assert not (tmp_path / "f.jsonl").exists()
