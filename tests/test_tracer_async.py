"""`AsyncSessionTracer`: the sync tracer's API for asyncio agents, with every write off the event loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from synth_cli.tracing.events import EnvironmentEvent, RuntimeEvent
from synth_cli.tracing.models import LLMCallRecord, LLMUsage
from synth_cli.tracing.tracer import AsyncSessionTracer, SessionTracer


def _record(i):
    return LLMCallRecord(call_id=f"call-{i}", model_name="gpt-4o-mini", provider="openai",
                         usage=LLMUsage(input_tokens=10, output_tokens=2, total_tokens=12, cost_usd=0.01),
                         latency_ms=40, outcome="success")


def _dump(path):
    conn = sqlite3.connect(path)
    try:
        return {
            "sessions": conn.execute("SELECT session_id, num_timesteps, num_events, num_messages, metadata,"
                                     " experiment_id FROM session_traces ORDER BY session_id").fetchall(),
            "steps": conn.execute("SELECT session_id, step_id, step_index, turn_number, num_events, num_messages"
                                  " FROM session_timesteps ORDER BY id").fetchall(),
            "events": conn.execute("SELECT e.session_id, s.step_id, e.event_type, e.system_instance_id, e.model_name,"
                                   " e.cost_usd, e.reward, e.metadata FROM events e LEFT JOIN session_timesteps s"
                                   " ON s.id = e.timestep_id ORDER BY e.id").fetchall(),
            "messages": conn.execute("SELECT m.session_id, s.step_id, m.message_type, m.content, m.metadata"
                                     " FROM messages m LEFT JOIN session_timesteps s ON s.id = m.timestep_id"
                                     " ORDER BY m.id").fetchall(),
            "experiments": conn.execute("SELECT experiment_id, name FROM experiments").fetchall(),
        }
    finally:
        conn.close()


def test_the_async_api_writes_what_the_sync_one_does(tmp_path):
    def sync_run(path):
        with SessionTracer(path) as tracer:
            tracer.create_experiment("exp_1", "run")
            for n in range(2):
                with tracer.session(session_id=f"s{n}", metadata={"n": n}, experiment_id="exp_1"):
                    for step in range(2):
                        with tracer.timestep(f"step_{step}", turn_number=step):
                            tracer.record_message(f"obs {step}", "user")
                            tracer.record_llm_call(_record(step), system_instance_id="agent")
                            tracer.record_event(RuntimeEvent(system_instance_id="rt", actions=[step]))
                            tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))

    async def async_run(path):
        async with AsyncSessionTracer(path) as tracer:
            await tracer.create_experiment("exp_1", "run")
            for n in range(2):
                async with tracer.session(session_id=f"s{n}", metadata={"n": n}, experiment_id="exp_1") as sid:
                    assert sid == f"s{n}" and tracer.current_session_id == sid
                    for step in range(2):
                        async with tracer.timestep(f"step_{step}", turn_number=step):
                            await tracer.record_message(f"obs {step}", "user")
                            await tracer.record_llm_call(_record(step), system_instance_id="agent")
                            await tracer.record_event(RuntimeEvent(system_instance_id="rt", actions=[step]))
                            await tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=1.0))
        assert tracer.closed

    sync_run(tmp_path / "sync.db")
    asyncio.run(async_run(tmp_path / "async.db"))
    assert _dump(tmp_path / "async.db") == _dump(tmp_path / "sync.db")
    assert len(_dump(tmp_path / "async.db")["events"]) == 2 * 2 * 3


def test_writes_never_block_the_event_loop(tmp_path):
    """While another writer holds the DB, the session's write waits in the tracer's thread: the loop
    keeps running, so the callback that releases the lock runs and the write succeeds (a write on
    the loop would hold it through every retry and end spooled)."""
    path = tmp_path / "loop.db"
    SessionTracer(path).close()
    blocker = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    threads = set()

    async def main():
        async with AsyncSessionTracer(path, busy_timeout=0.2) as tracer:
            original = tracer.tracer._writer.write

            def spy(batch):
                threads.add(threading.get_ident())
                return original(batch)

            tracer.tracer._writer.write = spy
            async with tracer.session(session_id="patient"):
                await tracer.record_message("hello", "user")
                blocker.execute("BEGIN IMMEDIATE")
                asyncio.get_running_loop().call_later(0.5, blocker.rollback)   # runs only if the loop is free
            return tracer.tracer

    sync_tracer = asyncio.run(main())
    blocker.close()
    assert threading.get_ident() not in threads and len(threads) == 1
    assert sync_tracer.warnings == [] and sync_tracer.sessions_written == 1
    assert _dump(path)["sessions"] == [("patient", 0, 0, 1, "{}", None)]


def test_durable_timesteps_and_errors_in_async_blocks(tmp_path):
    path = tmp_path / "durable.db"

    async def main():
        async with AsyncSessionTracer(path, durable="timestep") as tracer:
            with pytest.raises(ZeroDivisionError):
                async with tracer.session(session_id="crash"):
                    async with tracer.timestep("step_0"):
                        await tracer.record_message("kept", "user")
                    assert _dump(path)["steps"] == [("crash", "step_0", 0, None, 0, 1)]   # written as it ended
                    async with tracer.timestep("step_1"):
                        await tracer.record_message("also kept", "user")
                        1 / 0  # noqa: B018 - the agent crashes mid-step
            assert tracer.current_session_id is None
        with pytest.raises(RuntimeError, match="no active session"):
            await tracer.record_message("late", "user")
        with pytest.raises(RuntimeError, match="not open"):
            await AsyncSessionTracer(path).record_message("never opened", "user")

    asyncio.run(main())
    assert _dump(path)["sessions"] == [("crash", 2, 0, 2, "{}", None)]
