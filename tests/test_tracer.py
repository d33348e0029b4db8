"""`SessionTracer`: what it writes, where, in how many transactions, and what it refuses."""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from helpers.llm_fixtures import build, fixture_names, load
from helpers import FIXTURE_COUNTS, FIXTURE_DIR
from synth_cli.errors import TraceStoreError
from synth_cli.tracing.events import EnvironmentEvent, LMCAISEvent, RuntimeEvent, TimeRecord, usd_to_cents
from synth_cli.tracing.models import LLMCallRecord, LLMUsage, parse_call_records
from synth_cli.store.reader import TraceStore
from synth_cli.tracing.tracer import SessionTracer


def _rows(path, sql, params=()):
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def _record(model="gpt-4o-mini", provider="openai", tokens=(100, 20), cost=None, latency=250, **kw):
    return LLMCallRecord(call_id=kw.pop("call_id", "call-1"), model_name=model, provider=provider,
                         usage=LLMUsage(input_tokens=tokens[0], output_tokens=tokens[1],
                                        total_tokens=tokens[0] + tokens[1], cost_usd=cost),
                         latency_ms=latency, outcome="success", **kw)


def _play(tracer, steps=3, experiment_id=None, metadata=None, session_id=None):
    with tracer.session(session_id=session_id, metadata=metadata or {"env_name": "crafter"},
                        experiment_id=experiment_id) as sid:
        for step in range(steps):
            with tracer.timestep(f"step_{step}", turn_number=step):
                tracer.record_message(f"observation {step}", message_type="user")
                tracer.record_llm_call(_record(call_id=f"call-{step}", cost=0.0123), system_instance_id="agent")
                tracer.record_message(f"action {step}", message_type="assistant")
                tracer.record_event(RuntimeEvent(system_instance_id="runtime", actions=[step, 7]))
                tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=float(step % 2),
                                                     terminated=step == steps - 1,
                                                     system_state_after={"public_state": {"step": step}}))
    return sid


def test_brief_api_writes_like_the_published_tracer(tmp_path):
    path = tmp_path / "traces.db"
    tracer = SessionTracer(str(path))
    assert tracer.create_experiment("exp_1", "crafter_run_0", description="batch 0") == "exp_1"
    sid = _play(tracer, experiment_id="exp_1", metadata={"env_name": "crafter", "seed": 0})
    tracer.close()

    [session] = _rows(path, "SELECT * FROM session_traces")
    assert session["session_id"] == sid and session["experiment_id"] == "exp_1"
    assert (session["num_timesteps"], session["num_events"], session["num_messages"]) == (3, 9, 6)
    assert session["metadata"] == '{"env_name":"crafter","seed":0}'
    assert datetime.strptime(session["created_at"], "%Y-%m-%d %H:%M:%S.%f")

    steps = _rows(path, "SELECT * FROM session_timesteps ORDER BY id")
    assert [(s["step_id"], s["step_index"], s["turn_number"], s["num_events"], s["num_messages"]) for s in steps] == \
        [("step_0", 0, 0, 3, 2), ("step_1", 1, 1, 3, 2), ("step_2", 2, 2, 3, 2)]
    assert all(s["started_at"] <= s["completed_at"] for s in steps)
    assert all(s["step_metadata"] == "{}" for s in steps)

    events = _rows(path, "SELECT * FROM events ORDER BY id")
    assert [e["event_type"] for e in events] == ["cais", "runtime", "environment"] * 3
    assert [e["timestep_id"] for e in events] == [s["id"] for s in steps for _ in range(3)]
    assert [e["message_time"] for e in events] == [0, 0, 0, 1, 1, 1, 2, 2, 2]   # the turn, as in the fixture
    cais, runtime, env = events[3:6]
    assert (cais["model_name"], cais["provider"], cais["input_tokens"], cais["output_tokens"],
            cais["total_tokens"], cais["cost_usd"], cais["latency_ms"]) == ("gpt-4o-mini", "openai", 100, 20, 120, 1,
                                                                             250)
    assert cais["system_instance_id"] == "agent" and cais["metadata"] == '{"step_id":"step_1"}'
    assert cais["reward"] is None and cais["terminated"] is None
    assert runtime["metadata"] == '{"step_id":"step_1","actions":[1,7]}'
    assert (env["reward"], env["terminated"], env["truncated"]) == (1.0, 0, 0)
    assert env["system_state_after"] == '{"public_state":{"step":1}}'
    assert events[-1]["terminated"] == 1
    assert all(isinstance(e["event_time"], float) for e in events)
    assert all(datetime.strptime(e["created_at"], "%Y-%m-%d %H:%M:%S") for e in events)

    messages = _rows(path, "SELECT * FROM messages ORDER BY id")
    assert [(m["message_type"], m["content"], m["metadata"]) for m in messages[:2]] == [
        ("user", "observation 0", '{"step_id":"step_0"}'), ("assistant", "action 0", '{"step_id":"step_0"}')]
    assert [m["timestep_id"] for m in messages] == [s["id"] for s in steps for _ in range(2)]
    assert all(m["message_time"] is None for m in messages)

    [exp] = _rows(path, "SELECT * FROM experiments")
    assert (exp["name"], exp["description"], exp["configuration"]) == ("crafter_run_0", "batch 0", "{}")


