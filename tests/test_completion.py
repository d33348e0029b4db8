"""Shell completion (docs/completion.md): Typer's protocol works through the root group."""

from __future__ import annotations

from helpers import run_cli

NO_DETECT = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def test_bash_completion_protocol_completes_commands_subcommands_and_options():
    env = {"_SYNTH_AI_COMPLETE": "complete_bash", "COMP_WORDS": "synth-ai ca", "COMP_CWORD": "1"}
    assert run_cli(env=env).stdout.split() == ["calc"]
    env.update(COMP_WORDS="synth-ai calc --pr", COMP_CWORD="2")
    assert run_cli(env=env).stdout.split() == ["--pricing"]
    env.update(COMP_WORDS="synth-ai man --no", COMP_CWORD="2")
    assert run_cli(env=env).stdout.split() == ["--no-pager"]


def test_show_and_install_completion(tmp_path):
    shown = run_cli("--show-completion", "bash", env=NO_DETECT)
    assert shown.exit_code == 0
    assert "_SYNTH_AI_COMPLETE=complete_bash" in shown.stdout and "complete " in shown.stdout
    installed = run_cli("--install-completion", "bash", env={**NO_DETECT, "HOME": str(tmp_path)})
    assert installed.exit_code == 0, installed.output
    script = tmp_path / ".bash_completions" / "synth-ai.sh"
    assert script.read_text() == shown.stdout.rstrip("\n") or "_SYNTH_AI_COMPLETE" in script.read_text()
    assert f"source '{script}'" in (tmp_path / ".bashrc").read_text()
