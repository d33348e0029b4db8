"""A scripted Crafter-style agent that writes real traces with `SessionTracer`.

It plays a tiny grid-survival game: each step the policy reads an observation and
calls the `interact` tool with one to three actions; the environment unlocks
achievements (reward 1 each) with a probability that depends on how sensible
the chosen actions are. Every LLM call is built as an OpenAI Chat Completions
request/response pair and recorded with `record_from_openai_chat`, exactly as a
real agent's calls would be, so `filter` sees the same shapes as in production.
Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

ACTIONS = ["move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_table", "make_wood_pickaxe"]
ACHIEVEMENTS = ["collect_wood", "collect_sapling", "place_table", "collect_drink", "eat_cow", "wake_up",
                "make_wood_pickaxe"]
USEFUL = {"tree": "do", "water": "do", "cow": "do", "grass": "do", "table": "make_wood_pickaxe"}
SYSTEM_PROMPT = ("You are an agent playing Crafter. Each turn, read the observation and call the `interact` "
                 "tool with 1-3 actions. Unlock as many achievements as you can.")
TOOLS = [{
    "type": "function",
    "function": {
        "name": "interact",
        "description": "Take one to three actions in the world.",
        "parameters": {
            "type": "object",
            "properties": {
                "actions": {"type": "array", "items": {"type": "string", "enum": ACTIONS}},
                "reasoning": {"type": "string"},
            },
            "required": ["actions"],
        },
    },
}]
POLICIES = [
    # (experiment name, model, provider, skill): skill is the chance to pick the useful action.
    ("demo-careful", "gpt-4o-mini", "openai", 0.8),
    ("demo-random", "Qwen/Qwen3-4B-Instruct-2507", "synth", 0.3),
]
PRICE_PER_M = {"gpt-4o-mini": (0.15, 0.60), "Qwen/Qwen3-4B-Instruct-2507": (0.05, 0.10)}


@dataclass
class AgentRun:
    db_path: Path
    sessions: int
    steps: int
    llm_calls: int
    tool_calls: int
    total_reward: float


def _observation(rng: random.Random, step: int, inventory: dict[str, int]) -> tuple[str, str]:
    nearby = rng.choice(["tree", "water", "grass", "cow", "stone", "table"])
    direction = rng.choice(["north", "south", "east", "west"])
    inv = ", ".join(f"{k}={v}" for k, v in inventory.items())
    text = (f"Step {step}. Health 9/9, Food {rng.randint(5, 9)}/9, Drink {rng.randint(4, 9)}/9. "
            f"Inventory: {inv}. Nearby: {nearby} to the {direction}.")
    return text, nearby


def run_agent(db_path: str | Path, *, sessions: int = 40, steps: int = 10, seed: int = 0) -> AgentRun:
    """Play `sessions` episodes of `steps` turns and trace them into `db_path` (created if new)."""
    from synth_cli.tracing.events import EnvironmentEvent, RuntimeEvent
    from synth_cli.tracing.capture.openai import record_from_openai_chat
    from synth_cli.tracing.tracer import SessionTracer

    rng = random.Random(seed)
    db_path = Path(db_path)
    tracer = SessionTracer(str(db_path))
    llm_calls = tool_calls = 0
    total_reward = 0.0
    clock = datetime(2026, 1, 5, 9, 0, 0)
    try:
        experiments = []
        for name, *_ in POLICIES:
            exp_id = f"exp_{uuid.UUID(int=rng.getrandbits(128)).hex[:12]}"
            tracer.create_experiment(exp_id, name, description=f"scripted policy {name}")
            experiments.append(exp_id)
        for s in range(sessions):
            policy_index = s % len(POLICIES)
            exp_name, model, provider, skill = POLICIES[policy_index]
            session_id = str(uuid.UUID(int=rng.getrandbits(128)))
            metadata = {"env_name": "crafter-lite", "model": model, "seed": s, "policy": exp_name,
                        "task_split": "train" if rng.random() < 0.8 else "val"}
            messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
            inventory = {"wood": 0, "sapling": 0, "drink": 0}
            unlocked: set[str] = set()
            with tracer.session(session_id=session_id, metadata=metadata,
                                experiment_id=experiments[policy_index]):
                for step in range(steps):
                    with tracer.timestep(f"step_{step}", turn_number=step):
                        obs, nearby = _observation(rng, step, inventory)
                        tracer.record_message(obs, message_type="user")
                        messages.append({"role": "user", "content": obs})
                        useful = USEFUL.get(nearby, rng.choice(ACTIONS))
                        acts = [useful if rng.random() < skill else rng.choice(ACTIONS)
                                for _ in range(rng.randint(1, 3))]
                        reasoning = f"{nearby.capitalize()} nearby, so I will {', '.join(acts)}."
                        call_id = f"call_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}"
                        request = {"model": model, "messages": [dict(m) for m in messages], "tools": TOOLS,
                                   "tool_choice": "auto", "temperature": 0.7, "max_tokens": 256}
                        prompt_tokens = sum(len(str(m.get("content") or "")) for m in messages) // 4 + 40
                        completion_tokens = 12 + 6 * len(acts)
                        assistant = {
                            "role": "assistant", "content": reasoning,
                            "tool_calls": [{"id": call_id, "type": "function", "function": {
                                "name": "interact",
                                "arguments": json.dumps({"actions": acts, "reasoning": reasoning})}}],
                        }
                        response = {
                            "id": f"chatcmpl-{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}",
                            "object": "chat.completion", "created": int(clock.timestamp()), "model": model,
                            "choices": [{"index": 0, "message": assistant, "finish_reason": "tool_calls"}],
                            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                      "total_tokens": prompt_tokens + completion_tokens},
                        }
                        started = clock
                        clock += timedelta(milliseconds=rng.randint(250, 900))
                        record = record_from_openai_chat(request, response, started_at=started, completed_at=clock)
                        record.provider = provider
                        price_in, price_out = PRICE_PER_M[model]
                        if record.usage is not None:
                            record.usage.cost_usd = round(
                                (prompt_tokens * price_in + completion_tokens * price_out) / 1e6, 8)
                        tracer.record_llm_call(record, system_instance_id="crafter-lite-agent")
                        llm_calls += 1
                        tool_calls += 1
                        tracer.record_message(reasoning, message_type="assistant")
                        messages.append(assistant)

                        reward = 0.0
                        for act in acts:
                            if act in ("do", "make_wood_pickaxe", "place_table") and rng.random() < skill * 0.35:
                                candidates = [a for a in ACHIEVEMENTS if a not in unlocked]
                                if candidates:
                                    unlocked.add(rng.choice(candidates))
                                    reward += 1.0
                        if nearby == "tree" and "do" in acts:
                            inventory["wood"] += 1
                        result = f"Did {', '.join(acts)}; reward {reward:g}; achievements {len(unlocked)}."
                        tracer.record_message(result, message_type="tool_result")
                        messages.append({"role": "tool", "tool_call_id": call_id, "content": result})
                        tracer.record_event(RuntimeEvent(system_instance_id="crafter-lite-runtime",
                                                         actions=[ACTIONS.index(a) for a in acts]))
                        tracer.record_event(EnvironmentEvent(
                            system_instance_id="crafter-lite-env", reward=reward,
                            terminated=step == steps - 1,
                            system_state_after={"public_state": {
                                "achievements_status": {a: a in unlocked for a in ACHIEVEMENTS}}}))
                        total_reward += reward
                        clock += timedelta(seconds=1)
            clock += timedelta(seconds=30)
    finally:
        tracer.close()
    return AgentRun(db_path, sessions, steps, llm_calls, tool_calls, total_reward)
