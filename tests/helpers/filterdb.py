"""Helpers for the filter/dataset tests: call-record dicts and small trace DBs written with SessionTracer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from synth_cli.tracing.events import EnvironmentEvent
from synth_cli.tracing.models import LLMCallRecord
from synth_cli.tracing.tracer import SessionTracer

TOOL = {"type": "function", "function": {"name": "act", "description": "Act",
                                         "parameters": {"type": "object", "properties": {}}}}


def text(role: str, content: str, **extra: Any) -> dict:
    """An LLMMessage dict with one text part."""
    return {"role": role, "parts": [{"type": "text", "text": content}], **extra}


def call(inputs: list[dict], output: str | None = "ok", *, tool_calls: list[dict] | None = None,
         model: str = "model-a", outcome: str | None = "success", tools: list | None = None,
         parallel: bool | None = None, call_id: str | None = None, **extra: Any) -> dict:
    """A call-record dict: `inputs` (LLMMessage dicts), text output, output tool calls (ToolCallSpec dicts)."""
    raw: dict[str, Any] = {}
    if tools is not None:
        raw["tools"] = tools
    if parallel is not None:
        raw["parallel_tool_calls"] = parallel
    record: dict[str, Any] = {
        "call_id": call_id or f"call-{abs(hash((json.dumps(inputs), output))) % 10**12}",
        "model_name": model,
        "provider": "test",
        "request_params": {"raw_params": raw},
        "input_messages": inputs,
        "output_messages": [text("assistant", output)] if output is not None else [],
        "output_tool_calls": tool_calls or [],
        "outcome": outcome,
    }
    record.update(extra)
    return record


def conversation_calls(turns: int, *, model: str = "model-a", prefix: str = "", tools: list | None = None,
                       tool_call_every: int = 2) -> list[dict]:
    """An agent that keeps its history (text only) and makes a tool call every other turn."""
    history = [text("system", f"{prefix}You are a test agent.")]
    records = []
    for t in range(turns):
        history.append(text("user", f"{prefix}observation {t}"))
        answer = f"{prefix}answer {t}"
        calls = None
        if t % tool_call_every == 1:
            calls = [{"name": "act", "arguments_json": json.dumps({"step": t}), "call_id": f"c{t}"}]
        records.append(call(list(history), answer, tool_calls=calls, model=model, tools=tools,
                            call_id=f"{prefix}call{t}"))
        history.append(text("assistant", answer))
    return records


def make_db(path: Path | str, sessions: list[dict]) -> Path:
    """Write sessions with the project's tracer.

    Each session: {"id", "metadata", "experiment": (id, name), "calls": [record dicts],
    "rewards": [floats], "achievements": {name: bool} (last environment state), "cost_usd": float per call}.
    """
    path = Path(path)
    with SessionTracer(path) as tracer:
        seen_experiments = set()
        for s in sessions:
            exp = s.get("experiment")
            if exp and exp[0] not in seen_experiments:
                tracer.create_experiment(exp[0], exp[1])
                seen_experiments.add(exp[0])
            with tracer.session(session_id=s.get("id"), metadata=s.get("metadata") or {},
                                experiment_id=exp[0] if exp else None):
                calls = s.get("calls") or []
                rewards = s.get("rewards") or [0.0] * len(calls)
                for i, record in enumerate(calls):
                    with tracer.timestep(f"step_{i}", turn_number=i):
                        rec = record if isinstance(record, LLMCallRecord) else LLMCallRecord.from_dict(record)
                        tracer.record_llm_call(rec, system_instance_id="agent", cost_usd=s.get("cost_usd"))
                        state = {"public_state": {"achievements_status": s.get("achievements") or {}}}
                        tracer.record_event(EnvironmentEvent(system_instance_id="env",
                                                             reward=rewards[i] if i < len(rewards) else 0.0,
                                                             terminated=i == len(calls) - 1,
                                                             system_state_after=state))
    return path


def read_jsonl(path: Path | str) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
