"""`synth-ai proxy` in front of `synth-ai serve`'s simulated model (the offline upstream), driven
by the official SDKs: what the SDK got is what was recorded, streamed or not, tools included, and
serve's key checks see the client's own auth headers."""

from __future__ import annotations

import json

import pytest
from helpers.devserver import running_server
from helpers.proxy import running_proxy
from helpers import run_cli

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

TOOL = {"type": "function", "function": {"name": "move", "description": "Move the agent",
                                         "parameters": {"type": "object", "properties": {
                                             "direction": {"type": "string", "enum": ["north", "south"]}},
                                             "required": ["direction"]}}}


def _examples(db, tmp_path, *extra) -> list[list[dict]]:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.jsonl"
    result = run_cli("filter", "--db", str(db), "-o", str(out), *extra)
    assert result.exit_code == 0, result.output
    return [json.loads(line)["messages"] for line in out.read_text().splitlines()]


def test_openai_and_anthropic_sdks_through_the_proxy_to_serve(tmp_path):
    db = tmp_path / "traces.db"
    with running_server(tmp_path, seed=3) as srv, running_proxy(tmp_path, srv.base_url, db) as px:
        oa = openai.OpenAI(base_url=px.openai_url, api_key=srv.api_key, max_retries=0,
                           default_headers={"X-Synth-Session-Id": "serve-openai"})
        msgs = [{"role": "user", "content": "where to go?"}]
        plain = oa.chat.completions.create(model="sim-1", messages=msgs, seed=1)
        chunks = list(oa.chat.completions.create(model="sim-1", messages=msgs, seed=1, stream=True))
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == plain.choices[0].message.content  # serve is deterministic: the twin says the same
        tool = oa.chat.completions.create(model="sim-1", messages=msgs, tools=[TOOL], seed=2)
        call = tool.choices[0].message.tool_calls[0]
        assert call.function.name == "move"
        with pytest.raises(openai.AuthenticationError):  # serve checks the client's key, passed through
            openai.OpenAI(base_url=px.openai_url, api_key="sk-wrong-key-000000000000", max_retries=0) \
                .chat.completions.create(model="sim-1", messages=msgs)

        an = anthropic.Anthropic(base_url=px.url, api_key=srv.api_key, max_retries=0,
                                 default_headers={"X-Synth-Session-Id": "serve-claude"})
        m = an.messages.create(model="sim-claude", max_tokens=40, messages=msgs)
        with an.messages.stream(model="sim-claude", max_tokens=40, messages=msgs) as stream:
            final = stream.get_final_message()
        assert final.content[0].text == m.content[0].text
        assert px.stop() == 0

    examples = _examples(db, tmp_path)
    assert len(examples) == 3  # the streamed twin is the same example as the plain call: written once
    assert examples[0] == msgs + [{"role": "assistant", "content": plain.choices[0].message.content}]
    got = examples[1][-1]["tool_calls"][0]
    assert examples[1][:-1] == msgs
    assert (got["id"], got["function"]["name"], json.loads(got["function"]["arguments"])) == \
        (call.id, "move", json.loads(call.function.arguments))
    assert examples[2] == msgs + [{"role": "assistant", "content": m.content[0].text}]
    # the failed call (wrong key) is in the default session, recorded as an error, not an example
    import sqlite3

    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT session_id, call_records FROM events WHERE event_type = 'cais'").fetchall()
    outcomes = {(sid, rec["outcome"], (rec.get("error") or {}).get("status_code"))
                for sid, blob in rows for rec in json.loads(blob)}
    assert ("serve-openai", "success", None) in outcomes and ("serve-claude", "success", None) in outcomes
    assert any(sid.startswith("proxy-") and outcome == "error" and status == 401 for sid, outcome, status in outcomes)
