"""`--base-url`, `--api-key` and `--provider` are declared once (commands/_options.py): every command
that takes them names them the same, with the same metavar and the same help (the resolution chain)."""

from __future__ import annotations

import typer

from synth_cli.commands._options import API_KEY_HELP, BASE_URL_HELP, PROVIDER_HELP

SHARED = {"--base-url": ("URL", BASE_URL_HELP), "--api-key": ("KEY", API_KEY_HELP), "--provider": ("NAME", PROVIDER_HELP)}


def _commands(cmd, path=()):
    yield path, cmd
    for name, sub in getattr(cmd, "commands", {}).items():
        yield from _commands(sub, (*path, name))


def test_every_command_declares_the_shared_options_alike():
    from synth_cli.app import app

    seen: dict[str, list[str]] = {flag: [] for flag in SHARED}
    for path, cmd in _commands(typer.main.get_command(app)):
        if not path or path == ("demo",):  # the root's global options; demo picks its own offline provider
            continue
        for param in cmd.params:
            for flag, (metavar, help_text) in SHARED.items():
                if flag in param.opts:
                    seen[flag].append(" ".join(path))
                    assert param.metavar == metavar, (path, flag, param.metavar)
                    assert param.help.startswith(help_text), (path, flag, param.help)
    # the commands that talk to a backend, balance and status included
    for flag in ("--base-url", "--api-key"):
        assert {"balance", "status", "usage", "sft run", "sft submit", "sft poll"} <= set(seen[flag]), seen[flag]
    assert {"balance", "status", "sft run"} <= set(seen["--provider"]), seen["--provider"]


def test_balance_and_status_read_the_same_environment_chain(tmp_path):
    # SYNTH_BACKEND_BASE_URL wins over SYNTH_BASE_URL for both, as for sft (the chain the help names)
    from helpers import invoke

    env = {"SYNTH_BACKEND_BASE_URL": "http://127.0.0.1:9/v1", "SYNTH_BASE_URL": "http://127.0.0.1:8/v1",
           "SYNTH_TRACES_ROOT": str(tmp_path), "SYNTH_API_KEY": "sk-test-shared-chain-0001"}
    status = invoke("--json", "status", env=env)
    assert status.json()["backend"]["base_url"] == "http://127.0.0.1:9/v1", status.stdout
    balance = invoke("balance", env=env)
    assert balance.exit_code != 0 and "127.0.0.1:9" in balance.stderr, balance.stderr
