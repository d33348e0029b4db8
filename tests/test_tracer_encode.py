"""The tracer's call_records JSON (`synth_cli.tracing.encode`) is byte for byte what `to_dict` + orjson gives.

The fast path hands message lists to orjson as objects; these tests compare its text with the
unchanged path's on the published fixtures and on records built to trip every rule it relies on
(subclasses, reordered or foreign attributes, non-empty `extra`, datetimes, records hidden in
metadata, tuples, look-alike values such as 1 / 1.0 / True, "extra" as a user key), and check
that the fast path is really taken for plain records (so the comparison is not vacuous).
"""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from helpers.llm_fixtures import build, fixture_names, load
from synth_cli import _json
from synth_cli.tracing import encode
from synth_cli.tracing.models import LLMCallRecord, LLMContentPart, LLMMessage, LLMUsage, ToolCallSpec


def _reference(records):
    """What the tracer wrote before the fast path: each record's to_dict, serialised as one array."""
    dicts = [r.to_dict() if isinstance(r, LLMCallRecord) else LLMCallRecord.from_dict(r).to_dict() for r in records]
    try:
        return _json.dumps(dicts)
    except TypeError:
        return json.dumps(dicts, ensure_ascii=False, separators=(",", ":"), default=str)


def _fallback(dicts):
    try:
        return _json.dumps(dicts)
    except TypeError:
        return json.dumps(dicts, ensure_ascii=False, separators=(",", ":"), default=str)


def _text(text, **kw):
    return LLMMessage(role="user", parts=[LLMContentPart(type="text", text=text)], **kw)


def _record(messages, **kw):
    return LLMCallRecord(call_id="c", model_name="m", started_at=datetime(2025, 1, 2, 3, 4, 5, 6),
                         input_messages=list(messages), output_messages=[_text("out")], **kw)


def _odd_messages():
    class Str(str):
        pass

    class Sub(LLMMessage):
        pass

    class SubPart(LLMContentPart):
        pass

    reordered = _text("reordered")
    del reordered.name
    reordered.name = None
    foreign = _text("foreign")
    foreign.note = "not a field"
    part_reordered = _text("part reordered")
    del part_reordered.parts[0].text
    part_reordered.parts[0].text = "x"
    no_extra = _text("no extra")
    del no_extra.parts[0].extra
    return {
        "plain": _text("plain"),
        "int width": LLMMessage(parts=[LLMContentPart(text="same", width=1)]),
        "bool width": LLMMessage(parts=[LLMContentPart(text="same", width=True)]),
        "float width": LLMMessage(parts=[LLMContentPart(text="same", width=1.0)]),
        "metadata": _text("m", metadata={"k": 1, "extra": {}}),
        "metadata record": _text("m", metadata={"u": LLMUsage(input_tokens=1)}),
        "metadata part": _text("m", metadata={"p": LLMContentPart(text="hidden")}),
        "metadata datetime": _text("m", metadata={"at": datetime(2025, 1, 1)}),
        "metadata set": _text("m", metadata={"s": {1}}),
        "message extra": _text("e", extra={"tool_calls": [{"id": "t1"}]}),
        "message extra {}": _text("e", extra={}),
        "part extra": LLMMessage(parts=[LLMContentPart(text="e", extra={"cache_control": {"type": "ephemeral"}})]),
        "part data dict": LLMMessage(parts=[LLMContentPart(type="image", data={"detail": "low", "extra": {}})]),
        "part data datetime": LLMMessage(parts=[LLMContentPart(data=datetime(2025, 1, 1))]),
        "part data record": LLMMessage(parts=[LLMContentPart(data=ToolCallSpec(name="f"))]),
        "part data list": LLMMessage(parts=[LLMContentPart(data=[LLMUsage(extra={"x": 1}), 2])]),
        "part text datetime": LLMMessage(parts=[LLMContentPart(text=datetime(2025, 1, 1))]),
        "role record": LLMMessage(role=LLMUsage(), parts=[]),
        "role str subclass": LLMMessage(role=Str("user"), parts=[LLMContentPart(text="s")]),
        "parts tuple": LLMMessage(parts=(LLMContentPart(text="t"),)),
        "parts dicts": LLMMessage(parts=[{"type": "text", "text": "d", "extra": {}}]),
        "parts empty": LLMMessage(parts=[]),
        "part subclass": LLMMessage(parts=[SubPart(text="sub"), LLMContentPart(text="plain")]),
        "part is a message": LLMMessage(parts=[_text("nested")]),
        "part in a part": LLMMessage(parts=[LLMContentPart(data=LLMContentPart(text="inner"))]),
        "message in metadata": _text("m", metadata={"quoted": _text("inner")}),
        "subclass": Sub(role="user", parts=[LLMContentPart(text="sub")]),
        "reordered": reordered,
        "foreign attribute": foreign,
        "part reordered": part_reordered,
        "part without extra": no_extra,
        "user value extra": _text("extra", name="extra"),
        "unicode": _text('é ü 你好 \n\t"q" \\ \x00 ,"extra":{}}'),
        "big int": LLMMessage(parts=[LLMContentPart(text="big", size_bytes=2**70)]),
    }