def test_store_and_cli_read_what_the_tracer_wrote(tmp_path):
    path = tmp_path / "traces.db"
    with SessionTracer(path) as tracer:
        tracer.create_experiment("exp_1", "run")
        for _ in range(2):
            _play(tracer, experiment_id="exp_1")
    with TraceStore.open(path) as store:
        assert store.schema.has_call_records
        assert store.scalar("SELECT count(*) FROM session_traces") == 2
        assert store.scalar("SELECT count(*) FROM events WHERE event_type = 'cais'") == 6
        rows = list(store.scan("SELECT id, call_records FROM events WHERE event_type = 'cais'", key="id"))
        assert [parse_call_records(r["call_records"])[0].call_id for r in rows] == ["call-0", "call-1", "call-2"] * 2


@pytest.mark.parametrize("name", fixture_names())
def test_round_trip_record_tracer_db_store(tmp_path, name):
    """record -> tracer -> DB -> TraceStore -> record equals the original."""
    fx = load(name)
    originals = [build(fx)]
    if "stream" in fx and fx["provider"] == "openai":
        from synth_cli.tracing.record import record_from_openai_chat_stream

        originals.append(record_from_openai_chat_stream(fx["request"], fx["stream"], keep_chunks=True))
    elif "stream" in fx:
        originals.append(build(fx, streamed=True))
    path = tmp_path / "rt.db"
    with SessionTracer(path) as tracer:
        with tracer.session():
            for record in originals:
                tracer.record_llm_call(record, system_instance_id="agent")
    with TraceStore.open(path) as store:
        stored = [parse_call_records(r["call_records"]) for r in
                  store.rows("SELECT call_records FROM events ORDER BY id")]
        columns = store.dicts("SELECT model_name, provider, input_tokens, output_tokens, latency_ms FROM events "
                              "ORDER BY id")
    assert [records[0] for records in stored] == originals
    assert all(len(records) == 1 for records in stored)
    for record, cols in zip(originals, columns):
        usage = record.usage
        assert cols == {"model_name": record.model_name, "provider": record.provider,
                        "input_tokens": usage.input_tokens if usage else None,
                        "output_tokens": usage.output_tokens if usage else None, "latency_ms": record.latency_ms}


def test_cost_is_stored_in_cents_as_the_published_package_does(tmp_path):
    assert usd_to_cents(None) is None
    assert usd_to_cents(0.0000426) == 0          # fixture-sized costs read back as 0 cents
    assert usd_to_cents(0.29) == 29              # int(0.29 * 100) would give 28
    assert usd_to_cents(1.239) == 123            # truncated, as int(cost * 100)
    assert usd_to_cents(float("nan")) is None
    path = tmp_path / "cost.db"
    with SessionTracer(path) as tracer:
        with tracer.session():
            tracer.record_llm_call([_record(cost=0.25, call_id="a"), _record(cost=0.04, call_id="b", latency=50)])
            tracer.record_llm_call(_record(cost=0.0001), cost_usd=3.5)        # explicit cost wins
            tracer.record_llm_call(_record(cost=None))
    rows = _rows(path, "SELECT cost_usd, input_tokens, total_tokens, latency_ms, call_records FROM events ORDER BY id")
    assert [r["cost_usd"] for r in rows] == [29, 350, None]
    assert (rows[0]["input_tokens"], rows[0]["total_tokens"], rows[0]["latency_ms"]) == (200, 240, 300)
    assert len(parse_call_records(rows[0]["call_records"])) == 2
    assert parse_call_records(rows[1]["call_records"])[0].usage.cost_usd == 0.0001   # exact cost kept in the record
    [view] = _rows(path, "SELECT total_cost_usd FROM model_usage_stats")
    assert view["total_cost_usd"] == pytest.approx(3.79)


