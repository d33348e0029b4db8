"""A worker process that writes trace sessions with `SessionTracer`, for the many-writers tests
and bench/remote.py: `python tests/helpers/trace_worker.py TARGET WORKER SESSIONS [STEPS]`.

Session ids are derived from (worker, n), so a re-run writes the same sessions; every session
has STEPS timesteps, each with a user message, one LLM call record (the whole conversation so
far as input), an assistant message and an environment reward. Prints one JSON line: what
the tracer reports (sessions written, spooled, warnings) and the elapsed seconds.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

NAMESPACE = uuid.UUID("6f1c1f4e-9a55-4d5e-8c43-1f1d9a2b7c10")


def session_id(worker: int, n: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"worker-{worker}-session-{n}"))


def record(worker: int, n: int, step: int, history: list[dict]) -> dict:
    text = f"worker {worker} session {n} step {step}: I will move left."
    return {
        "call_id": f"w{worker}-s{n}-t{step}", "provider": "openai", "model_name": "gpt-4o-mini",
        "started_at": 1_750_000_000 + step, "completed_at": 1_750_000_000.4 + step, "latency_ms": 400,
        "request_params": {"temperature": 0.2},
        "input_messages": list(history),
        "output_messages": [{"role": "assistant", "parts": [{"type": "text", "text": text}]}],
        "usage": {"input_tokens": 50 + 10 * step, "output_tokens": 12, "total_tokens": 62 + 10 * step,
                  "cost_usd": 0.0001},
        "finish_reason": "stop", "outcome": "success",
    }


def main(target: str, worker: int, sessions: int, steps: int = 3) -> int:
    from synth_cli.tracing.events import EnvironmentEvent
    from synth_cli.tracing.tracer import SessionTracer

    started = time.perf_counter()
    calls = 0
    with SessionTracer(target) as tracer:
        experiment = tracer.create_experiment(f"exp_worker_{worker}", f"worker {worker}")
        for n in range(sessions):
            history = [{"role": "system", "parts": [{"type": "text", "text": "You play a grid game."}]}]
            with tracer.session(session_id(worker, n), metadata={"worker": worker, "n": n},
                                experiment_id=experiment):
                for step in range(steps):
                    with tracer.timestep(f"step_{step}", turn_number=step):
                        obs = f"worker {worker} session {n} step {step}: a tree to the west."
                        history.append({"role": "user", "parts": [{"type": "text", "text": obs}]})
                        tracer.record_message(obs, message_type="user")
                        rec = record(worker, n, step, history)
                        tracer.record_llm_call(rec, system_instance_id="agent")
                        calls += 1
                        reply = rec["output_messages"][0]["parts"][0]["text"]
                        tracer.record_message(reply, message_type="assistant")
                        tracer.record_event(EnvironmentEvent(system_instance_id="env", reward=float(step % 2)))
                        history.append({"role": "assistant", "parts": [{"type": "text", "text": reply}]})
        report = {"worker": worker, "written": tracer.sessions_written, "spooled": tracer.sessions_spooled,
                  "warnings": tracer.warnings, "calls": calls,
                  "busy_retries": getattr(tracer._writer, "busy_retries", None)}
    report["elapsed_s"] = round(time.perf_counter() - started, 3)
    print(json.dumps(report), flush=True)
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    sys.exit(main(args[0], int(args[1]), int(args[2]), int(args[3]) if len(args) > 3 else 3))