# encode_records without a cache, with a new one, and with one that already holds look-alikes
CACHES = ["none", "new", "warm"]


def _cache(kind):
    if kind == "none":
        return None
    cache = {}
    if kind == "warm":  # messages that share a (role, type, text) key with others, or look like them
        encode.encode_records([_record([_text("plain"), _text("same"), _text("m"), _text("e"), _text("s"),
                                        LLMMessage(role="assistant", parts=[LLMContentPart(text="plain")])])],
                              _fallback, cache)
        assert cache
    return cache


@pytest.mark.parametrize("cache", CACHES)
def test_published_fixtures_encode_as_before(cache):
    cache = _cache(cache)
    records = [build(load(name)) for name in fixture_names()]
    records += [build(load(name), streamed=True) for name in fixture_names() if "stream" in load(name)]
    assert records
    for record in records:
        assert encode.encode_records([record], _fallback, cache) == _reference([record]), record.call_id
    assert encode.encode_records(records, _fallback, cache) == _reference(records)


@pytest.mark.parametrize("cache", CACHES)
@pytest.mark.parametrize("name", sorted(_odd_messages()))
def test_odd_messages_encode_as_before(name, cache):
    cache = _cache(cache)
    message = _odd_messages()[name]
    plain = _text("plain")
    for record in (_record([plain, message, plain]),
                   LLMCallRecord(call_id="c", input_messages=[message], outputs=[message])):
        assert encode.encode_records([record], _fallback, cache) == _reference([record])
    # several records and a dict record in one event
    records = [_record([message]), _record([plain]).to_dict(), _record([plain, message])]
    assert encode.encode_records(records, _fallback, cache) == _reference(records)
    # and again, now that the cache may hold this message
    assert encode.encode_records(records, _fallback, cache) == _reference(records)


def test_the_cache_writes_plain_messages_without_converting_them(monkeypatch):
    """A session's calls resend its conversation: the second call writes the repeated messages from the cache."""
    cache = {}
    history = [_text(f"turn {i}") for i in range(4)]
    first = _record(history)
    assert encode.encode_records([first], _fallback, cache) == _reference([first])
    assert len(cache) == 5  # four turns and the output
    converted = []
    original = encode._messages_json
    monkeypatch.setattr(encode, "_messages_json", lambda messages: converted.append(messages) or original(messages))
    tool_reply = LLMMessage(role="assistant", parts=[LLMContentPart(text="x")], extra={"tool_calls": [{"id": "t"}]})
    second = _record([_text(f"turn {i}") for i in range(4)] + [tool_reply, _text("turn 4")])
    assert encode.encode_records([second], _fallback, cache) == _reference([second])
    assert converted == [[tool_reply]]  # only the message that is not plain text
    assert len(cache) == 6


def test_the_cache_is_keyed_by_content_not_identity():
    cache = {}
    message = _text("before")
    record = _record([message])
    first = encode.encode_records([record], _fallback, cache)
    message.parts[0].text = "after"
    second = encode.encode_records([record], _fallback, cache)
    message.role = "system"
    third = encode.encode_records([record], _fallback, cache)
    message.parts[0].width = 0
    fourth = encode.encode_records([record], _fallback, cache)
    message.parts[0].width = None
    message.metadata["k"] = 1
    fifth = encode.encode_records([record], _fallback, cache)
    assert len({first, second, third, fourth, fifth}) == 5
    assert fifth == _reference([record]) and '"after"' in second and '"system"' in third and '"width":0' in fourth


