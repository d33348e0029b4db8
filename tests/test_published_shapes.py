"""`filter` on a DB the PUBLISHED synth-ai tracer wrote from real SDK objects (tests/fixtures/published).

The DB and expected.json come from tests/fixtures/gen_published_shapes.py (run in a separate
virtualenv with synth-ai==0.2.4.dev2, openai, anthropic). expected.json holds, per call, the
example the source call stands for, written from the messages the agent sent and the SDK
responses it got, not by this project's converter. Each test checks one shape: every
derivable example is written and equal, message by message, to what the source calls hold.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from helpers import invoke

FIXTURE = Path(__file__).parent / "fixtures" / "published"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())
CALLS = EXPECTED["calls"]


@pytest.fixture(scope="module")
def db(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("published") / "shapes.db"
    shutil.copy(FIXTURE / "shapes.db", copy)
    return copy


def _norm(message: dict) -> dict:
    """One spelling of 'no text' on an assistant message that calls tools (the record holds "")."""
    out = dict(message)
    if out.get("role") == "assistant" and out.get("tool_calls") and out.get("content") in ("", None):
        out.pop("content", None)
    return out


def _run(db: Path, tmp_path: Path, *args: str) -> tuple[dict, list[dict]]:
    out = tmp_path / "out.jsonl"
    result = invoke("--json", "filter", "--db", str(db), "-o", str(out), "--include-metadata", "--no-redact", *args)
    assert result.exit_code == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    return json.loads(result.stdout), lines


@pytest.fixture(scope="module")
def calls_mode(db, tmp_path_factory) -> tuple[dict, dict]:
    summary, lines = _run(db, tmp_path_factory.mktemp("calls"))
    by_call = {}
    for line in lines:
        meta = line.pop("metadata")
        assert meta["call_id"] not in by_call
        by_call[meta["call_id"]] = (meta, line)
    return summary, by_call


SHAPES = sorted({c["shape"] for c in CALLS.values()})


@pytest.mark.parametrize("shape", SHAPES)
def test_calls_mode_writes_every_derivable_example_equal_to_the_source(calls_mode, shape):
    summary, by_call = calls_mode
    expected = {cid: c for cid, c in CALLS.items() if c["shape"] == shape}
    derivable = {cid for cid, c in expected.items() if c["messages"] is not None}
    written = {cid for cid in by_call if cid in expected}
    assert written == derivable
    for cid in derivable:
        meta, example = by_call[cid]
        assert meta["session_id"] == expected[cid]["session"]
        want = [_norm(m) for m in expected[cid]["messages"]]
        got = [_norm(m) for m in example["messages"]]
        assert len(got) == len(want), cid
        for i, (g, w) in enumerate(zip(got, want)):
            assert g == w, f"{cid} message {i}"
        assert example.get("tools") == expected[cid]["tools"]


def test_calls_mode_leaves_out_only_what_cannot_be_made_valid(calls_mode):
    summary, by_call = calls_mode
    derivable = [cid for cid, c in CALLS.items() if c["messages"] is not None]
    assert summary["examples"]["written"] == len(derivable) == len(by_call)
    # the one left out: the turn whose arguments are not JSON, named with its reason
    bad = EXPECTED["invalid_turn"]
    assert summary["examples"]["invalid_examples"] == [
        {"session_id": bad["session"], "call_id": bad["call_id"], "reason": bad["reason"]}]
    assert summary["examples"]["restored_tool_calls"] > 0
    assert summary["skipped_parts"] == {}  # the Anthropic image is no longer 'image_without_data'


def test_tool_calls_restored_by_id_and_by_order(calls_mode):
    _, by_call = calls_mode
    for shape in ("tools", "tool-ids"):  # without / with tool_call_id on the stored tool messages
        _, example = by_call[f"{shape}-call-3"]
        roles = [m["role"] for m in example["messages"]]
        assert roles == ["system", "user", "assistant", "tool", "assistant", "tool", "tool", "assistant"]
        parallel = example["messages"][4]["tool_calls"]
        assert [c["id"] for c in parallel] == [m["tool_call_id"] for m in example["messages"][5:7]]
        assert len(parallel) == 2


def test_anthropic_base64_image_becomes_a_data_url(calls_mode):
    _, by_call = calls_mode
    _, example = by_call["anthropic-call-1"]
    parts = example["messages"][1]["content"]
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo")


def test_stream_tool_calls_rebuilt_from_the_chunks(calls_mode):
    _, by_call = calls_mode
    _, example = by_call["stream-call-2"]
    assert example["messages"][-1]["tool_calls"] == [
        {"id": "call_s1", "type": "function", "function": {"name": "run", "arguments": '{"cmd": "ls"}'}}]


def test_unknown_schema_version_is_named_with_its_count(calls_mode, db, tmp_path):
    summary, _ = calls_mode
    assert summary["schema_versions"] == {"1.1": 1}
    assert any("schema_version '1.1'" in n and n.startswith("1 call record") for n in summary["notices"])
    result = invoke("filter", "--db", str(db), "-o", str(tmp_path / "x.jsonl"), "--strict")
    assert result.exit_code != 0
    assert "schema_version '1.1'" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_sessions_mode_conversations_equal_the_source(db, tmp_path):
    summary, lines = _run(db, tmp_path, "--mode", "sessions")
    got: dict[str, list] = {}
    for line in lines:
        meta = line.pop("metadata")
        got.setdefault(meta["session_id"], []).append((meta["call_id"], line))
    assert set(got) == set(EXPECTED["sessions"])
    for sid, conversations in EXPECTED["sessions"].items():
        assert [cid for cid, _ in got[sid]] == [conv[-1] for conv in conversations], sid
        for conv, (_, example) in zip(conversations, got[sid]):
            want = _merged(conv)
            assert len(example["messages"]) == len(want), sid
            for i, (g, w) in enumerate(zip(example["messages"], want)):
                assert _norm(g) == w, f"{sid} message {i}"


def _merged(call_ids: list[str]) -> list[dict]:
    """A conversation of calls: the first call's example, then each next call's new messages;
    each call's own output stands where the next call's history holds its text only."""
    conversation = [_norm(m) for m in CALLS[call_ids[0]]["messages"]]
    for cid in call_ids[1:]:
        messages = [_norm(m) for m in CALLS[cid]["messages"]]
        conversation.extend(messages[len(conversation):])
    return conversation


def test_sessions_mode_splits_at_the_invalid_turn_and_reports_it(db, tmp_path):
    summary, lines = _run(db, tmp_path, "--mode", "sessions", "--where", "shape=invalid-turn")
    bad = EXPECTED["invalid_turn"]
    assert summary["examples"]["written"] == 2 == len(lines)
    assert summary["examples"]["split_conversations"] == 1
    assert summary["examples"]["invalid_examples"] == [
        {"session_id": bad["session"], "call_id": bad["call_id"], "reason": bad["reason"]}]
    assert any("cut 1 conversation(s) at an invalid turn" in n for n in summary["notices"])


def test_unrestorable_tool_result_gets_a_clear_reason(tmp_path):
    """A tool result whose call no record of the session holds: left out, with that reason."""
    from helpers.filterdb import call, make_db, text

    inputs = [text("user", "hi"), text("assistant", "calling"), text("tool", "result", tool_call_id="call_zz")]
    db = make_db(tmp_path / "t.db", [{"id": "s1", "calls": [call(inputs, "done")]}])
    result = invoke("--json", "filter", "--db", str(db), "-o", str(tmp_path / "o.jsonl"), "--dry-run")
    summary = json.loads(result.stdout)
    assert summary["examples"]["written"] == 0
    reason = summary["examples"]["invalid_examples"][0]["reason"]
    assert reason == "tool result whose tool call no earlier call record of the session holds"
