"""`SessionTracer.timestep()` as a `with` block: ends the step on exit, also when the block raises."""

from __future__ import annotations

import sqlite3

import pytest

from synth_cli.tracing.tracer import SessionTracer


def _steps(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT step_id, completed_at IS NOT NULL, num_messages FROM session_timesteps"
                            " ORDER BY id").fetchall()
    finally:
        conn.close()


@pytest.mark.parametrize("durable", ["session", "timestep"])
def test_a_raising_block_ends_its_step_and_the_error_propagates(tmp_path, durable):
    path = tmp_path / "t.db"
    with SessionTracer(path, durable=durable) as tracer:
        with tracer.session(session_id="s"):
            with tracer.timestep("ok", turn_number=0) as sid:
                assert sid == "ok" and tracer.current_step_id == "ok"
                tracer.record_message("hi")
            assert tracer.current_step_id is None
            with pytest.raises(KeyError, match="boom"):
                with tracer.timestep("bad", turn_number=1):
                    tracer.record_message("before the error")
                    raise KeyError("boom")
            assert tracer.current_step_id is None
            block = tracer.timestep("unused")  # nothing happens until the block is entered
            assert tracer.current_step_id is None and block is not None
    assert _steps(path) == [("ok", 1, 1), ("bad", 1, 1)]


def test_a_step_ended_inside_its_block_is_not_ended_twice(tmp_path):
    path = tmp_path / "t.db"
    with SessionTracer(path) as tracer:
        with tracer.session(session_id="s"):
            with tracer.timestep("a") as sid:
                tracer.end_timestep(sid)
                with tracer.timestep("b"):
                    tracer.record_message("in b")
            with pytest.raises(ValueError, match="already exists"):
                with tracer.timestep("a"):
                    pass
    assert _steps(path) == [("a", 1, 0), ("b", 1, 1)]


def test_timestep_as_a_decorator(tmp_path):
    path = tmp_path / "t.db"
    with SessionTracer(path) as tracer:
        with tracer.session(session_id="s"):
            calls = []

            def act(n):
                calls.append(tracer.current_step_id)
                tracer.record_message(f"act {n}")

            for n in range(2):
                tracer.timestep(f"step_{n}")(act)(n)
    assert calls == ["step_0", "step_1"]
    assert _steps(path) == [("step_0", 1, 1), ("step_1", 1, 1)]