@pytest.mark.parametrize("odd", ["str role", "str text", "str type", "width False", "name", "tool call id",
                                 "metadata None", "two parts", "equals None", "raises on ==", "enum None",
                                 "null fragment", "width 0", "data {}"])
def test_look_alikes_of_a_cached_message_are_written_as_they_are(odd):
    import enum

    import orjson

    class Str(str):
        def __eq__(self, other):
            return True

        __hash__ = str.__hash__

    class EqualsNone:  # claims to be None when compared
        def __eq__(self, other):
            return other is None or NotImplemented

        __hash__ = None

    class Ambiguous:  # like a numpy array: no truth value, no plain ==
        def __eq__(self, other):
            raise ValueError("ambiguous")

        def __bool__(self):
            raise ValueError("ambiguous")

    class Nothing(enum.Enum):
        NONE = None

    cache = _cache("warm")
    part = LLMContentPart(text="plain")
    message = LLMMessage(role="user", parts=[part])
    if odd == "str role":
        message.role = Str("user")
    elif odd == "str text":
        part.text = Str("plain")
    elif odd == "str type":
        part.type = Str("text")
    elif odd == "width False":
        part.width = False
    elif odd == "name":
        message.name = "plain"
    elif odd == "tool call id":
        message.tool_call_id = "t"
    elif odd == "metadata None":
        message.metadata = None
    elif odd == "equals None":
        part.data = EqualsNone()
    elif odd == "raises on ==":
        part.mime_type = Ambiguous()
    elif odd == "enum None":
        part.width = Nothing.NONE
    elif odd == "null fragment":
        part.language = orjson.Fragment(b"null")
    elif odd == "width 0":
        part.width = 0
    elif odd == "data {}":
        part.data = {}
    else:
        message.parts.append(LLMContentPart(text="plain"))
    record = _record([_text("plain"), message])
    assert encode.encode_records([record], _fallback, cache) == _reference([record])


def test_a_full_cache_starts_again(monkeypatch):
    monkeypatch.setattr(encode, "CACHE_ENTRIES", 3)
    cache = {}
    for n in range(5):
        record = _record([_text(f"m{n}-{i}") for i in range(n + 2)])
        assert encode.encode_records([record], _fallback, cache) == _reference([record])
        assert len(cache) <= 3


def test_odd_records_encode_as_before():
    class SubRecord(LLMCallRecord):
        pass

    odd = LLMCallRecord.from_dict({"call_id": "odd", "model_name": "m", "unknown_top": 1, "input_messages": [
        {"role": "user", "parts": [{"type": "text", "text": "hi", "unknown_part": [1, 2]}], "x": None}]})
    odd.output_text = datetime(2025, 1, 2, 3, 4, 5)
    clobber = _record([_text("a")])
    clobber.extra = {"input_messages": "clobbered", "k": 1}
    foreign = _record([_text("a")])
    foreign.note = "not a field"
    tupled = _record([])
    tupled.input_messages = (_text("in a tuple"),)
    for record in (odd, clobber, foreign, tupled, SubRecord(call_id="sub", input_messages=[_text("s")]),
                   _record([_text("a")], metadata={"at": datetime(2025, 1, 1), "u": LLMUsage()}),
                   LLMCallRecord(call_id="empty")):
        assert encode.encode_records([record], _fallback) == _reference([record])


def test_plain_messages_take_the_fast_path(monkeypatch):
    """The comparison above is not vacuous: plain conversations are written by orjson directly."""
    taken = []
    original = encode._messages_fragment
    monkeypatch.setattr(encode, "_messages_fragment", lambda messages: taken.append(len(messages))
                        or original(messages))
    record = _record([_text(f"turn {i}") for i in range(5)])
    assert encode.encode_records([record], _fallback) == _reference([record])
    assert taken == [5, 1]


