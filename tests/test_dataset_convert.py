"""Hand-written unit tests: call records → OpenAI chat messages (synth_cli.dataset.convert)."""

from __future__ import annotations

import json

from helpers.filterdb import TOOL, call, conversation_calls, text
from synth_cli.dataset import convert as cv
from synth_cli.dataset.validate import check_example
from synth_cli.tracing.models import LLMCallRecord


def example(record: dict, skipped: dict | None = None) -> dict:
    ex = cv.example_of(cv.convert_call(record, {} if skipped is None else skipped))
    assert ex is not None
    return ex


# --------------------------------------------------------------------------- content and parts


def test_one_text_part_is_a_string():
    ex = example(call([text("user", "hi")], "hello"))
    assert ex == {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_several_text_parts_stay_a_list_never_joined():
    msg = {"role": "user", "parts": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]}
    ex = example(call([msg]))
    assert ex["messages"][0]["content"] == [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]


def test_images_become_image_url_parts():
    msg = {"role": "user", "parts": [
        {"type": "text", "text": "compare"},
        {"type": "image", "uri": "https://example.com/a.png", "data": {"detail": "low"}},
        {"type": "image", "base64_data": "AAAA", "mime_type": "image/jpeg"},
    ]}
    ex = example(call([msg]))
    assert ex["messages"][0]["content"] == [
        {"type": "text", "text": "compare"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,AAAA"}},
    ]
    assert check_example(ex) == []


def test_parts_without_a_representation_are_counted_by_kind():
    skipped: dict = {}
    user = {"role": "user", "parts": [{"type": "text", "text": "listen"},
                                      {"type": "audio", "base64_data": "UklG", "mime_type": "audio/wav"},
                                      {"type": "image"}]}
    assistant = {"role": "assistant", "parts": [{"type": "thinking", "text": "hmm"}, {"type": "text", "text": "ok"},
                                                {"type": "image", "uri": "https://x/y.png"}]}
    ex = example(call([user, assistant, text("user", "again")]), skipped)
    assert ex["messages"][0] == {"role": "user", "content": "listen"}  # one text part left: a string
    assert ex["messages"][1] == {"role": "assistant", "content": "ok"}
    assert skipped == {"audio": 1, "image_without_data": 1, "thinking": 1, "image_in_assistant_message": 1}


def test_tool_role_keeps_tool_call_id_and_name_is_kept():
    history = [
        text("system", "sys", name="rules"),
        text("user", "weather?", name="alice"),
        {"role": "assistant", "parts": [], "tool_calls": [
            {"name": "get_weather", "arguments_json": '{"city":"Paris"}', "call_id": "call_1"}]},
        {"role": "tool", "parts": [{"type": "text", "text": "15C"}], "tool_call_id": "call_1", "name": "get_weather"},
    ]
    ex = example(call(history, "It is 15C."))
    assert ex["messages"] == [
        {"role": "system", "name": "rules", "content": "sys"},
        {"role": "user", "name": "alice", "content": "weather?"},
        {"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function",
                                              "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}}]},
        {"role": "tool", "name": "get_weather", "tool_call_id": "call_1", "content": "15C"},
        {"role": "assistant", "content": "It is 15C."},
    ]
    assert check_example(ex) == []


def test_missing_call_ids_are_synthesised_deterministically():
    history = [text("user", "go"), {"role": "assistant", "parts": [], "tool_calls": [
        {"name": "a", "arguments_json": "{}"}, {"name": "b", "arguments": {"x": 1}}]},
               {"role": "tool", "parts": [{"type": "text", "text": "done"}], "tool_call_id": "call_synth_1_0"}]
    record = call(history, None, tool_calls=[{"name": "c", "arguments_json": '{"y":2}'}])
    ex = example(record)
    assistant = ex["messages"][1]
    assert [tc["id"] for tc in assistant["tool_calls"]] == ["call_synth_1_0", "call_synth_1_1"]
    assert assistant["tool_calls"][1]["function"]["arguments"] == '{"x":1}'
    assert ex["messages"][-1] == {"role": "assistant", "tool_calls": [
        {"id": "call_synth_3_0", "type": "function", "function": {"name": "c", "arguments": '{"y":2}'}}]}
    assert example(record) == ex  # same record, same bytes
    assert check_example(ex) == []


def test_parallel_tool_calls_and_tools_are_kept():
    record = call([text("user", "two cities")], None, tools=[TOOL], parallel=True, tool_calls=[
        {"name": "act", "arguments_json": '{"city":"Paris"}', "call_id": "p"},
        {"name": "act", "arguments_json": '{"city":"Rome"}', "call_id": "r"}])
    ex = example(record)
    assert ex["tools"] == [TOOL]
    assert ex["parallel_tool_calls"] is True
    assert [tc["id"] for tc in ex["messages"][-1]["tool_calls"]] == ["p", "r"]
    assert "content" not in ex["messages"][-1]
    assert check_example(ex) == []
    # parallel_tool_calls false with two calls is what OpenAI rejects
    record["request_params"]["raw_params"]["parallel_tool_calls"] = False
    assert "several tool_calls in one message with parallel_tool_calls false" in check_example(example(record))


def test_tools_from_tool_config_and_flat_specs():
    record = call([text("user", "x")])
    record["request_params"] = {"raw_params": {}, "tool_config": {
        "tools": [{"name": "act", "description": "Act", "parameters": {"type": "object"}}],
        "parallel_tool_calls": False}}
    ex = example(record)
    assert ex["tools"] == [{"type": "function", "function": {"name": "act", "description": "Act",
                                                             "parameters": {"type": "object"}}}]
    assert ex["parallel_tool_calls"] is False


def test_text_and_tool_calls_in_the_output():
    record = call([text("user", "x")], "I will act.", tool_calls=[{"name": "act", "arguments_json": "{}",
                                                                   "call_id": "k"}])
    assert example(record)["messages"][-1] == {
        "role": "assistant", "content": "I will act.",
        "tool_calls": [{"id": "k", "type": "function", "function": {"name": "act", "arguments": "{}"}}]}


def test_legacy_function_call():
    history = [text("user", "x"), {"role": "assistant", "parts": [], "tool_calls": [
        {"name": "f", "arguments_json": "{}", "metadata": {"legacy_function_call": True}}]}]
    ex = example(call(history))
    assert ex["messages"][1] == {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}
    assert check_example(ex) == []


def test_output_text_when_no_output_messages_and_empty_output():
    record = call([text("user", "x")], None)
    record["output_text"] = "from output_text"
    assert example(record)["messages"][-1] == {"role": "assistant", "content": "from output_text"}
    assert cv.example_of(cv.convert_call(call([text("user", "x")], None), {})) is None


def test_extra_choices_and_roles():
    skipped: dict = {}
    record = call([{"role": "developer", "parts": [{"type": "text", "text": "be brief"}]},
                   {"role": "critic", "parts": [{"type": "text", "text": "?"}]}, text("user", "x")])
    record["outputs"] = [text("assistant", "a"), text("assistant", "b")]
    ex = example(record, skipped)
    assert ex["messages"][0] == {"role": "system", "content": "be brief"}
    assert [m["role"] for m in ex["messages"]] == ["system", "user", "assistant"]
    assert skipped == {"role:critic": 1, "extra_choice": 1}


def test_dataclass_and_dict_give_the_same_example():
    record = call([text("user", "x")], "y", tools=[TOOL], tool_calls=[{"name": "act", "arguments_json": "{}"}])
    assert cv.convert_record(LLMCallRecord.from_dict(record)) == cv.convert_record(record)


# --------------------------------------------------------------------------- sessions mode


def merge(records: list[dict]) -> list[dict]:
    merger = cv.ConversationMerger()
    out = []
    for r in records:
        done = merger.add(cv.convert_call(r, {}))
        if done:
            out.append(done[0])
    done = merger.finish()
    if done:
        out.append(done[0])
    return out


def test_a_history_keeping_agent_gives_one_conversation_with_every_tool_call():
    records = conversation_calls(4, tools=[TOOL])
    (ex,) = merge(records)
    assert [m["role"] for m in ex["messages"]] == ["system"] + ["user", "assistant"] * 4
    # the history only had text; the merged conversation keeps what each call produced
    assert [bool(m.get("tool_calls")) for m in ex["messages"] if m["role"] == "assistant"] == [False, True, False, True]
    assert ex["tools"] == [TOOL]
    assert check_example(ex) == []


def test_the_chain_breaks_where_the_history_does_not_continue():
    a = conversation_calls(3)
    b = conversation_calls(2, prefix="other ")
    examples = merge(a + b)
    assert [len(e["messages"]) for e in examples] == [7, 5]


def test_tools_offered_on_some_turns_are_united_conflicts_break():
    records = conversation_calls(3)
    records[1]["request_params"]["raw_params"]["tools"] = [TOOL]
    (ex,) = merge(records)
    assert ex["tools"] == [TOOL]
    other = {"type": "function", "function": {"name": "act", "description": "different"}}
    records[2]["request_params"]["raw_params"]["tools"] = [other]
    assert len(merge(records)) == 2


def test_same_turn():
    out = {"role": "assistant", "content": "x", "tool_calls": [{"id": "1"}]}
    assert cv.same_turn({"role": "assistant", "content": "x"}, out)
    assert not cv.same_turn({"role": "assistant", "content": "y"}, out)
    assert not cv.same_turn({"role": "assistant", "content": "x", "tool_calls": [{"id": "2"}]}, out)
    assert cv.same_turn({"role": "assistant", "content": ""}, {"role": "assistant", "tool_calls": [{"id": "1"}]})
    assert not cv.same_turn({"role": "user", "content": "x"}, out)


def test_examples_serialise_as_compact_json():
    ex = example(call([text("user", "é")], "ü"))
    assert json.loads(json.dumps(ex)) == ex
