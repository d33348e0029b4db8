"""End to end: provider fixture → LLMCallRecord → SessionTracer → `synth-ai filter --mode calls` → JSONL.

Each example must reproduce the fixture's original conversation exactly: the same messages
(roles, names, text, image parts, tool calls with their ids and argument strings, tool results),
the same tools, and `parallel_tool_calls` when the request set it. For OpenAI fixtures the
original is the request's messages plus the first choice's message; for Anthropic fixtures it
is written out by hand in the fixture (`expected_openai`). The only normalisation: an assistant
message that makes tool calls may spell "no text" as a missing, null or empty `content`.
"""

from __future__ import annotations

import importlib.util
import json

import pytest

from helpers.llm_fixtures import build, fixture_names, load, openai_conversation
from helpers import invoke
from synth_cli.tracing.tracer import SessionTracer

pytestmark = pytest.mark.skipif(importlib.util.find_spec("synth_cli.commands.filter") is None,
                                reason="the `filter` command (synth_cli/commands/filter.py) is not there yet")

SUCCESS = [n for n in fixture_names() if not n.endswith("_error")]
ERRORS = [n for n in fixture_names() if n.endswith("_error")]


def _canonical(message: dict) -> dict:
    message = dict(message)
    if message.get("role") == "assistant" and message.get("tool_calls") and message.get("content") in (None, ""):
        message.pop("content", None)
    return message


def _canonical_example(example: dict) -> dict:
    out = {"messages": [_canonical(m) for m in example["messages"]]}
    for key in ("tools", "parallel_tool_calls"):
        if key in example:
            out[key] = example[key]
    return out


def _write_db(path, names, *, streamed=False):
    call_ids = {}
    with SessionTracer(path) as tracer:
        tracer.create_experiment("exp_fixtures", "provider fixtures")
        for name in names:
            fx = load(name)
            record = build(fx, streamed=streamed and "stream" in fx)
            call_ids[record.call_id] = name
            with tracer.session(metadata={"fixture": name}, experiment_id="exp_fixtures"):
                with tracer.timestep("step_0", turn_number=0):
                    tracer.record_llm_call(record, system_instance_id="agent")
    return call_ids


def _run_filter(db, out, *extra):
    result = invoke("filter", "--db", str(db), "--output", str(out), "--mode", "calls", "--include-metadata",
                    *extra)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


@pytest.mark.parametrize("streamed", [False, True], ids=["response", "stream"])
def test_each_fixture_reproduces_its_conversation(tmp_path, streamed):
    db, out = tmp_path / "fixtures.db", tmp_path / "train.jsonl"
    call_ids = _write_db(db, SUCCESS + ERRORS, streamed=streamed)
    examples = _run_filter(db, out)
    by_fixture = {call_ids[e["metadata"]["call_id"]]: e for e in examples}
    assert sorted(by_fixture) == sorted(SUCCESS)          # failed calls give no example
    assert len(examples) == len(SUCCESS)
    for name in SUCCESS:
        expected = _canonical_example(openai_conversation(load(name)))
        got = _canonical_example(by_fixture[name])
        assert got == expected, name
        assert set(by_fixture[name]) <= {"messages", "tools", "parallel_tool_calls", "metadata"}


def test_examples_validate(tmp_path):
    db, out = tmp_path / "fixtures.db", tmp_path / "train.jsonl"
    _write_db(db, SUCCESS)
    _run_filter(db, out)
    result = invoke("--json", "sft", "validate", str(out))
    assert result.exit_code == 0, result.output