def test_a_mutated_message_is_written_as_it_is_now():
    message = _text("before")
    record = _record([message])
    first = encode.encode_records([record], _fallback)
    message.parts[0].text = "after"
    message.parts.append(LLMContentPart(text="more"))
    second = encode.encode_records([record], _fallback)
    assert first != second and second == _reference([record]) and '"after"' in second


def test_not_a_record_is_refused():
    with pytest.raises(TypeError, match="expected LLMCallRecord"):
        encode.encode_records(["nope"], _fallback)


@pytest.mark.parametrize("usage", [None, LLMUsage(), LLMUsage(input_tokens=0, output_tokens=0, cost_usd=0.0),
                                   LLMUsage(input_tokens=7, output_tokens=3, total_tokens=None, cost_usd=0.25)])
@pytest.mark.parametrize("names", [("", None, "", None), ("m", "openai", "span", "trace"), (None, "", None, "")])
def test_one_record_event_derives_what_the_general_rule_gives(usage, names):
    """`LMCAISEvent.from_records` spells out the one-record case; it must agree with the sums and firsts."""
    from synth_cli.tracing.events import LMCAISEvent

    model, provider, span, trace = names
    record = LLMCallRecord(call_id="c", model_name=model, provider=provider, span_id=span, trace_id=trace,
                           usage=usage, latency_ms=None if usage is None else 12)
    assert LMCAISEvent.from_records(record).__dict__ | {"time_record": None, "event_time": None} == \
        LMCAISEvent(call_records=[record], **LMCAISEvent._derive([record])).__dict__ | {
            "time_record": None, "event_time": None}
    event = LMCAISEvent.from_records([record], cost_usd=None, latency_ms=99, metadata={"k": 1})
    assert event.latency_ms == 99 and event.metadata == {"k": 1}
    assert event.cost_usd == LMCAISEvent._derive([record])["cost_usd"]


def test_generated_to_dict_is_the_generic_one_for_odd_instances():
    """encode's fast path writes fields in definition order: to_dict must too, whatever the instance's attributes."""
    from synth_cli.tracing.models import _Record

    for name, message in _odd_messages().items():
        for obj in [message, *(p for p in getattr(message, "parts", ()) if isinstance(p, _Record))]:
            try:
                generic = _Record.to_dict(obj)
            except AttributeError:
                continue
            assert list(obj.to_dict().items()) == list(generic.items()), name
    record = _record([_text("a")])
    del record.model_name
    record.model_name = "re-set last"
    assert list(record.to_dict()) == list(_Record.to_dict(record))
    assert encode.encode_records([record], _fallback) == _reference([record])


def test_the_record_dict_keeping_messages_is_to_dict_but_the_message_lists():
    from synth_cli.tracing.models import record_dict_keeping_messages

    records = [build(load(name)) for name in fixture_names()]
    records.append(_record([_text("a"), _text("b")], metadata={"k": [1]}, usage=LLMUsage(input_tokens=1),
                           output_tool_calls=[ToolCallSpec(name="f", arguments={"x": 1})]))
    empty = _record([])
    empty.output_messages = []
    records.append(empty)
    for record in records:
        kept = record_dict_keeping_messages(record)
        full = record.to_dict()
        assert list(kept) == list(full), record.call_id
        for key, value in full.items():
            if key in ("input_messages", "output_messages", "outputs") and getattr(record, key):
                assert kept[key] is getattr(record, key)  # left as the record's own list
            else:
                assert kept[key] == value, key
    odd = _record([_text("a")])
    odd.call_id = datetime(2025, 1, 1)  # a datetime where a string is declared: the generic method decides
    missing = _record([_text("a")])
    del missing.extra
    sub = type("Sub", (LLMCallRecord,), {})(call_id="s", input_messages=[_text("a")])
    for record in (odd, missing, sub):
        assert record_dict_keeping_messages(record) is None
        assert encode.encode_records([record], _fallback, {}) == _reference([record])


@pytest.mark.parametrize("usage", [None, LLMUsage(), LLMUsage(input_tokens=7, output_tokens=3, cost_usd=0.25)])
@pytest.mark.parametrize("explicit", [{}, {"cost_usd": 0.5, "span_id": "s", "trace_id": "t"},
                                      {"cost_usd": 0.0, "span_id": "", "trace_id": None, "metadata": {"k": 1},
                                       "event_metadata": [1], "system_state_before": {"a": 1},
                                       "system_state_after": {"b": 2}, "message_time": 3}])