def test_lmcais_event_recorded_directly(tmp_path):
    path = tmp_path / "ev.db"
    with SessionTracer(path) as tracer:
        with tracer.session():
            event = LMCAISEvent(system_instance_id="llm", model_name="m", provider="p", input_tokens=5,
                                output_tokens=6, total_tokens=11, cost_usd=0.5, span_id="s", trace_id="t",
                                time_record=TimeRecord(event_time=1700000000.5, message_time=9),
                                call_records=[_record()], metadata={"k": "v"}, event_metadata=[{"x": 1}])
            tracer.record_event(event)
    [row] = _rows(path, "SELECT * FROM events")
    assert (row["model_name"], row["cost_usd"], row["span_id"], row["trace_id"], row["event_time"],
            row["message_time"], row["metadata"], row["event_metadata"]) == \
        ("m", 50, "s", "t", 1700000000.5, 9, '{"k":"v"}', '[{"x":1}]')
    assert row["timestep_id"] is None


def test_one_transaction_per_session(tmp_path):
    path = tmp_path / "tx.db"
    tracer = SessionTracer(path)
    tracer.start_session(session_id="s1")
    tracer.start_timestep("step_0")
    tracer.record_message("hi", "user")
    tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1))
    tracer.end_timestep()
    # nothing is visible to another connection until the session ends
    assert _rows(path, "SELECT count(*) AS n FROM session_traces")[0]["n"] == 0
    assert _rows(path, "SELECT count(*) AS n FROM events")[0]["n"] == 0
    assert tracer.end_session() == "s1"
    assert _rows(path, "SELECT count(*) AS n FROM events")[0]["n"] == 1
    assert _rows(path, "SELECT count(*) AS n FROM messages")[0]["n"] == 1
    tracer.close()


def test_a_failing_block_keeps_what_was_recorded(tmp_path):
    path = tmp_path / "crash.db"
    with SessionTracer(path) as tracer:
        with pytest.raises(ZeroDivisionError):
            with tracer.session(session_id="crashed"):
                with tracer.timestep("step_0"):
                    tracer.record_message("before the crash", "user")
                    raise ZeroDivisionError("the agent's step crashed")
        assert tracer.current_session_id is None
    [row] = _rows(path, "SELECT session_id, num_messages FROM session_traces")
    assert row == {"session_id": "crashed", "num_messages": 1}
    assert _rows(path, "SELECT completed_at FROM session_timesteps")[0]["completed_at"] is not None


def test_close_saves_an_open_session(tmp_path):
    path = tmp_path / "open.db"
    tracer = SessionTracer(path)
    tracer.start_session(session_id="left-open")
    tracer.record_message("kept", "user")
    tracer.close()
    assert _rows(path, "SELECT session_id FROM session_traces") == [{"session_id": "left-open"}]
    tracer.close()  # idempotent
    with pytest.raises(TraceStoreError, match="closed"):
        tracer.start_session()


def test_misuse_is_caught_before_anything_is_written(tmp_path):
    path = tmp_path / "misuse.db"
    with SessionTracer(path) as tracer:
        with pytest.raises(RuntimeError, match="no active session"):
            tracer.record_message("x", "user")
        with pytest.raises(TraceStoreError, match="no experiment nope"):
            tracer.start_session(experiment_id="nope")
        with tracer.session(session_id="s1"):
            with pytest.raises(RuntimeError, match="still active"):
                tracer.start_session()
            with pytest.raises(ValueError, match="message_type"):
                tracer.record_message("x", "robot")
            with pytest.raises(TypeError):
                tracer.record_event({"event_type": "cais"})
            with tracer.timestep("step_0"):
                with pytest.raises(RuntimeError, match="still open"):
                    tracer.start_timestep("step_1")
            with pytest.raises(ValueError, match="already exists"):
                tracer.start_timestep("step_0")
            tracer.record_message({"structured": True}, "tool_result")
        with pytest.raises(TraceStoreError, match="already exists"):
            tracer.start_session(session_id="s1")
    assert _rows(path, "SELECT content FROM messages") == [{"content": '{"structured":true}'}]


