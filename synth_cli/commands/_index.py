"""Every command of the root: the module that registers it, and its one-line summary.

One definition of each summary: the module's `register(app)` passes `SUMMARIES[name]` as the
command's short help, and the root's `--help` is drawn from here without importing any command
module (`synth_cli.app.build_app(listing=True)`). Order: the order `--help` lists them.
"""

from __future__ import annotations

#: command name → module of synth_cli/commands that registers it
MODULES: dict[str, str] = {
    "traces": "traces", "session": "session",
    "experiments": "experiments", "experiment": "experiments", "recent": "experiments",
    "usage": "usage", "status": "status", "filter": "filter", "sft": "sft", "serve": "serve", "proxy": "proxy",
    "balance": "balance", "calc": "calc", "demo": "demo", "man": "man", "schema": "schema",
}

#: command name → its one line in the root's --help
SUMMARIES: dict[str, str] = {
    "traces": "Inventory of trace DBs: sessions, events, LLM calls, size; merge them.",
    "session": "One session step by step: LLM calls, tool calls, rewards.",
    "experiments": "Experiments with sessions, events, tokens, cost, activity.",
    "experiment": "One experiment and its sessions (reward, steps, tokens, cost).",
    "recent": "Experiments active in the last H hours.",
    "usage": "LLM calls, tokens, cost and latency per model (local traces or --remote).",
    "status": "Trace DB totals and the backend's URL, health and API key.",
    "filter": "Trace DBs → OpenAI fine-tuning JSONL (filters, splits, stats).",
    "sft": "Supervised fine-tuning: validate a dataset, run and follow jobs.",
    "serve": "Run a local OpenAI-compatible fine-tuning backend: a training SIMULATOR.",
    "proxy": "Record every LLM call an agent makes, with no change to the agent: a proxy.",
    "balance": "Account balance in USD and recent spend (tokens, GPU).",
    "calc": "Cost of a call or workload from the price table, or plain arithmetic.",
    "demo": "Run the pipeline end to end, offline: agent → proxy traces → filter → fine-tune → balance.",
    "man": "The manual: commands, environment variables, examples.",
    "schema": "The JSON Schema of a command's --json output.",
}
