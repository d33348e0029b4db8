"""`synth-ai session ID`: one session rendered for a person, step by step (like `llm logs`)."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

from synth_cli.commands._index import SUMMARIES
from synth_cli.commands._inspect import db_option, fmt_ms, fmt_reward, help_text
from synth_cli.output import fmt_int, fmt_time, fmt_usd, get_output

PREVIEW_CHARS = 300


def session_command(
    ident: str = typer.Argument(..., metavar="ID", help="Session ID; a unique prefix is enough."),
    db: Optional[List[str]] = db_option(),
    full: bool = typer.Option(False, "--full",
                              help="Show each LLM call's whole input conversation, not only what is new since "
                                   "the previous call."),
) -> None:
    """One session rendered for a person (see HELP)."""
    from synth_cli.commands._inspect import opened, read_targets
    from synth_cli.store import sessions as queries

    out = get_output()
    targets = read_targets(db)
    with opened(targets) as stores:
        store, session_id = queries.resolve_session([s for _, s in stores], ident)
        label = next(t.label for t, s in stores if s is store)
        detail = queries.session_detail(store, session_id)
    detail.db = label
    data = detail.to_dict()
    out.result(data, lambda: _render(detail, out, full=full))
    if detail.malformed_call_records:
        out.warn(f"{detail.malformed_call_records} call_records value(s) could not be parsed and were skipped "
                 f"(events: {', '.join(str(e.id) for e in detail.events if e.malformed_call_records)})")


# --------------------------------------------------------------------------- rendering


class _Printer:
    def __init__(self, out: Any):
        self.out = out
        self.styled = out.is_terminal

    def heading(self, text: str, style: str = "bold") -> None:
        if self.styled:
            from rich.text import Text

            self.out.print(Text(text, style=style))
        else:
            self.out.line(text)

    def line(self, text: str = "", indent: int = 0) -> None:
        pad = " " * indent
        lines = str(text).split("\n")  # only newlines: a CR or form feed in data is shown, not obeyed
        self.out.line(pad + lines[0])
        for extra in lines[1:]:
            self.out.line(pad + "  " + extra)


def _render(detail: Any, out: Any, *, full: bool) -> None:
    p = _Printer(out)
    p.heading(f"Session {detail.session_id}", "bold cyan")
    pairs = [("DB", detail.db), ("created", fmt_time(detail.created_at))]
    if detail.experiment_id or detail.experiment_name:
        name = detail.experiment_name or "(unnamed)"
        pairs.append(("experiment", f"{name} ({detail.experiment_id})" if detail.experiment_id else name))
    if isinstance(detail.metadata, dict) and detail.metadata:
        pairs.append(("metadata", "  ".join(f"{k}={_short_value(v)}" for k, v in detail.metadata.items())))
    elif detail.metadata:
        pairs.append(("metadata", _clip(str(detail.metadata))))
    width = max(len(k) for k, _ in pairs)
    for key, value in pairs:
        p.line(f"{key.ljust(width)}  {value}", indent=2)
    if not detail.call_records:
        p.line("LLM call records: not stored in this DB (written before events.call_records); "
               "showing the messages table", indent=2)

    state = {"prev": [], "tools": None}
    for step in detail.timesteps:
        p.line()
        title = f"Step {step.step_id}" if step.step_id else "Events outside any timestep"
        bits = [title]
        if step.turn_number is not None:
            bits.append(f"turn {step.turn_number}")
        if step.started_at:
            bits.append(fmt_time(step.started_at))
        p.heading(" · ".join(bits), "bold")
        shown_calls = False
        for event in step.events:
            if event.event_type == "cais":
                shown_calls |= _render_cais(p, event, state, full=full)
            elif event.event_type == "environment":
                _render_env(p, event)
            else:
                _render_other(p, event)
        if not shown_calls and step.messages:
            for message in step.messages:
                p.line(f"{message['type']}: {_message_text(message['content'])}", indent=4)

    totals = detail.totals()
    p.line()
    p.heading("Totals", "bold")
    by_type = ", ".join(f"{fmt_int(n)} {t}" for t, n in totals["events_by_type"].items() if n)
    p.line(f"steps {fmt_int(totals['steps'])} · events {fmt_int(totals['events'])}"
           + (f" ({by_type})" if by_type else "") + f" · messages {fmt_int(totals['messages'])}", indent=2)
    calls = "n/a" if totals["llm_calls"] is None else fmt_int(totals["llm_calls"])
    tools = "" if totals["tool_calls"] is None else f" · tool calls {fmt_int(totals['tool_calls'])}"
    latency = ""
    if totals["latency_ms"] is not None:
        latency = f" · latency {fmt_ms(totals['latency_ms'])} (avg {fmt_ms(totals['avg_latency_ms'])})"
    p.line(f"LLM calls {calls}{tools} · tokens {fmt_int(totals['total_tokens'])} "
           f"({fmt_int(totals['input_tokens'])} in / {fmt_int(totals['output_tokens'])} out) · "
           f"cost {fmt_usd(totals['cost_usd'])}{latency}", indent=2)
    ended = {True: "yes", False: "no", None: "–"}[totals["terminated"]]
    p.line(f"reward {fmt_reward(totals['reward'])} · terminated {ended}", indent=2)
    if totals["malformed_call_records"]:
        p.line(f"malformed call_records skipped: {fmt_int(totals['malformed_call_records'])}", indent=2)


def _render_cais(p: _Printer, event: Any, state: dict, *, full: bool) -> bool:
    """An LM event: its call records (or its columns when there are none). True when calls were shown."""
    if not event.calls:
        bits = [f"LLM event · {event.model or 'unknown model'}" + (f" ({event.provider})" if event.provider else "")]
        if event.latency_ms is not None:
            bits.append(fmt_ms(event.latency_ms))
        if event.input_tokens is not None or event.output_tokens is not None:
            bits.append(f"{fmt_int(event.input_tokens)} in / {fmt_int(event.output_tokens)} out tokens")
        if event.cost_usd:
            bits.append(fmt_usd(event.cost_usd))
        if event.malformed_call_records:
            bits.append("call_records malformed (skipped)")
        p.line(" · ".join(bits), indent=2)
        return False
    for record in event.calls:
        _render_call(p, record, state, full=full)
    return True


def _render_call(p: _Printer, record: Any, state: dict, *, full: bool) -> None:
    model = record.model_name or "unknown model"
    bits = [f"LLM call · {model}" + (f" ({record.provider})" if record.provider else "")]
    if record.latency_ms is not None:
        bits.append(fmt_ms(record.latency_ms))
    usage = record.usage
    if usage is not None:
        if usage.input_tokens is not None or usage.output_tokens is not None:
            bits.append(f"{fmt_int(usage.input_tokens)} in / {fmt_int(usage.output_tokens)} out tokens")
        if usage.cost_usd is not None:
            bits.append(fmt_usd(usage.cost_usd))
    if record.finish_reason:
        bits.append(f"finish {record.finish_reason}")
    if not record.succeeded:
        bits.append(f"outcome {record.outcome}")
    p.line(" · ".join(bits), indent=2)

    tools = _tool_names(record)
    if tools and tools != state["tools"]:
        p.line("tools offered: " + ", ".join(tools), indent=4)
    state["tools"] = tools

    keys = [(m.role, m.text) for m in record.input_messages]
    start = 0
    if not full:
        prev = state["prev"]
        while start < len(keys) and start < len(prev) and keys[start] == prev[start]:
            start += 1
        if start:
            p.line(f"… {start} earlier message{'s' if start != 1 else ''}", indent=4)
    for message in record.input_messages[start:]:
        p.line(f"{message.role}: {_llm_message_text(message)}", indent=4)
    if record.input_text and not record.input_messages:
        p.line(f"prompt: {record.input_text}", indent=4)
    for message in record.output_messages:
        text = _llm_message_text(message)
        if text:
            p.line(f"{message.role}: {text}", indent=4)
    if record.output_text and not record.output_messages:
        p.line(f"assistant: {record.output_text}", indent=4)
    for call in record.output_tool_calls:
        p.line(f"→ tool call {call.name}({_arguments(call)})" + (f" [{call.call_id}]" if call.call_id else ""),
               indent=4)
    for result in record.tool_results:
        status = f" ({result.status})" if result.status else ""
        p.line(f"← tool result{status} [{result.call_id}]: {_clip(result.output_text or result.error_message or '')}",
               indent=4)
    if record.error:
        message = record.error.get("message") if isinstance(record.error, dict) else record.error
        p.line(f"error: {_clip(str(message))}", indent=4)
    state["prev"] = keys + [(m.role, m.text) for m in record.output_messages]


def _render_env(p: _Printer, event: Any) -> None:
    bits = [f"environment {event.system or ''}".rstrip(), f"reward {fmt_reward(event.reward)}"]
    if event.terminated:
        bits.append("terminated")
    if event.truncated:
        bits.append("truncated")
    achievements = _achievements(event.state_after)
    if achievements is not None:
        bits.append("achievements: " + (", ".join(achievements) if achievements else "none"))
    p.line(" · ".join(bits), indent=2)


def _render_other(p: _Printer, event: Any) -> None:
    text = f"{event.event_type} {event.system or ''}".rstrip()
    meta = event.metadata if isinstance(event.metadata, dict) else {}
    if "actions" in meta:
        text += f" · actions {_short_value(meta['actions'])}"
    p.line(text, indent=2)


# --------------------------------------------------------------------------- small helpers


def _tool_names(record: Any) -> list[str]:
    raw = record.request_params.raw_params if record.request_params else {}
    tools = raw.get("tools") if isinstance(raw, dict) else None
    names = []
    for tool in tools or []:
        if isinstance(tool, dict):
            fn = tool.get("function") if isinstance(tool.get("function"), dict) else tool
            names.append(str(fn.get("name") or tool.get("type") or "?"))
    return names


def _arguments(call: Any) -> str:
    from synth_cli._json import dumps, loads

    if call.arguments_json:
        try:
            return dumps(loads(call.arguments_json))
        except ValueError:
            return call.arguments_json
    if call.arguments is not None:
        return dumps(call.arguments)
    return ""


def _llm_message_text(message: Any) -> str:
    chunks = []
    for part in message.parts:
        if part.type == "text":
            chunks.append(part.text or "")
        else:
            size = f" {part.size_bytes:,} B" if part.size_bytes else ""
            mime = f" {part.mime_type}" if part.mime_type else ""
            chunks.append(f"[{part.type}{mime}{size}]")
    text = "".join(chunks)
    if message.tool_call_id:
        text = f"[{message.tool_call_id}] {text}"
    return text


def _message_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    from synth_cli._json import dumps

    return dumps(content)


def _achievements(state: Any) -> list[str] | None:
    if not isinstance(state, dict):
        return None
    public = state.get("public_state") if isinstance(state.get("public_state"), dict) else state
    status = public.get("achievements_status") if isinstance(public, dict) else None
    if not isinstance(status, dict):
        return None
    return [name for name, unlocked in status.items() if unlocked]


def _short_value(value: Any) -> str:
    if isinstance(value, str):
        return value
    from synth_cli._json import dumps

    return _clip(dumps(value), 120)


def _clip(text: str, limit: int = PREVIEW_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


HELP = help_text(
    "One session: metadata, each timestep with its LLM calls (messages, tool calls with arguments, "
    "usage, latency), environment rewards, and totals.",
    "Every call record stores the conversation so far; by default a call shows only the messages that "
    "are new since the previous call (--full shows all). --json prints the whole session, call records "
    "included. A call_records value that does not parse is skipped and counted.",
)


def register(app: typer.Typer) -> None:
    app.command("session", help=HELP, short_help=SUMMARIES["session"])(session_command)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'session': [
        ('synth-ai session 36f675cc',
         "One session by a unique ID prefix: each step's LLM calls, tool calls, rewards."),
        ('synth-ai session 36f675cc --full --db traces.db',
         "Every call's whole input conversation."),
    ],
}
