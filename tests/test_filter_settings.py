"""`filter`'s one settings table (dataset/settings.SETTINGS): every row is a flag in --help, a key of
the `--config` file's [filter] table with the same validation as the flag, and a flag overrides it.

Each table row needs a sample below (the test that lists them fails when a row has none), so a
new setting is exercised through the CLI both ways.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FIXTURE_DB, invoke
from synth_cli.dataset.settings import CONFIG_KEYS, SETTINGS

DB = str(FIXTURE_DB)

#: key -> (a valid TOML value, the flag's args for a valid value, an invalid TOML value, the reason both
#: spellings give for it, an invalid flag value (None: every value the flag can take is valid))
VALIDATION = {
    "db": (json.dumps(DB), ["--db", DB], "1", "expected a string or a list of strings", None),
    "output": ('"OUT"', ["-o", "OUT"], '""', "expected a file path", ""),
    "mode": ('"sessions"', ["--mode", "sessions"], '"turns"', "expected calls or sessions", "turns"),
    "min_reward": ("1", ["--min-reward", "1"], "nan", "finite number", "nan"),
    "max_reward": ("1.5", ["--max-reward", "1.5"], "inf", "finite number", "inf"),
    "min_achievements": ("1", ["--min-achievements", "1"], "-1", "must be >= 0", "-1"),
    "max_cost": ("0.5", ["--max-cost", "0.5"], "-1", "must be >= 0", "-1"),
    "max_tokens": ("100000", ["--max-tokens", "100000"], "-1", "must be >= 0", "-1"),
    "experiment": ('"crafter_run_2"', ["--experiment", "crafter_run_2"], "1",
                   "expected a string or a list of strings", None),
    "since": ('"7d"', ["--since", "7d"], '"xyz"', "not a date/time or a relative span", "xyz"),
    "until": ('"2030-01-01"', ["--until", "2030-01-01"], '"xyz"', "not a date/time or a relative span", "xyz"),
    "where": ('{ task_split = "train" }', ["--where", "task_split=train"], '"foo"', "expected KEY=VALUE", "foo"),
    "model": ('["gpt-4o-mini"]', ["--model", "gpt-4o-mini"], "1", "expected a string or a list of strings", None),
    "include_errors": ("true", ["--include-errors"], '"yes"', "expected true or false", None),
    "val_fraction": ("0.1", ["--val-fraction", "0.1"], "1", "must be at least 0 and below 1", "1"),
    "seed": ("3", ["--seed", "3"], "9999999999999999999", "is out of range (a 64-bit integer",
             "99999999999999999999"),
    "limit": ("5", ["--limit", "5"], "0", "must be >= 1", "0"),
    "include_metadata": ("true", ["--include-metadata"], "1", "expected true or false", None),
    "redact": ('"pii"', ["--redact", "pii"], '"x"', "expected secrets, pii or off", "x"),
    "parents": ("true", ["--parents"], '"yes"', "expected true or false", None),
    "strict": ("false", ["--no-strict"], '"no"', "expected true or false", None),
    "workers": ("1", ["--workers", "1"], "0", "must be >= 1", "0"),
}


def test_every_config_key_has_a_sample():
    assert sorted(VALIDATION) == sorted(CONFIG_KEYS)
    assert sorted(OVERRIDES) == sorted(CONFIG_KEYS)


def test_every_setting_is_an_option_in_help():
    import typer

    from synth_cli.app import app

    res = invoke("filter", "--help", env={"COLUMNS": "200"})
    assert res.exit_code == 0
    text = " ".join(res.stdout.replace("│", " ").split())
    filter_cmd = typer.main.get_command(app).commands["filter"]
    params = {p.name: p for p in filter_cmd.params}
    for s in SETTINGS:
        assert s.flag in text, s.key
        if s.negatable:
            assert f"--no-{s.flag[2:]}" in text, s.key
        if s.short:
            assert s.short in params[s.key].opts and f"{s.short}" in text
        if s.metavar:
            assert s.metavar in text, s.key
        assert params[s.key].help == s.help
        assert " ".join(s.help.split()[:4]) in text, s.key  # the help text is shown, not only declared


def _run(tmp_path, toml_line: str | None, *args: str):
    argv = ["--json", "filter", "--dry-run"]
    if toml_line is not None:
        cfg = tmp_path / "f.toml"
        cfg.write_text(f"[filter]\n{toml_line}\n")
        argv += ["--config", str(cfg)]
    return invoke(*argv, *args)


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_config_key_validates_like_its_flag(tmp_path, key):
    good_toml, good_flag, bad_toml, reason, bad_flag = VALIDATION[key]
    good_toml = good_toml.replace("OUT", str(tmp_path / "o.jsonl"))
    good_flag = [str(tmp_path / "o.jsonl") if a == "OUT" else a for a in good_flag]
    base = [] if key == "db" else ["--db", DB]

    for res in (_run(tmp_path, f"{key} = {good_toml}", *base), _run(tmp_path, None, *base, *good_flag)):
        assert res.exit_code == 0, (key, res.stderr)

    res = _run(tmp_path, f"{key} = {bad_toml}", *base)
    assert res.exit_code == 2, (key, res.stdout)
    assert res.stderr.startswith(f"error: f.toml [filter]: {key}") and reason in res.stderr.splitlines()[0], \
        res.stderr
    if bad_flag is not None:
        flag = next(s.flag for s in SETTINGS if s.key == key)
        res = _run(tmp_path, None, *base, flag, bad_flag)
        assert res.exit_code == 2, (key, res.stdout)
        first = res.stderr.splitlines()[0]
        assert first.startswith("error: ") and flag in first and reason in first, res.stderr


@pytest.mark.parametrize("key", [s.key for s in SETTINGS if not s.config])
def test_flag_only_settings_are_not_config_keys(tmp_path, key):
    res = _run(tmp_path, f"{key} = true", "--db", DB)
    assert res.exit_code == 2
    assert res.stderr.startswith(f"error: f.toml [filter]: unknown key(s) {key}; allowed: ")


#: key -> (the config file's value, the flag's args overriding it, what the run shows (JSON stats and,
#: when a file is written, its manifest's settings) -> the value that proves the flag won, expected)
OVERRIDES = {
    "db": ('"/nonexistent/x.db"', ["--db", DB], lambda d, m: len(d["dbs"]), 1),
    "output": ('"OTHER"', ["-o", "OUT"], lambda d, m: d["output"].endswith("o.jsonl"), True),
    "mode": ('"sessions"', ["--mode", "calls"], lambda d, m: d["mode"], "calls"),
    "min_reward": ("2", ["--min-reward", "1"], lambda d, m: d["filters"]["min_reward"], 1),
    "max_reward": ("0", ["--max-reward", "5"], lambda d, m: d["filters"]["max_reward"], 5),
    "min_achievements": ("5", ["--min-achievements", "0"], lambda d, m: d["filters"]["min_achievements"], 0),
    "max_cost": ("0", ["--max-cost", "100"], lambda d, m: d["filters"]["max_cost"], 100),
    "max_tokens": ("0", ["--max-tokens", "1000000"], lambda d, m: d["filters"]["max_tokens"], 1000000),
    "experiment": ('"nope"', ["--experiment", "crafter_run_2"], lambda d, m: d["filters"]["experiments"],
                   ["crafter_run_2"]),
    "since": ('"2999-01-01"', ["--since", "2000-01-01"], lambda d, m: d["filters"]["since"][:10], "2000-01-01"),
    "until": ('"2000-01-01"', ["--until", "2999-01-01"], lambda d, m: d["filters"]["until"][:10], "2999-01-01"),
    "where": ('{ task_split = "test" }', ["--where", "task_split=train"], lambda d, m: d["filters"]["where"],
              [["task_split", "train"]]),
    "model": ('["nope"]', ["--model", "gpt-4o-mini"], lambda d, m: list(d["models"]), ["gpt-4o-mini"]),
    "include_errors": ("false", ["--include-errors"], lambda d, m: m.get("include_errors"), True),
    "val_fraction": ("0.5", ["--val-fraction", "0.1"], lambda d, m: m["val_fraction"], 0.1),
    "seed": ("1", ["--seed", "7", "--val-fraction", "0.1"], lambda d, m: m["seed"], 7),
    "limit": ("1", ["--limit", "5"], lambda d, m: d["examples"]["written"], 5),
    "include_metadata": ("false", ["--include-metadata"], lambda d, m: m.get("include_metadata"), True),
    "redact": ('"off"', ["--redact", "pii"], lambda d, m: m["redact"], "pii"),
    "parents": ("false", ["--parents", "-o", "NEWDIR"], lambda d, m: d["output"].endswith("o.jsonl"), True),
    "strict": ("false", ["--strict"], lambda d, m: m.get("strict"), True),
    # `--workers` changes how many processes convert, never what is written: the run only shows that
    # it went through; test_workers_from_the_file_is_overridden_by_the_flag checks the value
    "workers": ("2", ["--workers", "1"], lambda d, m: d["examples"]["written"] > 0, True),
}


@pytest.mark.parametrize("key", CONFIG_KEYS)
def test_a_flag_overrides_the_config_file(tmp_path, key):
    file_value, flag_args, shown, expected = OVERRIDES[key]
    out = tmp_path / "o.jsonl"
    file_value = file_value.replace("OTHER", str(tmp_path / "other.jsonl"))
    flag_args = [str(out) if a == "OUT" else str(tmp_path / "new" / "o.jsonl") if a == "NEWDIR" else a
                 for a in flag_args]
    cfg = tmp_path / "f.toml"
    cfg.write_text(f"[filter]\n{key} = {file_value}\n")
    argv = ["--json", "filter", "--config", str(cfg)]
    if key != "db":
        argv += ["--db", DB]
    if "-o" not in flag_args:
        argv += ["-o", str(out)]
    res = invoke(*argv, *flag_args)
    assert res.exit_code == 0, (key, res.stderr)
    data = res.json()
    manifest = json.loads(Path(data["manifest"]).read_text())["settings"]
    assert shown(data, manifest) == expected, (key, data, manifest)


def test_workers_from_the_file_is_overridden_by_the_flag(tmp_path):
    # the one setting the output cannot show (identical whatever N): read through the command's own
    # functions, the file's `workers = 2` loses to `--workers 1`
    from synth_cli.dataset.options import build, load_config, merge

    cfg = tmp_path / "f.toml"
    cfg.write_text("[filter]\nworkers = 2\nlimit = 3\n")
    options = merge(load_config(cfg), build({"workers": 1}))
    assert options.workers == 1 and options.limit == 3