def test_experiments_upsert_and_generated_ids(tmp_path):
    path = tmp_path / "exp.db"
    with SessionTracer(path) as tracer:
        generated = tracer.create_experiment(None, "auto")
        assert generated.startswith("exp_") and len(generated) == 16
        tracer.create_experiment("exp_1", "first", configuration={"lr": 1e-4}, metadata={"owner": "me"})
        tracer.create_experiment("exp_1", "renamed", description="second thoughts")
    rows = _rows(path, "SELECT experiment_id, name, description, configuration, metadata FROM experiments "
                       "ORDER BY rowid")
    assert rows == [
        {"experiment_id": generated, "name": "auto", "description": None, "configuration": "{}", "metadata": None},
        {"experiment_id": "exp_1", "name": "renamed", "description": "second thoughts",
         "configuration": '{"lr":0.0001}', "metadata": '{"owner":"me"}'},
    ]


# --------------------------------------------------------------------------- targets


def test_file_target_creates_parent_directories(tmp_path):
    path = tmp_path / "deep" / "er" / "traces.db"
    SessionTracer(path).close()
    assert path.is_file() and path.read_bytes()[:16] == b"SQLite format 3\x00"


def test_sqld_layout_targets(tmp_path, fixture_dir):
    # a new sqld directory, asked for explicitly
    new = tmp_path / "fresh.db"
    tracer = SessionTracer(new, layout="sqld")
    assert tracer.path == new / "dbs" / "default" / "data"
    _play(tracer, steps=1)
    tracer.close()
    with TraceStore.open(new) as store:
        assert store.scalar("SELECT count(*) FROM session_traces") == 1
    # an existing empty directory
    empty = tmp_path / "empty"
    empty.mkdir()
    with SessionTracer(empty) as tracer:
        assert tracer.path == empty / "dbs" / "default" / "data"
    # an existing sqld directory: the published fixture (copy), appended to
    with SessionTracer(fixture_dir) as tracer:
        assert tracer.path == fixture_dir / "dbs" / "default" / "data"
        _play(tracer, steps=2)
    with TraceStore.open(fixture_dir) as store:
        assert store.scalar("SELECT count(*) FROM session_traces") == FIXTURE_COUNTS["sessions"] + 1
    # a directory with unrelated content is not silently turned into a DB
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("hi")
    with pytest.raises(TraceStoreError, match="is a directory"):
        SessionTracer(busy)
    assert sorted(os.listdir(busy)) == ["notes.txt"]


