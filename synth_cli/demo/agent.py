"""A scripted Crafter-style agent whose LLM calls go through the recording proxy.

It plays a tiny grid-survival game: each step it sends the conversation so far to an
OpenAI-compatible Chat Completions endpoint (plain HTTP, the request an official SDK
sends: `POST {base_url}/chat/completions` with `Authorization: Bearer`), offering the
`interact` tool; the model's tool call picks one or two actions, and the environment
unlocks achievements (reward 1 each) when an action fits what is nearby. The agent has
no tracer code: `synth-ai proxy` in front of the model records every call, groups them
by the `X-Synth-Session-Id` header, and takes the rewards the agent posts to
`/synth/sessions/{id}/events` and `/synth/sessions/{id}/end`. Deterministic for a seed
(the simulated model of `synth-ai serve` answers deterministically for a request).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field

ACTIONS = ["move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_table", "make_wood_pickaxe"]
ACHIEVEMENTS = ["collect_wood", "collect_sapling", "place_table", "collect_drink", "eat_cow", "wake_up",
                "make_wood_pickaxe"]
USEFUL = {"tree": "do", "water": "do", "cow": "do", "grass": "do", "table": "make_wood_pickaxe",
          "stone": "place_table"}
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
    # (experiment id, model, temperature)
    ("demo-careful", "gpt-4o-mini", 0.2),
    ("demo-random", "Qwen/Qwen3-4B-Instruct-2507", 1.0),
]


@dataclass
class AgentRun:
    sessions: int
    steps: int
    llm_calls: int
    tool_calls: int
    total_reward: float
    rewards: dict[str, float] = field(default_factory=dict)  # session id -> total reward


class AgentError(Exception):
    """The model or the proxy answered something the agent cannot use (the message says what)."""


def _observation(rng: random.Random, step: int, inventory: dict[str, int]) -> tuple[str, str]:
    nearby = rng.choice(["tree", "water", "grass", "cow", "stone", "table"])
    direction = rng.choice(["north", "south", "east", "west"])
    inv = ", ".join(f"{k}={v}" for k, v in inventory.items())
    text = (f"Step {step}. Health 9/9, Food {rng.randint(5, 9)}/9, Drink {rng.randint(4, 9)}/9. "
            f"Inventory: {inv}. Nearby: {nearby} to the {direction}.")
    return text, nearby


def _post(client, url: str, body: dict, headers: dict[str, str] | None = None) -> dict:
    import httpx

    try:
        resp = client.post(url, json=body, headers=headers)
    except httpx.HTTPError as exc:
        raise AgentError(f"POST {url}: {exc.__class__.__name__}: {exc}") from None
    if resp.status_code not in (200, 202):
        raise AgentError(f"POST {url}: HTTP {resp.status_code}: {resp.text[:200]}")
    try:
        return resp.json()
    except ValueError:
        raise AgentError(f"POST {url}: the answer is not JSON") from None


def run_agent(proxy_url: str, api_key: str, *, sessions: int = 40, steps: int = 10, seed: int = 0) -> AgentRun:
    """Play `sessions` episodes of `steps` turns, every LLM call through the proxy at `proxy_url`
    (its root, e.g. http://127.0.0.1:8100): `{proxy_url}/v1` is the OpenAI base URL."""
    import httpx

    rng = random.Random(seed)
    base_url = proxy_url.rstrip("/") + "/v1"
    llm_calls = tool_calls = 0
    rewards: dict[str, float] = {}
    with httpx.Client(headers={"Authorization": f"Bearer {api_key}"}, timeout=30.0, trust_env=False) as client:
        for s in range(sessions):
            exp_id, model, temperature = POLICIES[s % len(POLICIES)]
            session_id = str(uuid.UUID(int=rng.getrandbits(128)))
            metadata = {"env_name": "crafter-lite", "model": model, "seed": s, "policy": exp_id,
                        "task_split": "train" if rng.random() < 0.8 else "val"}
            headers = {"X-Synth-Session-Id": session_id, "X-Synth-Experiment-Id": exp_id,
                       "X-Synth-Metadata": json.dumps(metadata)}
            messages: list[dict] = [{"role": "system", "content": SYSTEM_PROMPT}]
            inventory = {"wood": 0, "sapling": 0, "drink": 0}
            unlocked: set[str] = set()
            session_reward = 0.0
            for step in range(steps):
                obs, nearby = _observation(rng, step, inventory)
                messages.append({"role": "user", "content": obs})
                request = {"model": model, "messages": messages, "tools": TOOLS, "tool_choice": "required",
                           "temperature": temperature, "max_tokens": 256, "seed": seed * 100_003 + s}
                answer = _post(client, base_url + "/chat/completions", request, headers)
                llm_calls += 1
                try:
                    assistant = answer["choices"][0]["message"]
                    call = assistant["tool_calls"][0]
                    acts = [a for a in json.loads(call["function"]["arguments"]).get("actions") or []
                            if a in ACTIONS][:3]
                except (KeyError, IndexError, TypeError, ValueError):
                    raise AgentError("the model's answer has no usable `interact` tool call") from None
                tool_calls += 1
                messages.append({k: v for k, v in assistant.items() if k in ("role", "content", "tool_calls")})

                reward = 0.0
                for act in acts:
                    if act == USEFUL.get(nearby) and rng.random() < 0.7:
                        candidates = [a for a in ACHIEVEMENTS if a not in unlocked]
                        if candidates:
                            unlocked.add(rng.choice(candidates))
                            reward += 1.0
                if nearby == "tree" and "do" in acts:
                    inventory["wood"] += 1
                result = f"Did {', '.join(acts) or 'nothing'}; reward {reward:g}; achievements {len(unlocked)}."
                messages.append({"role": "tool", "tool_call_id": call.get("id"), "content": result})
                last = step == steps - 1
                event = {"reward": reward, "terminated": last,
                         "metadata": {"step": step, "achievements": sorted(unlocked)}}
                _post(client, f"{proxy_url.rstrip('/')}/synth/sessions/{session_id}/"
                      + ("end" if last else "events"), event)
                session_reward += reward
            rewards[session_id] = session_reward
    return AgentRun(sessions, steps, llm_calls, tool_calls, sum(rewards.values()), rewards)
