"""Trace an agent with synth-ai's SessionTracer.

    python examples/tracing/agent.py --db traces.db --sessions 10

Every LLM call goes through `chat()`: with OPENAI_BASE_URL and OPENAI_API_KEY set
it calls that OpenAI-compatible endpoint for real (any model that supports tool
calls; pick it with OPENAI_MODEL); otherwise a scripted policy answers, so the
example runs offline. Either way the call is recorded as an LLMCallRecord with
`record_from_openai_chat`, and the environment's rewards as environment events,
which is what `synth-ai filter --min-reward …` selects on.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from datetime import datetime, timezone

from synth_cli.tracing.events import EnvironmentEvent
from synth_cli.tracing.record import record_error, record_from_openai_chat
from synth_cli.tracing.tracer import SessionTracer

TOOLS = [{
    "type": "function",
    "function": {
        "name": "guess",
        "description": "Guess the secret number.",
        "parameters": {"type": "object", "properties": {"number": {"type": "integer"}}, "required": ["number"]},
    },
}]
SYSTEM = "Find the secret number between 1 and 64. Call `guess` once per turn; you are told higher or lower."


def chat(request: dict, rng: random.Random, low: int, high: int) -> dict:
    """One Chat Completions call: a real endpoint when configured, else a scripted answer."""
    base_url, key = os.environ.get("OPENAI_BASE_URL"), os.environ.get("OPENAI_API_KEY")
    if base_url and key:
        import httpx

        resp = httpx.post(base_url.rstrip("/") + "/chat/completions", json=request,
                          headers={"Authorization": f"Bearer {key}"}, timeout=60)
        resp.raise_for_status()
        return resp.json()
    number = (low + high) // 2 if rng.random() < 0.7 else rng.randint(low, high)  # a mostly-sensible policy
    call_id = f"call_{rng.getrandbits(48):012x}"
    return {
        "id": f"chatcmpl-{rng.getrandbits(64):016x}", "object": "chat.completion", "created": int(time.time()),
        "model": request["model"],
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": f"Between {low} and {high}; I try {number}.",
            "tool_calls": [{"id": call_id, "type": "function",
                            "function": {"name": "guess", "arguments": json.dumps({"number": number})}}]}}],
        "usage": {"prompt_tokens": 30 * len(request["messages"]), "completion_tokens": 18, "total_tokens":
                  30 * len(request["messages"]) + 18},
    }


def play(tracer: SessionTracer, rng: random.Random, model: str, max_turns: int = 8) -> float:
    secret, low, high = rng.randint(1, 64), 1, 64
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Start guessing."}]
    with tracer.session(metadata={"task": "guess-the-number", "secret": secret, "model": model}):
        for turn in range(max_turns):
            with tracer.timestep(f"turn_{turn}", turn_number=turn):
                request = {"model": model, "messages": list(messages), "tools": TOOLS, "tool_choice": "required"}
                started = datetime.now(timezone.utc)
                try:
                    response = chat(request, rng, low, high)
                except Exception as exc:  # noqa: BLE001 - a failed call is traced too, then the episode ends
                    tracer.record_llm_call(record_error(request, exc), system_instance_id="guesser")
                    return 0.0
                record = record_from_openai_chat(request, response, started_at=started,
                                                 completed_at=datetime.now(timezone.utc))
                tracer.record_llm_call(record, system_instance_id="guesser")
                message = response["choices"][0]["message"]
                messages.append({k: v for k, v in message.items() if v is not None})
                calls = message.get("tool_calls") or []
                if not calls:
                    return 0.0
                number = int(json.loads(calls[0]["function"]["arguments"]).get("number", 0))
                if number == secret:
                    verdict, reward, done = "correct!", 1.0 + (max_turns - turn) / max_turns, True
                else:
                    verdict, reward, done = ("higher" if number < secret else "lower"), 0.0, False
                    low, high = (max(low, number + 1), high) if number < secret else (low, min(high, number - 1))
                messages.append({"role": "tool", "tool_call_id": calls[0]["id"], "content": verdict})
                tracer.record_event(EnvironmentEvent(system_instance_id="guess-env", reward=reward,
                                                     terminated=done))
                if done:
                    return reward
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", default="traces.db", help="trace DB to write (created when new)")
    parser.add_argument("--sessions", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=os.environ.get("OPENAI_MODEL", "gpt-4o-mini"))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    tracer = SessionTracer(args.db)
    try:
        rewards = [play(tracer, rng, args.model) for _ in range(args.sessions)]
    finally:
        tracer.close()
    solved = sum(1 for r in rewards if r > 0)
    print(f"traced {args.sessions} sessions into {args.db}: {solved} solved, total reward {sum(rewards):.2f}")


if __name__ == "__main__":
    main()
