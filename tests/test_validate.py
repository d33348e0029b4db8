"""`synth_cli.dataset.validate` and `synth-ai sft validate FILE`."""

from __future__ import annotations

import json

import pytest

from helpers import invoke
from synth_cli.dataset.validate import check_example, validate_file

GOOD = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
                     {"role": "assistant", "content": "a"}]}
TOOLS_GOOD = {
    "messages": [
        {"role": "user", "content": [{"type": "text", "text": "look"},
                                     {"type": "image_url", "image_url": {"url": "https://x/y.png", "detail": "high"}}]},
        {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                              "function": {"name": "f", "arguments": "{\"a\": 1}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "r"},
        {"role": "assistant", "content": "done", "weight": 1},
    ],
    "tools": [{"type": "function", "function": {"name": "f", "description": "d", "parameters": {"type": "object"}}}],
    "parallel_tool_calls": False,
}


def write_lines(path, objs):
    path.write_text("".join((o if isinstance(o, str) else json.dumps(o)) + "\n" for o in objs))
    return path


def test_valid_examples():
    assert check_example(GOOD) == []
    assert check_example(TOOLS_GOOD) == []
    # a tool call answered later by the environment's user turn (the fixture's agent) is fine
    ex = {"messages": [{"role": "user", "content": "u"},
                       {"role": "assistant", "content": "t", "tool_calls": TOOLS_GOOD["messages"][1]["tool_calls"]},
                       {"role": "user", "content": "next"}, {"role": "assistant", "content": "a"}]}
    assert check_example(ex) == []


@pytest.mark.parametrize("mutate, reason", [
    (lambda e: e.pop("messages"), "missing or empty messages list"),
    (lambda e: e.update(messages=[]), "missing or empty messages list"),
    (lambda e: e["messages"][0].update(role="developer"), "role 'developer' is not allowed (system, user, assistant, tool)"),
    (lambda e: e["messages"][1].update(extra=1), "message key(s) 'extra' not allowed"),
    (lambda e: e["messages"][1].pop("content"), "user message without content"),
    (lambda e: e["messages"].pop(), "no assistant message"),
    (lambda e: e["messages"][2].update(content=None), "assistant message without content or tool_calls"),
    (lambda e: e["messages"][1].update(content=[{"type": "audio"}]), "content part type 'audio' is not allowed (text, image_url)"),
    (lambda e: e["messages"][2].update(content=[{"type": "image_url", "image_url": {"url": "u"}}]),
     "image_url part in a assistant message (images are allowed in user messages only)"),
    (lambda e: e["messages"][2].update(weight=0.5), "weight must be 0 or 1"),
    (lambda e: e["messages"].insert(2, {"role": "tool", "tool_call_id": "nope", "content": "x"}),
     "tool message answers no earlier tool call"),
    (lambda e: e["messages"].insert(2, {"role": "tool", "content": "x"}), "tool message without tool_call_id"),
    (lambda e: e["messages"][2].update(tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]),
     "tool_calls[].function.arguments must be a string"),
    (lambda e: e["messages"][2].update(tool_calls=[{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}]),
     "tool_calls[].function.arguments is not valid JSON"),
    (lambda e: e["messages"][2].update(tool_calls=[{"type": "function", "function": {"name": "f", "arguments": "{}"}}]),
     "tool call without an id"),
    (lambda e: e.update(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[].function must have a name"),
    (lambda e: e.update(tools={"type": "function"}), "tools must be a list"),
    (lambda e: e.update(parallel_tool_calls="yes"), "parallel_tool_calls must be true or false"),
])
def test_each_rule(mutate, reason):
    ex = json.loads(json.dumps(GOOD))
    mutate(ex)
    assert reason in check_example(ex)


def test_file_report_groups_errors_with_counts_and_lines(tmp_path):
    bad_tool = {"messages": [{"role": "user", "content": "u"}, {"role": "tool", "tool_call_id": "x", "content": "r"},
                             {"role": "assistant", "content": "a"}]}
    f = write_lines(tmp_path / "d.jsonl", [GOOD, "{not json", bad_tool, GOOD, bad_tool, "[1, 2]", "", bad_tool])
    report = validate_file(f)
    assert not report.valid
    assert (report.examples, report.invalid) == (7, 5)
    errors = {e["reason"]: (e["count"], e["lines"]) for e in report.errors()}
    assert errors == {"tool message answers no earlier tool call": (3, [3, 5, 8]),
                      "not valid JSON": (1, [2]), "line is not a JSON object": (1, [6])}
    assert report.errors()[0]["reason"] == "tool message answers no earlier tool call"  # most frequent first
    assert report.error_lines(limit=2) == ["lines 3, 5, 8: tool message answers no earlier tool call",
                                           "line 6: line is not a JSON object", "… and 1 more kinds of error"]
    assert report.summary() == "5 of 7 examples invalid: tool message answers no earlier tool call (3), " \
                               "line is not a JSON object (1)"
    assert not report.ok


def test_cli_valid_file(tmp_path):
    f = write_lines(tmp_path / "ok.jsonl", [GOOD] * 9 + [TOOLS_GOOD])
    res = invoke("sft", "validate", str(f))
    assert res.exit_code == 0, res.output
    assert "10 examples, all valid" in res.stdout
    assert "1 with tool calls" in res.stdout
    res = invoke("sft", "validate", str(f), "--json")
    assert res.exit_code == 0
    data = res.json()
    assert data["valid"] is True and data["examples"] == 10 and data["errors"] == []


def test_cli_invalid_file_exits_1_with_grouped_reasons(tmp_path):
    f = write_lines(tmp_path / "bad.jsonl", [GOOD] * 10 + [{"messages": [{"role": "user", "content": "u"}]}] * 3)
    res = invoke("sft", "validate", str(f))
    assert res.exit_code == 1
    assert "no assistant message" in res.stdout and "11, 12, 13" in res.stdout
    assert res.stderr.strip().splitlines()[-1] == f"error: {f}: 3 of 13 examples are invalid"
    res = invoke("--json", "sft", "validate", str(f))
    assert res.exit_code == 1
    data = res.json()
    assert data["valid"] is False
    assert data["errors"] == [{"reason": "no assistant message", "count": 3, "lines": [11, 12, 13]}]


def test_cli_few_examples_is_an_error(tmp_path):
    """OpenAI-compatible fine-tuning refuses fewer than 10 examples (invalid_n_examples): an error."""
    f = write_lines(tmp_path / "few.jsonl", [GOOD] * 3)
    res = invoke("sft", "validate", str(f))
    assert res.exit_code == 1
    assert f"error: {f}: only 3 examples; at least 10 are required" in res.stderr
    assert invoke("sft", "validate", str(f), "--validation").exit_code == 0  # no minimum for validation files


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_cli_empty_file(tmp_path, content):
    f = tmp_path / "empty.jsonl"
    f.write_text(content)
    res = invoke("sft", "validate", str(f))
    assert res.exit_code == 1
    assert res.stderr.strip() == f"error: {f}: no examples (empty file)"


def test_cli_missing_file(tmp_path):
    res = invoke("sft", "validate", str(tmp_path / "nope.jsonl"))
    assert res.exit_code == 1
    assert res.stderr.strip() == f"error: {tmp_path / 'nope.jsonl'}: no such file"
    assert "Traceback" not in res.output


def test_non_utf8_line(tmp_path):
    f = tmp_path / "latin.jsonl"
    f.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"messages": "\xff"}\n')
    report = validate_file(f)
    assert report.invalid == 1
    assert report.errors()[0]["lines"] == [2]