def test_for_call_is_from_records_of_one_record(usage, explicit):
    """The tracer's record_llm_call builds its event with `for_call`: the same event as from_records."""
    from synth_cli.tracing.events import LMCAISEvent

    for names in (("m", "openai", "span", "trace"), ("", None, "", None)):
        model, provider, span, trace = names
        record = LLMCallRecord(call_id="c", model_name=model, provider=provider, span_id=span, trace_id=trace,
                               usage=usage, latency_ms=12)
        kwargs = {"system_instance_id": "agent", "event_time": 1.5, **explicit}
        assert LMCAISEvent.for_call(record, **kwargs).__dict__ == LMCAISEvent.from_records([record], **kwargs).__dict__


def test_record_llm_call_of_one_record_is_the_event_of_from_records(tmp_path):
    from synth_cli.tracing.events import LMCAISEvent
    from synth_cli.tracing.tracer import SessionTracer

    record = LLMCallRecord(call_id="c", model_name="m", usage=LLMUsage(input_tokens=1, cost_usd=0.1), latency_ms=5)
    with SessionTracer(tmp_path / "t.db") as tracer, tracer.session():
        event = tracer.record_llm_call(record, system_instance_id="a", span_id="sp", event_time=2.0,
                                       metadata={"k": 1})
    expected = LMCAISEvent.from_records([record], system_instance_id="a", span_id="sp", event_time=2.0,
                                        metadata={"k": 1})
    assert event.__class__ is LMCAISEvent and event.__dict__ == expected.__dict__


@pytest.mark.parametrize("text", ["", "plain", 'é ü 你好 \n\t"q" \\ \x00 \x1f \u2028 ,"extra":{}}', "😀" * 3, "x" * 5000])
@pytest.mark.parametrize("role", ["user", "", 'a"b\\'])
def test_a_cached_message_is_the_json_of_its_dict(role, text):
    """The cache writes a plain message's JSON around its two strings: the bytes orjson writes for its dict."""
    import orjson

    cache = {}
    chunks = encode._cached_fragment([LLMMessage(role=role, parts=[LLMContentPart(text=text)])], cache)
    assert orjson.dumps(chunks) == b"[" + orjson.dumps(encode._plain_message(role, text)) + b"]"
    message = LLMMessage(role=role, parts=[LLMContentPart(text=text)])
    assert orjson.dumps(chunks) == _json.dumps([message.to_dict()]).encode()
    assert encode._cached_fragment([message], cache) == chunks  # the second time, from the cache


@pytest.mark.parametrize("odd", ["message extra None", "part extra None", "message extra dict subclass",
                                 "part extra dict subclass", "metadata dict subclass", "parts list subclass",
                                 "type not interned", "type 'Text'", "type None", "text None", "role None",
                                 "name ''", "size_bytes 0", "deleted type", "deleted language"])
def test_the_cache_takes_only_exact_plain_text_messages(odd):
    """Rule 4's tests are identities and exact types: a value that is falsy, equal or a subclass is not plain."""
    class Dict(dict):
        pass

    class List(list):
        pass

    cache = _cache("warm")
    part = LLMContentPart(text="plain")
    message = LLMMessage(role="user", parts=[part])
    if odd == "message extra None":
        message.extra = None
    elif odd == "part extra None":
        part.extra = None
    elif odd == "message extra dict subclass":
        message.extra = Dict()
    elif odd == "part extra dict subclass":
        part.extra = Dict()
    elif odd == "metadata dict subclass":
        message.metadata = Dict()
    elif odd == "parts list subclass":
        message.parts = List([part])
    elif odd == "type not interned":
        part.type = "".join(["te", "xt"])  # equal to "text", another object: still plain
    elif odd == "type 'Text'":
        part.type = "Text"
    elif odd == "type None":
        part.type = None
    elif odd == "text None":
        part.text = None
    elif odd == "role None":
        message.role = None
    elif odd == "name ''":
        message.name = ""
    elif odd == "size_bytes 0":
        part.size_bytes = 0
    elif odd == "deleted type":
        del part.type  # the class default, "text", is what getattr and to_dict read
    else:
        del part.language
    record = _record([_text("plain"), message])
    assert encode.encode_records([record], _fallback, cache) == _reference([record])
    assert encode.encode_records([record], _fallback, cache) == _reference([record])  # and with what it cached