def test_sqlite_urls(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SessionTracer("sqlite:///rel/traces.db") as tracer:
        assert tracer.path.resolve() == (tmp_path / "rel" / "traces.db").resolve()
    absolute = tmp_path / "abs.db"
    with SessionTracer(f"sqlite+aiosqlite:///{absolute}") as tracer:
        assert tracer.path == absolute
    assert absolute.is_file()
    with pytest.raises(TraceStoreError, match="unsupported SQLite URL"):
        SessionTracer("sqlite:relative.db")


def test_refuses_files_that_are_not_sqlite(tmp_path):
    path = tmp_path / "random.db"
    data = os.urandom(4096)
    path.write_bytes(data)
    with pytest.raises(TraceStoreError, match="not a SQLite database"):
        SessionTracer(path)
    assert path.read_bytes() == data
    text = tmp_path / "notes.txt"
    text.write_text("just some notes\n")
    with pytest.raises(TraceStoreError, match="not a SQLite database"):
        SessionTracer(text)
    assert text.read_text() == "just some notes\n"


def test_empty_file_becomes_a_trace_db(tmp_path):
    path = tmp_path / "touched.db"
    path.touch()
    with SessionTracer(path) as tracer:
        _play(tracer, steps=1)
    with TraceStore.open(path) as store:
        assert store.scalar("SELECT count(*) FROM session_traces") == 1


def test_two_writers_on_one_file(tmp_path):
    path = tmp_path / "shared.db"
    SessionTracer(path).close()
    errors = []

    def worker(n):
        try:
            with SessionTracer(path) as tracer:
                for _ in range(5):
                    _play(tracer, steps=2, metadata={"worker": n})
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _rows(path, "SELECT count(*) AS n FROM session_traces")[0]["n"] == 10
    assert _rows(path, "SELECT count(*) AS n FROM events")[0]["n"] == 10 * 2 * 3


def test_session_created_at_and_timezones(tmp_path):
    path = tmp_path / "tz.db"
    with SessionTracer(path) as tracer:
        with tracer.session(session_id="s", created_at=datetime(2025, 5, 1, 14, 0, tzinfo=timezone.utc)):
            pass
    assert _rows(path, "SELECT created_at FROM session_traces") == [{"created_at": "2025-05-01 14:00:00.000000"}]


def test_fixture_itself_is_never_written():
    """Everything above writes into copies: the fixture stays a published DB, unmigrated."""
    conn = sqlite3.connect(f"file:{FIXTURE_DIR / 'dbs' / 'default' / 'data'}?mode=ro", uri=True)
    try:
        assert "_synth_migrations" not in {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert conn.execute("SELECT count(*) FROM session_traces").fetchone()[0] == FIXTURE_COUNTS["sessions"]
    finally:
        conn.close()


def test_default_target(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with SessionTracer() as tracer:
        assert tracer.path.resolve() == (tmp_path / "synth_ai.db" / "dbs" / "default" / "data").resolve()
        _play(tracer, steps=1)
    with TraceStore.open(tmp_path / "synth_ai.db") as store:
        assert store.scalar("SELECT count(*) FROM session_traces") == 1
    monkeypatch.setenv("SYNTH_TRACES_DB", str(tmp_path / "from_env.db"))
    with SessionTracer() as tracer:
        assert tracer.path == tmp_path / "from_env.db"
    assert (tmp_path / "from_env.db").is_file()


def _generic_to_dict(obj):
    """What `_Record.to_dict` computes, written out plainly (the generated fast path must agree)."""
    from synth_cli.tracing.models import _Record, format_datetime

    out = {}
    for name in obj._field_names():
        value = getattr(obj, name)
        if isinstance(value, _Record):
            value = _generic_to_dict(value)
        elif isinstance(value, list):
            value = [_generic_to_dict(v) if isinstance(v, _Record) else v for v in value]
        elif isinstance(value, datetime):
            value = format_datetime(value)
        out[name] = value
    out.update(getattr(obj, "extra", None) or {})
    return out


def test_generated_to_dict_matches_the_generic_one_key_for_key():
    records = [build(load(name)) for name in fixture_names()]
    records += [build(load(name), streamed=True) for name in fixture_names() if "stream" in load(name)]
    odd = LLMCallRecord.from_dict({"call_id": "odd", "model_name": "m", "unknown_top": 1, "input_messages": [
        {"role": "user", "parts": [{"type": "text", "text": "hi", "unknown_part": [1, 2]}], "x": None}]})
    odd.output_text = datetime(2025, 1, 2, 3, 4, 5)        # a datetime where a string is declared
    odd.metadata = {"when": "now", "nested": {"a": [1, 2]}}
    odd.note = "an attribute that is not a field"
    sub = type("MyRecord", (LLMCallRecord,), {})(call_id="sub", model_name="m")
    for record in [*records, odd, sub]:
        fast, slow = record.to_dict(), _generic_to_dict(record)
        assert fast == slow and list(fast) == list(slow), record.call_id
        for message in record.input_messages:
            assert list(message.to_dict()) == list(_generic_to_dict(message))
    assert odd.to_dict()["unknown_top"] == 1 and odd.to_dict()["output_text"] == "2025-01-02 03:04:05"


def test_utcnow_is_naive_utc_now():
    from datetime import timezone

    from synth_cli.tracing.tracer import utcnow

    before = datetime.now(timezone.utc).replace(tzinfo=None)
    now = utcnow()
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    assert now.__class__ is datetime and now.tzinfo is None and before <= now <= after


@pytest.mark.parametrize("ns", [0, 1, 999_999_999, 1_000_000_000, 1_750_000_000_123_456_789, 1_750_000_000_999_999_999,
                                951_782_400_000_001_000, 4_102_444_799_999_999_000, 253_402_300_799_999_999_000])
def test_the_precise_clock_text_is_the_formatted_utcnow(monkeypatch, ns):
    """Steps store `_precise_now()`: what `_fmt_precise(utcnow())` gives for the same clock reading."""
    from synth_cli.tracing import tracer as tracer_module

    monkeypatch.setattr(tracer_module.time, "time_ns", lambda: ns)
    expected = tracer_module._fmt_precise(tracer_module.utcnow())
    assert tracer_module._precise_now() == expected
    assert tracer_module._precise_now() == expected  # the second from the cache
    monkeypatch.undo()
    before = tracer_module._fmt_precise(tracer_module.utcnow())
    now = tracer_module._precise_now()
    assert before <= now <= tracer_module._fmt_precise(tracer_module.utcnow())
