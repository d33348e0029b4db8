"""Text from traces, datasets and servers is shown inert by every renderer (synth_cli/output.py).

A DB whose experiment names, metadata, model names and model output hold terminal escape
sequences (title change, screen clear, hidden text, CR overwrite, a C1 CSI, a bidi override)
and rich markup (`[/data/v2 split]` would crash rich, `[bold]` would vanish) is read by
session, experiments, experiment, recent and traces: no raw control character reaches the
terminal and the markup shows literally, off a terminal and on one.
"""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time

import pytest
from helpers.filterdb import call, make_db, text
from helpers import ROOT, invoke

TITLE = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J\x1b[H"
HIDDEN = "\x1b[8msecret\x1b[0m"
EXPERIMENT = f"ablation [/data/v2 split]{TITLE}"
EXPERIMENT2 = "lr [bold] sweep\u202e"
OUTPUT = f"answer{CLEAR}{HIDDEN}\rfake line\x9b31m :smile:"
MODEL = "model-[red]x[/red]"

#: what may reach a terminal raw: tab, newline, and (on a terminal) rich's own SGR colour codes
_RAW = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SGR = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def nasty_db(tmp_path):
    db = tmp_path / "nasty.db"
    sessions = [
        {"id": "sess-nasty-1", "experiment": ("exp-1", EXPERIMENT), "metadata": {"note": f"meta{CLEAR}[b]x"},
         "calls": [call([text("user", f"hi{TITLE}")], OUTPUT, model=MODEL)], "rewards": [1.0]},
        {"id": "sess-nasty-2", "experiment": ("exp-2", EXPERIMENT2),
         "calls": [call([text("user", "q")], "plain", model=MODEL)], "rewards": [0.0]},
    ]
    return make_db(db, sessions)


COMMANDS = [
    ("session", "sess-nasty-1"),
    ("session", "sess-nasty-1", "--full"),
    ("experiments",),
    ("experiment", "exp-1"),
    ("experiment", "exp-2"),
    ("recent", "--hours", "24"),
    ("traces",),
    ("usage",),
]


def _assert_inert(output: str, *, terminal: bool = False) -> None:
    shown = _SGR.sub("", output) if terminal else output
    raw = _RAW.findall(shown)
    assert not raw, (raw, output)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_trace_text_is_inert_off_a_terminal(nasty_db, command):
    result = invoke(*command, "--db", nasty_db)
    assert result.exit_code == 0, result.output
    assert "MarkupError" not in result.output and "unexpected" not in result.output
    _assert_inert(result.stdout)
    _assert_inert(result.stderr)


def test_markup_in_data_shows_literally(nasty_db):
    listing = invoke("experiments", "--db", nasty_db).stdout
    assert "ablation [/data/v2 split]\\x1b]0;pwned\\x07" in listing
    assert "lr [bold] sweep\\u202e" in listing
    detail = invoke("experiment", "exp-2", "--db", nasty_db).stdout
    assert "lr [bold] sweep" in detail
    session = invoke("session", "sess-nasty-1", "--full", "--db", nasty_db).stdout
    assert "answer\\x1b[2J\\x1b[H\\x1b[8msecret\\x1b[0m\\x0dfake line\\x9b31m :smile:" in session
    assert "model-[red]x[/red]" in session


def _on_a_pty(*args: str) -> str:
    """Run the CLI on a pseudo-terminal (rich renders styled output there) and return what it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "synth_cli", *args], stdin=slave, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(30)
    os.close(master)
    assert proc.returncode == 0, b"".join(chunks)
    return b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.parametrize("command", [("session", "sess-nasty-1", "--full"), ("experiments",),
                                     ("experiment", "exp-1"), ("recent",)], ids=lambda c: c[0])
def test_trace_text_is_inert_on_a_terminal(nasty_db, command):
    output = _on_a_pty(*command, "--db", str(nasty_db))
    assert "pwned" in output or "answer" in output or "ablation" in output
    _assert_inert(output.replace("\r\n", "\n"), terminal=True)
    assert "\x1b]0;" not in output and "\x1b[2J" not in output and "\x1b[8m" not in output


def test_error_lines_are_inert(tmp_path):
    name = tmp_path / f"x{CLEAR}.db"
    result = invoke("traces", "--db", name)
    assert result.exit_code == 1
    _assert_inert(result.stderr)
    assert "\\x1b[2J" in result.stderr


@pytest.mark.parametrize("command", [("session", "sess-nasty-1"), ("experiments",), ("experiment", "exp-1")],
                         ids=lambda c: c[0])
def test_json_output_has_no_raw_control_characters(nasty_db, command):
    """--json keeps the data exact (a JSON reader gets the same strings) but escapes C1 controls and
    bidi overrides too, which json.dumps would leave raw for a terminal showing the document."""
    result = invoke("--json", *command, "--db", nasty_db)
    assert result.exit_code == 0, result.output
    _assert_inert(result.stdout)
    expected = {"session": OUTPUT, "experiments": EXPERIMENT, "experiment": EXPERIMENT}[command[0]]
    assert any(expected in text for text in _strings(result.json()))  # the exact data, escapes and all


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _strings(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _strings(value)


def test_renderers_building_their_own_rich_objects_are_covered(capsys):
    """filter's summary and the sft live view print rich objects on the console directly: the
    console itself makes every text segment inert (and never parses markup in strings)."""
    from rich.table import Table
    from rich.text import Text

    from synth_cli.output import Output

    out = Output()
    table = Table()
    table.add_column("model")
    table.add_row(Text(f"gpt{TITLE}"))
    table.add_row(MODEL)  # a plain string cell: literal, not markup
    out.console.print(table)
    out.console.print(Text.assemble(("12:00:01  ", "dim"), f"event {CLEAR}{HIDDEN}"))
    out.console.print(EXPERIMENT)
    shown = capsys.readouterr().out
    _assert_inert(shown)
    assert "gpt\\x1b]0;pwned" in shown and "model-[red]x[/red]" in shown  # (rich itself drops BEL)
    assert "event \\x1b[2J\\x1b[H\\x1b[8msecret\\x1b[0m" in shown
    assert "ablation [/data/v2 split]" in shown
