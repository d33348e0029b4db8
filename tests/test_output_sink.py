"""Output.result, the one method a command's result goes through: --json, --quiet and human."""

from __future__ import annotations

import json

from synth_cli.output import Output


def _human(out: Output):
    return lambda: out.line("a human line")


def test_json_is_one_document_or_the_last_line_of_a_stream(capsys):
    out = Output(json_mode=True)
    out.result({"id": "ftjob-1"}, _human(out))
    document = capsys.readouterr().out
    assert json.loads(document) == {"id": "ftjob-1"} and document.count("\n") > 1  # indented
    out.result({"id": "ftjob-1"}, _human(out), stream=True)
    line = capsys.readouterr().out
    assert line == '{"id": "ftjob-1"}\n'  # one NDJSON line, like the events before it


def test_quiet_prints_the_essential_values_inert(capsys):
    out = Output(quiet=True)
    out.result({}, _human(out), essential=["ftjob-1", "ft:model\x1b]0;pwned\x07"])
    assert capsys.readouterr().out == "ftjob-1\nft:model\\x1b]0;pwned\\x07\n"
    out.result({}, _human(out), essential=[])  # the result is a file or an exit code
    assert capsys.readouterr().out == ""
    out.result({}, _human(out))  # no essential values: the report is the result
    assert capsys.readouterr().out == "a human line\n"


def test_human_mode_renders_the_view(capsys):
    out = Output()
    out.result({"id": "x"}, _human(out), essential=["x"])
    assert capsys.readouterr().out == "a human line\n"
