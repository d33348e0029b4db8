"""At 80 columns every --help keeps its flag and variable names whole and every table keeps its
ids, numbers and amounts on one line (issue 11: `--min-achievemen…`, `$0.00` / `68`)."""

from __future__ import annotations

import re
from typing import Any, Iterator

import pytest

from helpers import FIXTURE_DB, FIXTURE_DIR, invoke, run_cli
from synth_cli.output import fmt_int, fmt_usd

NARROW = {"COLUMNS": "80"}
ENV_NAME = re.compile(r"\b[A-Z][A-Z0-9]*_[A-Z0-9_]+\b")


def _commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    import typer

    from synth_cli.app import app

    root = typer.main.get_command(app)

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        yield path, cmd
        for name, sub in sorted(getattr(cmd, "commands", {}).items()):
            yield from walk(sub, (*path, name))

    yield from walk(root, ())


COMMANDS = list(_commands())


def _whole(token: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


@pytest.mark.parametrize("path,cmd", COMMANDS, ids=[" ".join(p) or "root" for p, _ in COMMANDS])
def test_help_at_80_columns_keeps_every_flag_and_variable_name_whole(path, cmd):
    result = invoke(*path, "--help", env=NARROW)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert max(len(line) for line in text.splitlines()) <= 80, text
    for param in cmd.params:
        if getattr(param, "hidden", False):
            continue
        for name in [*param.opts, *param.secondary_opts]:
            if name.startswith("-"):
                assert _whole(name, text), f"{name} is not whole in `{' '.join(path)} --help`:\n{text}"
        for var in ENV_NAME.findall(getattr(param, "help", None) or ""):
            assert _whole(var, text), f"{var} is not whole in `{' '.join(path)} --help`:\n{text}"
    for flag in ("--json", "--quiet", "--debug"):  # the globals, said in every command's help
        assert _whole(flag, text), f"`{' '.join(path)} --help` does not mention {flag}"


def test_root_help_is_grouped_in_pipeline_order_and_loads_no_rich():
    text = invoke("--help", env=NARROW).stdout
    sections = ["Record traces:", "Inspect traces:", "Dataset:", "Fine-tune:", "Account:", "Local and reference:"]
    positions = [text.index(s) for s in sections]
    assert positions == sorted(positions)
    assert text.index("traces") < text.index("filter") < text.index("  sft ") < text.index("balance")
    probe = ("import sys; from synth_cli.app import main; sys.argv = ['synth-ai', '--help']\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print([m for m in sys.modules if m.split('.')[0] in ('rich', 'markdown_it', 'pygments')])")
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_choice_values_complete_in_the_shell():
    env = {"_SYNTH_AI_COMPLETE": "complete_bash", "COMP_WORDS": "synth-ai filter --mode ", "COMP_CWORD": "3"}
    assert run_cli(env=env).stdout.split() == ["calls", "sessions"]
    env.update(COMP_WORDS="synth-ai filter --mode s")
    assert run_cli(env=env).stdout.split() == ["sessions"]


# --------------------------------------------------------------------------- tables


def _narrow(*args: Any, env: dict | None = None) -> str:
    result = invoke(*args, env={**NARROW, **(env or {})})
    assert result.exit_code == 0, result.output
    from rich.cells import cell_len

    for line in result.stdout.splitlines():
        # only a single token longer than the terminal (an 81-character checkpoint id) may be wider:
        # it stands alone on its line, unindented, whole for copy and paste
        assert cell_len(line) <= 80 or line == line.strip() and " " not in line, \
            f"wider than 80 columns:\n{result.stdout}"
    return result.stdout


def _all_whole(tokens: list[str], text: str) -> None:
    missing = [t for t in tokens if t not in text]
    assert not missing, f"split or cut at 80 columns: {missing[:5]}\n{text}"


def test_trace_tables_keep_ids_numbers_and_money_whole(tmp_path):
    import shutil

    # a short name, as a user types it: a long path is the one thing a table may cut (with …)
    shutil.copyfile(FIXTURE_DB, tmp_path / "t.db")
    data = invoke("--json", "experiments", "--db", "t.db").json()
    text = _narrow("experiments", "--db", "t.db")
    _all_whole([e["experiment_id"] for e in data["experiments"]] + [fmt_usd(e["cost_usd"]) for e in data["experiments"]]
               + [fmt_int(e["total_tokens"]) for e in data["experiments"]], text)
    assert "hidden to fit 80 columns:" in text  # the caption says what was left out

    exp = invoke("--json", "experiment", "crafter_run_1", "--db", "t.db").json()
    text = _narrow("experiment", "crafter_run_1", "--db", "t.db")
    _all_whole([s["session_id"] for s in exp["sessions"]] + [fmt_usd(s["cost_usd"]) for s in exp["sessions"]], text)

    usage = invoke("--json", "usage", "--db", "t.db").json()
    text = _narrow("usage", "--db", "t.db")
    _all_whole([m["model"] for m in usage["models"]] + [fmt_usd(m["cost_usd"]) for m in usage["models"]]
               + [fmt_int(m["total_tokens"]) for m in usage["models"]], text)

    traces = invoke("--json", "traces", "--db", "t.db").json()
    text = _narrow("traces", "--db", "t.db")
    _all_whole(["t.db", fmt_int(traces["totals"]["events"]), fmt_int(traces["totals"]["llm_calls"])], text)
    text = _narrow("status", "--db", "t.db", "--base-url", "http://127.0.0.1:9")
    _all_whole(["t.db", fmt_usd(traces["totals"]["cost_usd"]), fmt_int(traces["totals"]["total_tokens"])], text)
    text = _narrow("recent", "--db", "t.db", "--hours", "1000000")
    _all_whole([e["experiment_id"] for e in data["experiments"]], text)
    # `session` is prose lines (a log, like `llm logs`), not a table: the terminal wraps them


def test_a_table_whose_ids_cannot_sit_side_by_side_becomes_records():
    text = _narrow("traces", "--db", FIXTURE_DIR)  # a 43-character DB path and six figures
    lines = text.splitlines()
    assert lines[0] == str(FIXTURE_DIR.relative_to(FIXTURE_DIR.parents[2])) or str(FIXTURE_DIR) in lines[0] \
        or lines[0].endswith("synth-ai-0.2.4.dev2-crafter")
    assert "…" not in text and any(line.split() == ["events", "720"] for line in lines)


def test_account_and_reference_tables_keep_amounts_whole(tmp_path):
    text = _narrow("calc", "gpt-4o", "1M", "500k", "--cached-input-tokens", "200k")
    _all_whole(["$7.25", "$0.25", "1,500,000"], text)
    prices = invoke("--json", "calc", "--list").json()["models"]
    text = _narrow("calc", "--list")
    _all_whole([p["model"] for p in prices], text)
    _narrow("schema")
    _narrow("demo", "--list")
    from helpers import devserver as _devserver

    with _devserver.running_server(tmp_path) as handle:
        env = {"SYNTH_BASE_URL": handle.base_url, "SYNTH_API_KEY": handle.api_key}
        balance = invoke("--json", "balance", "--usage", env=env).json()
        text = _narrow("balance", "--usage", env=env)
        _all_whole([fmt_usd(balance["balance_usd"]), handle.base_url], text)


def test_the_table_helper_drops_optional_columns_before_cutting_ids():
    from synth_cli.output import Col, Output

    import io
    import sys

    out = Output()
    buffer = io.StringIO()
    real, sys.stdout = sys.stdout, buffer
    try:
        import os

        old = os.environ.get("COLUMNS")
        os.environ["COLUMNS"] = "60"
        try:
            out.table(["id", ("cost", "right"), Col("note", wrap=True), Col("extra", drop=1)],
                      [("ftjob-0123456789abcdefghijklmn", "$0.0068", "a few words of prose to wrap here", "x" * 30)])
        finally:
            if old is None:
                del os.environ["COLUMNS"]
            else:
                os.environ["COLUMNS"] = old
    finally:
        sys.stdout = real
    text = buffer.getvalue()
    assert "ftjob-0123456789abcdefghijklmn" in text and "$0.0068" in text
    assert "x" * 30 not in text and "hidden to fit 60 columns: extra" in text
    assert max(len(line) for line in text.splitlines()) <= 60


def test_sft_tables_keep_job_and_model_ids_whole(tmp_path):
    from helpers import devserver as _devserver

    train = tmp_path / "train.jsonl"
    assert invoke("filter", "--db", FIXTURE_DB, "--min-reward", "1", "-o", train).exit_code == 0
    with _devserver.running_server(tmp_path, step_seconds=0.01) as handle:
        env = {"SYNTH_BASE_URL": handle.base_url, "SYNTH_API_KEY": handle.api_key}
        job = run_cli("--json", "sft", "run", train, "--model", "Qwen/Qwen3-4B-Instruct-2507", "--epochs", "2",
                      "--interval", "0.1", "--no-validate", env=env).stdout.splitlines()[-1]
        import json

        job = json.loads(job)
        assert job["status"] == "succeeded", job
        text = _narrow("sft", "list", env=env)
        _all_whole([job["id"], job["fine_tuned_model"]], text)
        text = _narrow("sft", "show", job["id"], env=env)
        _all_whole([job["id"], job["fine_tuned_model"], job["training_file"]], text)
        checkpoints = invoke("--json", "sft", "checkpoints", job["id"], env=env).json()["checkpoints"]
        text = _narrow("sft", "checkpoints", job["id"], env=env)
        _all_whole([c["id"] for c in checkpoints] + [c["fine_tuned_model_checkpoint"] for c in checkpoints], text)
        text = _narrow("sft", "predictions", job["id"], "--limit", "3", env=env)
        assert "rows 1-3 of" in text
        # `sft events` is log lines (a stamp and the message), like `session`: the terminal wraps them
        _narrow("sft", "trends", job["id"], env=env)