def test_a_text_cached_under_another_role_is_written_with_its_own():
    cache = {}
    for roles in (["user", "assistant", "user"], ["system", "system", "assistant"]):
        record = _record([LLMMessage(role=role, parts=[LLMContentPart(text="same")]) for role in roles])
        assert encode.encode_records([record], _fallback, cache) == _reference([record])
    assert cache["same"][0] == "assistant"  # the last written replaced the others


def test_generated_to_dict_is_the_generic_one_for_odd_record_fields():
    """The generated to_dict converts declared records and datetimes itself: only exact ones, as the generic would."""
    from datetime import timedelta, timezone

    from synth_cli.tracing.models import LLMRequestParams, _Record

    class DT(datetime):
        def __str__(self):
            return "a datetime of its own"

    class Params(LLMRequestParams):
        pass

    class Lying:  # claims to be a datetime
        __class__ = datetime

    values = {
        "started_at": [datetime(2025, 1, 2, 3, 4, 5), datetime(2025, 1, 2, 3, 4, 5, 6),
                       datetime(2025, 1, 2, tzinfo=timezone(timedelta(hours=2))), datetime(5, 1, 2),
                       DT(2025, 1, 2), None, "2025-01-02", 1.5, Lying()],
        "request_params": [LLMRequestParams(temperature=0.5, raw_params={"tools": [1]}), Params(top_p=1.0), None,
                           {"temperature": 1}, LLMUsage(input_tokens=1)],
        "usage": [LLMUsage(input_tokens=1), None, LLMRequestParams(), {"input_tokens": 1}],
        "tool_choice": [None, "auto", {"type": "function"}, ToolCallSpec(name="f"), datetime(2025, 1, 1)],
    }
    for name, options in values.items():
        for value in options:
            record = _record([_text("a")])
            setattr(record, name, value)
            assert list(record.to_dict().items()) == list(_Record.to_dict(record).items()), (name, value)
            kept = __import__("synth_cli.tracing.models", fromlist=["x"]).record_dict_keeping_messages(record)
            assert [k for k in kept] == list(record.to_dict()), (name, value)
            assert kept[name] == record.to_dict()[name], (name, value)
            if name != "started_at" or not isinstance(value, Lying):
                assert encode.encode_records([record], _fallback, {}) == _reference([record]), (name, value)


def test_for_call_builds_the_event_the_class_builds():
    """for_call sets an LMCAISEvent's attributes itself: the same ones, in the same order, as the dataclass."""
    import time

    from synth_cli.tracing import events
    from synth_cli.tracing.events import LMCAISEvent

    assert events._PLAIN_INIT  # the fast path is taken (the comparisons below are not vacuous)
    record = LLMCallRecord(call_id="c", model_name="m", provider="p", usage=LLMUsage(input_tokens=2, cost_usd=0.5))
    for kwargs in ({}, {"metadata": None, "event_time": 3, "message_time": 0}, {"metadata": {"k": 1}, "event_time": 1.5},
                   {"span_id": "", "trace_id": "t", "cost_usd": 0, "system_state_after": {"a": 1}}):
        before = time.time()
        event = LMCAISEvent.for_call(record, **kwargs)
        after = time.time()
        expected = LMCAISEvent.from_records([record], **{"event_time": event.event_time, **kwargs})
        assert list(event.__dict__) == list(expected.__dict__)
        assert event.__dict__ == expected.__dict__ and event.time_record == expected.time_record
        assert type(event.event_time) is float and type(event.time_record.event_time) is float
        assert "event_time" in kwargs or before <= event.event_time <= after
        assert event.call_records == [record] and event.metadata is not None

    class Sub(LMCAISEvent):
        def __post_init__(self):
            super().__post_init__()
            self.seen = True

    assert Sub.for_call(record).seen and type(Sub.for_call(record)) is Sub
