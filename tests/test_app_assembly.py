"""The root app is assembled from one explicit table (COMMANDS); a run builds only its command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import typer

from helpers import FIXTURE_DB, run_cli
from synth_cli.app import COMMANDS, build_app, command_name


def _names(app: typer.Typer) -> set[str]:
    return set(typer.main.get_command(app).commands)


def test_the_table_names_every_command_of_the_app_and_nothing_else():
    from synth_cli.app import app

    assert _names(app) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_name_builds_an_app_with_that_command(name):
    names = _names(build_app(name))
    assert name in names
    assert names == {n for n, module in COMMANDS.items() if module == COMMANDS[name]}


@pytest.mark.parametrize("args, expected", [
    (["usage", "--db", "x"], "usage"),
    (["--json", "usage"], "usage"),
    (["usage", "--json"], "usage"),
    (["--api-key", "traces", "status"], "status"),  # a root option's value is not the command
    (["--base-url", "http://127.0.0.1:1", "-q", "sft", "list"], "sft"),
    (["--env-file", "x.env", "filter"], "filter"),
    (["--env-file=x.env", "filter"], "filter"),
    (["--help"], None),
    (["--version"], None),
    ([], None),
    (["--", "traces"], None),
    (["tracse"], "tracse"),
])
def test_command_name(args, expected):
    assert command_name(args) == expected


def _modules_loaded_by(*argv: str) -> set[str]:
    probe = ("import sys\nfrom synth_cli.app import main\n"
             f"sys.argv = ['synth-ai', *{list(argv)!r}]\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "sys.__stderr__.write(repr(sorted(m for m in sys.modules if m.startswith('synth_cli.commands.'))))\n")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    return set(eval(proc.stderr.strip().splitlines()[-1]))


def test_a_report_loads_only_its_own_command_module():
    loaded = _modules_loaded_by("--json", "usage", "--db", str(FIXTURE_DB))
    assert "synth_cli.commands.usage" in loaded
    assert not loaded & {"synth_cli.commands.sft_jobs", "synth_cli.commands.filter", "synth_cli.commands.balance",
                         "synth_cli.commands.serve", "synth_cli.commands.proxy"}


def test_an_unknown_command_loads_every_command_for_its_suggestion():
    assert {f"synth_cli.commands.{m}" for m in COMMANDS.values()} <= _modules_loaded_by("tracse")
    result = run_cli("tracse")
    assert result.exit_code == 2 and "Did you mean 'traces'?" in result.stderr


@pytest.mark.parametrize("args", [["--help"], ["-h"], [], ["--version"]])
def test_the_root_alone_loads_no_command_module(args):
    assert _modules_loaded_by(*args) <= {"synth_cli.commands._index"}


@pytest.mark.parametrize("args", [["--help"], [], ["--json"]])
@pytest.mark.parametrize("columns", ["60", "120"])
def test_the_root_help_from_the_summaries_is_the_whole_apps(args, columns):
    env = {"COLUMNS": columns}
    listed = run_cli(*args, env=env)
    whole = subprocess.run([sys.executable, "-c", "import sys; from synth_cli.app import app; "
                            "app(sys.argv[1:], prog_name='synth-ai')", *args],
                           capture_output=True, text=True, timeout=60, env={**os.environ, **env})
    assert (listed.exit_code, listed.stdout, listed.stderr) == (whole.returncode, whole.stdout, whole.stderr)
    if args == ["--help"]:
        assert "Inventory of trace DBs" in listed.stdout


def test_every_command_registers_the_summary_of_the_index():
    from synth_cli.app import app
    from synth_cli.commands._index import SUMMARIES

    assert list(SUMMARIES) == list(COMMANDS)
    group = typer.main.get_command(app)
    assert {name: cmd.get_short_help_str(limit=300) for name, cmd in group.commands.items()} == SUMMARIES


def test_man_lists_every_command_though_only_its_module_is_loaded():
    text = run_cli("man", "--no-pager").stdout
    for name in ("traces", "filter", "sft run", "balance", "proxy", "serve"):
        assert f"synth-ai {name}" in text, name
