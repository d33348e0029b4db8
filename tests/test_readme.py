"""README.md stays true: the quickstart, the command table, the variables, the links."""

from __future__ import annotations

import re

from synth_cli.config import ENV_VARS
from helpers import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quickstart_commands() -> list[str]:
    section = README.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_quickstart_is_two_commands_and_ci_runs_the_second():
    commands = _quickstart_commands()
    assert len(commands) == 2 and all("\n" not in c for c in commands)
    main_job, tests = commands
    assert main_job.startswith("pip install") and main_job.endswith("synth-ai demo")
    assert "pytest" in tests and "[test]" in tests
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert tests in ci


def test_every_command_is_in_the_table():
    from synth_cli.app import app
    from typer.main import get_command

    root = get_command(app)
    table = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    for name, command in root.commands.items():
        if hasattr(command, "commands"):  # a group: each subcommand
            for sub in command.commands:
                assert f"{name} {sub}" in table, f"`{name} {sub}` missing from the README's command table"
        else:
            assert f"`{name}" in table or f", `{name}" in table or f"`{name} " in table, name


def test_every_variable_is_documented():
    for name in ENV_VARS:
        assert name in README, f"{name} missing from README.md"


def test_relative_links_exist():
    for target in re.findall(r"\]\(([^)#]+)\)", README):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README links to a missing {target}"


def test_performance_figures_come_from_docs():
    perf = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    section = README.split("## Performance", 1)[1].split("\n## ", 1)[0]
    figures = re.findall(r"\b\d[\d,]*(?:\.\d+)? ?(?:s|ms|MB|calls/s|records/s)\b", section)
    assert len(figures) > 10, figures  # the table is there and has figures with units
    for figure in figures:
        assert figure in perf, f"README's performance figure {figure!r} is not in docs/performance.md"
