"""`synth-ai man` and the roff pages in man/: generated from the app, checked against it."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest
import typer

from helpers import ROOT, invoke, run_cli
from synth_cli import __version__, config, manpages
from synth_cli.manual import files, pages as man_pages, roff, text as man_text

MAN_DIR = ROOT / "man"
REGENERATE = "regenerate them with `python -m synth_cli.manpages man/` (or `synth-ai man --write man/`) and commit"
ROOT_CMD = manpages.root_command()


def test_pages_in_the_repository_match_the_app():
    problems = files.check_pages(MAN_DIR, ROOT_CMD)
    assert not problems, "man/ is out of date with the CLI: " + "; ".join(problems) + " — " + REGENERATE


def test_one_page_per_command_and_group():
    pages = man_pages.build_pages(ROOT_CMD)
    paths = [page.path for page in pages]
    assert paths[0] == () and pages[0].filename == "synth-ai.1"
    assert paths == man_pages.command_paths(ROOT_CMD)
    root = manpages.root_command()
    ctx = root.context_class(root, info_name="synth-ai")
    for name in root.list_commands(ctx):
        assert (name,) in paths, name
    names = {page.filename for page in pages}
    assert {"synth-ai.1", "synth-ai-calc.1", "synth-ai-man.1"} <= names
    if "sft" in root.commands:
        assert "synth-ai-sft.1" in names


def test_generator_is_generic_for_any_typer_app():
    demo = typer.Typer(name="x")
    group = typer.Typer(help="A group of things.")

    @group.command("alpha")
    def alpha(count: int = typer.Option(3, "--count", help="How many."),
              path: str = typer.Argument(..., help="Where.")) -> None:
        """Do alpha.

        More about alpha.
        """

    @group.command("beta", hidden=True)
    def beta() -> None:
        """Hidden."""

    @demo.command("solo")
    def solo(flag: bool = typer.Option(False, "--flag", help="A [bold]flag[/bold].")) -> None:
        """Solo command."""

    demo.add_typer(group, name="grp")
    pages = {page.filename: page for page in man_pages.build_pages(typer.main.get_command(demo))}
    assert set(pages) == {"synth-ai.1", "synth-ai-solo.1", "synth-ai-grp.1", "synth-ai-grp-alpha.1"}
    alpha_roff = roff.to_roff(pages["synth-ai-grp-alpha.1"])
    assert r"\fB\-\-count\fR \fIINTEGER\fR" in alpha_roff and "How many." in alpha_roff and "default: 3" in alpha_roff
    assert "More about alpha." in alpha_roff and "PATH" in alpha_roff
    solo_text = man_text.to_text(pages["synth-ai-solo.1"])
    assert "A flag." in solo_text and "[bold]" not in solo_text
    assert r"synth\-ai\-grp\-alpha(1)" in roff.to_roff(pages["synth-ai-grp.1"])


def test_pages_are_deterministic_ascii_roff_with_the_version():
    first, second = files.render_all(ROOT_CMD), files.render_all(ROOT_CMD)
    assert first == second
    allowed = {".TH", ".SH", ".PP", ".TP", ".RS", ".RE", ".nf", ".fi", ".nh", ".ad", '.\\"'}
    for name, text in first.items():
        assert text.isascii(), f"{name} has non-ASCII characters"
        assert f'"synth-ai {__version__}"' in text
        assert not re.search(r"20\d\d-\d\d-\d\d", text.split("\n", 3)[2]), "no dates in .TH"
        for line in text.splitlines():
            if line.startswith((".", "'")):
                assert line.split(" ")[0] in allowed, f"{name}: unexpected control line {line!r}"


def test_roff_escaping():
    assert roff.roff_escape("--json") == r"\-\-json"
    assert roff.roff_escape("a\\b") == r"a\eb"
    assert roff.roff_escape("x → y") == r"x \(-> y"
    assert roff.roff_escape("é") == r"\[u00E9]"
    assert roff._roff_inline(".starts with a dot").startswith("\\&.")


def test_root_page_lists_commands_environment_and_exit_codes():
    text = roff.to_roff(man_pages.build_pages(ROOT_CMD)[0])
    for name in config.ENV_VARS:
        assert roff.roff_escape(name) in text, name
    for section in ("NAME", "SYNOPSIS", "COMMANDS", "GLOBAL OPTIONS", "ENVIRONMENT", "EXIT STATUS", "EXAMPLES"):
        assert f'.SH "{section}"' in text


@pytest.mark.skipif(shutil.which("man") is None, reason="man(1) is not installed")
def test_man_renders_every_page_without_warnings(tmp_path):
    files.write_pages(tmp_path, ROOT_CMD)
    env = {**os.environ, "MANWIDTH": "100", "MANPAGER": "cat", "PAGER": "cat", "LC_ALL": "C.UTF-8"}
    for page in sorted(tmp_path.glob("*.1")):
        proc = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True, env=env,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr.strip() == "", f"{page.name}: {proc.stderr}"
        assert "NAME" in proc.stdout and "SYNOPSIS" in proc.stdout
    root = subprocess.run(["man", "-l", str(tmp_path / "synth-ai.1")], capture_output=True, text=True, env=env,
                          timeout=60).stdout
    assert "synth-ai - " in root and "--json" in root and "SYNTH_BACKEND_API_KEY" in root


def test_drift_is_detected(tmp_path):
    files.write_pages(tmp_path, ROOT_CMD)
    assert files.check_pages(tmp_path, ROOT_CMD) == []
    page = tmp_path / "synth-ai-calc.1"
    page.write_text(page.read_text().replace("price table", "price list"))
    (tmp_path / "synth-ai-gone.1").write_text(".TH GONE 1\n")
    (tmp_path / "synth-ai-man.1").unlink()
    problems = files.check_pages(tmp_path, ROOT_CMD)
    assert "synth-ai-calc.1 differs from the app" in problems
    assert "synth-ai-man.1 is missing" in problems
    assert any("synth-ai-gone.1" in p for p in problems)
    # the script says the same and fails; writing fixes it and prunes the stale page
    check = subprocess.run([sys.executable, "-m", "synth_cli.manpages", "--check", str(tmp_path)],
                           capture_output=True, text=True)
    assert check.returncode == 1 and "differs" in check.stderr
    write = subprocess.run([sys.executable, "-m", "synth_cli.manpages", str(tmp_path)], capture_output=True, text=True)
    assert write.returncode == 0
    assert files.check_pages(tmp_path, ROOT_CMD) == [] and not (tmp_path / "synth-ai-gone.1").exists()


def test_examples_run_existing_commands_with_existing_options():
    root = manpages.root_command()
    ctx = root.context_class(root, info_name="synth-ai")
    global_opts = {o for p in root.get_params(ctx) for o in (*p.opts, *getattr(p, "secondary_opts", []))}
    kept = [(path, man_pages.examples_of(node, path)) for path, node, _ in man_pages.walk(root)]
    assert sum(len(examples) for _, examples in kept) > 40  # each command keeps its examples beside its code
    for _path, examples in kept:
        for command, text in examples:
            assert text.strip(), command
            words = shlex.split(command)
            if words[0] != "synth-ai":
                continue
            if words[1] not in root.commands and not words[1].startswith("-"):
                continue
            resolved = man_pages.resolve_example(command, root)
            if resolved is None:
                if "sft" == words[1] and len(words) > 2:
                    continue  # a subcommand another module adds
                pytest.fail(f"example {command!r} names no command")
            _, node, node_ctx = resolved
            options = {o for p in node.get_params(node_ctx) for o in (*p.opts, *getattr(p, "secondary_opts", []))}
            for word in words[1:]:
                if word.startswith("-") and not re.fullmatch(r"-\d.*", word):
                    flag = word.split("=", 1)[0]
                    assert flag in options or flag in global_opts, f"example {command!r}: no option {flag}"


# --------------------------------------------------------------------------- the command


def test_man_shows_every_command_and_every_environment_variable():
    result = invoke("man")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("SYNTH-AI(1)")
    for page in man_pages.build_pages(ROOT_CMD)[1:]:
        if len(page.path) <= 2:
            assert page.command in result.stdout, page.command
    for name in config.ENV_VARS:
        assert name in result.stdout
    assert "EXAMPLES" in result.stdout and "$ synth-ai calc gpt-4o 1M 500k" in result.stdout


def test_man_command_page_and_nested_paths():
    result = invoke("man", "calc")
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("SYNTH-AI-CALC(1)") and "--cached-input-tokens" in out and "SYNTH_PRICING_FILE" in out
    assert "$ synth-ai calc gpt-4o 1000000 500000" in out
    assert invoke("man", "synth-ai", "calc").stdout == out
    if ("sft", "run") in man_pages.command_paths(ROOT_CMD):
        assert invoke("man", "sft", "run").stdout.startswith("SYNTH-AI-SFT-RUN(1)")
        assert invoke("man", "sft run").stdout.startswith("SYNTH-AI-SFT-RUN(1)")


def test_man_unknown_command_suggests_close_names():
    result = invoke("man", "calk")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "error: no command 'calk' in synth-ai"
    assert lines[1].startswith("hint: did you mean: calc?")


def test_man_json_and_write(tmp_path):
    data = invoke("--json", "man", "calc").json()
    assert data["page"] == "synth-ai-calc" and data["sections"][0]["title"] == "NAME"
    target = tmp_path / "pages"
    result = run_cli("man", "--write", str(target))
    assert result.exit_code == 0, result.stderr
    assert files.check_pages(target, ROOT_CMD) == []
    assert "man pages in" in result.stdout


def test_man_text_wraps_to_the_terminal():
    result = run_cli("man", env={"COLUMNS": "60"})
    assert result.exit_code == 0
    long_lines = [line for line in result.stdout.splitlines() if len(line) > 60 and " " in line.strip()]
    # only unbreakable words (long commands in examples) may overflow
    assert all(line.lstrip().startswith("$ ") or " " not in line.strip()[:60] for line in long_lines), long_lines
