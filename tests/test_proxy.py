"""`synth-ai proxy` driven by the official `openai` and `anthropic` SDKs, as an agent would use it:
a real proxy process between the SDK and a real upstream on 127.0.0.1 (tests/helpers/upstream.py), then
`synth-ai filter` on what it recorded."""

from __future__ import annotations

import base64
import json
import sqlite3

import httpx
import pytest
from helpers.proxy import running_proxy
from helpers.upstream import running_upstream
from helpers import run_cli

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

KEY = "sk-test-proxy-0123456789abcdef"
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32).decode()
TOOL = {"type": "function", "function": {"name": "search", "description": "Search the web",
                                         "parameters": {"type": "object", "properties": {"q": {"type": "string"}},
                                                        "required": ["q"]}}}
A_TOOL = {"name": "search", "description": "Search the web",
          "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}


@pytest.fixture(scope="module")
def upstream():
    with running_upstream() as up:
        yield up


def _filter(db, tmp_path, *extra) -> list[dict]:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.jsonl"
    result = run_cli("filter", "--db", str(db), "-o", str(out), *extra)
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in out.read_text().splitlines()]


def _records(db) -> list[tuple[str, dict]]:
    """(session_id, call record) of every cais event, in call order."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT session_id, call_records FROM events WHERE event_type = 'cais' ORDER BY id")
        return [(sid, rec) for sid, blob in rows for rec in json.loads(blob)]


def _events(db, session_id: str) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT event_type, reward, terminated FROM events WHERE session_id = ? ORDER BY id",
                            (session_id,)).fetchall()


def test_openai_sdk_plain_streamed_tools_images_are_recorded_and_filter_gives_the_conversations(tmp_path,
                                                                                                upstream):
    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, upstream.base_url + "/v1", db) as px:
        client = openai.OpenAI(base_url=px.openai_url, api_key=KEY, max_retries=0,
                               default_headers={"X-Synth-Session-Id": "run-openai-1"})
        conversations = []
        plain = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello there"}]
        r = client.chat.completions.create(model="gpt-test", messages=plain)
        assert r.choices[0].message.content == "echo: hello there"
        conversations.append(plain + [{"role": "assistant", "content": "echo: hello there"}])

        streamed = [{"role": "user", "content": "tell me a story"}]
        chunks = list(client.chat.completions.create(model="gpt-test", messages=streamed, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == "echo: tell me a story"
        assert chunks[-1].usage.completion_tokens == 3
        conversations.append(streamed + [{"role": "assistant", "content": text}])

        tools_msgs = [{"role": "user", "content": "please use tool for cats"}]
        r = client.chat.completions.create(model="gpt-test", messages=tools_msgs, tools=[TOOL])
        call = r.choices[0].message.tool_calls[0]
        assert call.function.name == "search" and json.loads(call.function.arguments) == {"q": "please use tool for cats"}
        assistant = {"role": "assistant", "content": None, "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": "search", "arguments": call.function.arguments}}]}
        follow = tools_msgs + [assistant, {"role": "tool", "tool_call_id": call.id, "content": "cats are great"},
                               {"role": "user", "content": "summarise"}]
        stream = client.chat.completions.create(model="gpt-test", messages=follow, tools=[TOOL], stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "echo: summarise"
        conversations.append(tools_msgs + [assistant])
        conversations.append(follow + [{"role": "assistant", "content": text}])

        image = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                              {"type": "image_url",
                                               "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]
        r = client.chat.completions.create(model="gpt-vision", messages=image)
        assert r.choices[0].message.content == "echo: what is this [image_url]"
        conversations.append(image + [{"role": "assistant", "content": r.choices[0].message.content}])

        # a second agent run, no reward: --min-reward leaves it out
        other = openai.OpenAI(base_url=px.url + "/s/run-openai-2/v1", api_key=KEY, max_retries=0)
        other.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "unrewarded"}])

        ok = httpx.post(px.url + "/synth/sessions/run-openai-1/events", json={"reward": 1.0})
        assert ok.status_code == 202, ok.text
        ok = httpx.post(px.url + "/synth/sessions/run-openai-1/end", json={"reward": 0.5, "terminated": True})
        assert ok.status_code == 202, ok.text
        assert px.stop() == 0
    log = px.log()
    assert "6 call(s) recorded in 2 session(s)" in log, log
    assert KEY not in log

    examples = _filter(db, tmp_path, "--min-reward", "1.5")
    assert len(examples) == len(conversations)
    for example, expected in zip(examples, conversations):
        got = example["messages"]
        assert len(got) == len(expected), (got, expected)
        for g, e in zip(got, expected):
            assert g["role"] == e["role"]
            if e["role"] == "assistant" and e.get("tool_calls"):
                assert [(t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
                        for t in g["tool_calls"]] == \
                       [(t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
                        for t in e["tool_calls"]]
            elif isinstance(e["content"], list):
                assert g["content"] == e["content"]
            else:
                assert g.get("content") == e["content"], (g, e)
            if e["role"] == "tool":
                assert g["tool_call_id"] == e["tool_call_id"]
    assert examples[2]["tools"][0]["function"]["name"] == "search"
    assert _events(db, "run-openai-1")[-2:] == [("environment", 1.0, 0), ("environment", 0.5, 1)]
    assert len(_filter(db, tmp_path)) == len(conversations) + 1  # without --min-reward: both sessions
    assert all(KEY not in json.dumps(rec) for _, rec in _records(db))


def test_anthropic_sdk_plain_streamed_tools_images_are_recorded_and_filter_gives_the_conversations(tmp_path,
                                                                                                   upstream):
    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, upstream.base_url, db) as px:
        client = anthropic.Anthropic(base_url=px.url, api_key=KEY, max_retries=0,
                                     default_headers={"X-Synth-Session-Id": "run-claude-1",
                                                      "X-Synth-Experiment-Id": "exp-claude",
                                                      "X-Synth-Metadata": json.dumps({"task": "demo", "seed": 7})})
        m = client.messages.create(model="claude-test", max_tokens=50, system="Be brief.",
                                   messages=[{"role": "user", "content": "hello claude"}])
        assert m.content[0].text == "echo: hello claude"

        with client.messages.stream(model="claude-test", max_tokens=50,
                                    messages=[{"role": "user", "content": "stream please"}]) as stream:
            streamed = stream.get_final_message()
        assert streamed.content[0].text == "echo: stream please"

        tool_msgs = [{"role": "user", "content": "use tool for dogs"}]
        m = client.messages.create(model="claude-test", max_tokens=50, messages=tool_msgs, tools=[A_TOOL])
        use = m.content[0]
        assert use.type == "tool_use" and use.input == {"q": "use tool for dogs"}
        follow = tool_msgs + [{"role": "assistant", "content": [use.model_dump()]},
                              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                            "content": "dogs are loyal"},
                                                           {"type": "text", "text": "and so?"}]}]
        with client.messages.stream(model="claude-test", max_tokens=50, messages=follow, tools=[A_TOOL]) as stream:
            final = stream.get_final_message()
        assert final.content[0].text == "echo: and so? [tool_result]"

        image = [{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "text", "text": "describe"}]}]
        m = client.messages.create(model="claude-vision", max_tokens=50, messages=image)
        assert m.content[0].text == "echo: describe [image]"
        assert httpx.post(px.url + "/synth/sessions/run-claude-1/end", json={"reward": 2}).status_code == 202
        assert px.stop() == 0

    examples = _filter(db, tmp_path, "--min-reward", "2", "--experiment", "exp-claude")
    msgs = [e["messages"] for e in examples]
    assert msgs[0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello claude"},
                       {"role": "assistant", "content": "echo: hello claude"}]
    assert msgs[1] == [{"role": "user", "content": "stream please"},
                       {"role": "assistant", "content": "echo: stream please"}]
    assert msgs[2][0] == {"role": "user", "content": "use tool for dogs"}
    call = msgs[2][1]["tool_calls"][0]
    assert (call["id"], call["function"]["name"], json.loads(call["function"]["arguments"])) == \
        (use.id, "search", {"q": "use tool for dogs"})
    assert [m["role"] for m in msgs[3]] == ["user", "assistant", "tool", "user", "assistant"]
    assert msgs[3][2]["tool_call_id"] == use.id and msgs[3][2]["content"] == "dogs are loyal"
    assert msgs[3][-1]["content"] == "echo: and so? [tool_result]"
    image_parts = msgs[4][0]["content"]
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} in image_parts
    assert {"type": "text", "text": "describe"} in image_parts
    assert msgs[4][1] == {"role": "assistant", "content": "echo: describe [image]"}
    with sqlite3.connect(db) as conn:
        meta, exp = conn.execute("SELECT metadata, experiment_id FROM session_traces").fetchone()
    assert json.loads(meta) == {"task": "demo", "seed": 7} and exp == "exp-claude"


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_a_stream_and_its_unstreamed_twin_give_the_same_record(tmp_path, upstream, api):
    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, upstream.base_url + "/v1", db) as px:
        if api == "openai":
            client = openai.OpenAI(base_url=px.openai_url, api_key=KEY, max_retries=0)
            for stream in (False, True):
                kwargs = {"stream_options": {"include_usage": True}} if stream else {}
                r = client.chat.completions.create(model="gpt-test", stream=stream, tools=[TOOL], **kwargs,
                                                   messages=[{"role": "user", "content": "use tool twice"}])
                if stream:
                    list(r)
        else:
            client = anthropic.Anthropic(base_url=px.url, api_key=KEY, max_retries=0)
            for stream in (False, True):
                r = client.messages.create(model="claude-test", max_tokens=20, stream=stream, tools=[A_TOOL],
                                           messages=[{"role": "user", "content": "use tool twice"}])
                if stream:
                    list(r)
        assert px.stop() == 0
    (_, plain), (_, streamed) = _records(db)
    volatile = ("call_id", "started_at", "completed_at", "latency_ms", "provider_request_id", "request_params")
    assert plain["output_tool_calls"][0]["name"] == "search"
    assert {k: v for k, v in plain.items() if k not in volatile} == \
        {k: v for k, v in streamed.items() if k not in volatile}


def test_other_paths_are_forwarded_unrecorded_and_headers_are_filtered(tmp_path, upstream):
    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, upstream.base_url + "/v1", db) as px:
        direct = httpx.get(upstream.base_url + "/v1/models")
        via = httpx.get(px.openai_url + "/models", headers={"Authorization": f"Bearer {KEY}"})
        assert via.status_code == 200 and via.content == direct.content and via.headers["x-models"] == "1"
        echoed = httpx.post(px.openai_url + "/debug/headers?a=1&b=%20x", content=b"raw body", headers={
            "Authorization": f"Bearer {KEY}", "x-api-key": "ak-123", "X-Custom": "kept",
            "X-Synth-Session-Id": "s1", "X-Synth-Metadata": "{}", "Connection": "keep-alive, X-Drop-Me",
            "X-Drop-Me": "hop", "Keep-Alive": "timeout=5", "TE": "trailers", "Proxy-Authorization": "Basic eA==",
            "Cookie": "mine=1"})
        data = echoed.json()
        got = {k.lower(): v for k, v in data["headers"]}
        assert got["authorization"] == f"Bearer {KEY}" and got["x-api-key"] == "ak-123"
        assert got["x-custom"] == "kept" and got["host"] == f"127.0.0.1:{upstream.port}"
        assert got["cookie"] == "mine=1"  # the client's own cookies pass; the proxy keeps none of the upstream's
        assert got["content-length"] == "8" and data["body"] == "raw body"
        for gone in ("x-synth-session-id", "x-synth-metadata", "x-drop-me", "keep-alive", "te",
                     "proxy-authorization"):
            assert gone not in got, gone
        assert data["path"] == "/v1/debug/headers" and data["query"] == "a=1&b=%20x"
        status = px.status()
        assert status["calls"]["seen"] == 0 and status["sessions"]["open"] == 0
        assert px.stop() == 0


def _raw(method: str, url: str, **kw) -> tuple[int, list[tuple[str, str]], bytes]:
    with httpx.Client() as c, c.stream(method, url, **kw) as r:
        body = b"".join(r.iter_raw())
        return r.status_code, [(k.decode(), v.decode()) for k, v in r.headers.raw], body


@pytest.mark.parametrize("case", ["json", "gzip", "stream", "anthropic-stream", "error-429", "error-500",
                                  "anthropic-429"])
def test_the_answer_reaches_the_client_byte_for_byte_with_its_headers(tmp_path, upstream, case):
    path = "/v1/messages" if case.startswith("anthropic") else "/v1/chat/completions"
    model = {"gzip": "gzip-m", "error-429": "fail-429", "error-500": "fail-500", "anthropic-429": "fail-429"}.get(
        case, "m")
    body = {"model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "bytes please"}],
            "stream": "stream" in case}
    headers = {"Authorization": f"Bearer {KEY}", "Accept-Encoding": "gzip"}
    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, upstream.base_url, db) as px:
        d_status, d_headers, d_body = _raw("POST", upstream.base_url + path, json=body, headers=headers)
        p_status, p_headers, p_body = _raw("POST", px.url + path, json=body, headers=headers)
        assert px.stop() == 0
    assert p_status == d_status and p_body == d_body
    volatile = {"date"}  # the clock

    def stable(hs):
        return [(k.lower(), v) for k, v in hs if k.lower() not in volatile]
    assert stable(p_headers) == stable(d_headers)
    if case == "gzip":
        assert ("content-encoding", "gzip") in p_headers
    assert [v for k, v in p_headers if k == "set-cookie"] == ["a=1; Path=/", "b=2; Path=/"]
    (_, record), = _records(db)
    if d_status >= 400:
        assert record["outcome"] == "error" and record["error"]["status_code"] == d_status
        assert "simulated" in record["error"]["message"]
    else:
        assert record["outcome"] == "success"
        assert record["output_messages"][0]["parts"][0]["text"] == "echo: bytes please"


def test_upstream_failures_are_passed_through_and_recorded_as_failed_calls(tmp_path, upstream):
    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, upstream.base_url + "/v1", db) as px:
        client = openai.OpenAI(base_url=px.openai_url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="fail-429", messages=[{"role": "user", "content": "x"}])
        assert err.value.response.headers["retry-after"] == "0"
        assert err.value.body["code"] == "sim_429"
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="fail-500", messages=[{"role": "user", "content": "y"}])
        with pytest.raises(openai.APIError):  # an error event inside a 200 stream
            list(client.chat.completions.create(model="fail-stream", stream=True,
                                                messages=[{"role": "user", "content": "one two three"}]))
        a = anthropic.Anthropic(base_url=px.url, api_key=KEY, max_retries=0)
        with pytest.raises(anthropic.RateLimitError):
            a.messages.create(model="fail-429", max_tokens=5, messages=[{"role": "user", "content": "z"}])
        assert px.stop() == 0
    records = [r for _, r in _records(db)]
    assert [r["outcome"] for r in records] == ["error"] * 4
    assert [r["error"].get("status_code") for r in records] == [429, 500, 200, 429]
    assert records[0]["error"]["code"] == "sim_429" and records[0]["error"]["type"] == "rate_limit_error"
    assert records[2]["error"]["message"] == "simulated stream failure"
    assert records[3]["provider"] == "anthropic" and records[3]["error"]["type"] == "rate_limit_error"
    assert records[0]["input_messages"][0]["parts"][0]["text"] == "x"


def test_an_unreachable_upstream_is_a_502_recorded_as_a_failed_call(tmp_path):
    from helpers.devserver import free_port

    db = tmp_path / "traces.db"
    with running_proxy(tmp_path, f"http://127.0.0.1:{free_port()}/v1", db) as px:
        client = openai.OpenAI(base_url=px.openai_url, api_key=KEY, max_retries=0)
        with pytest.raises(openai.APIStatusError) as err:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "anyone?"}])
        assert err.value.status_code == 502 and "upstream unreachable" in err.value.message
        assert px.stop() == 0
    (_, record), = _records(db)
    assert record["outcome"] == "error" and record["error"]["status_code"] == 502
    assert record["error"]["type"] == "upstream_unreachable"


OPENAI_SCRIPT = '''
from openai import OpenAI

client = OpenAI()  # OPENAI_BASE_URL and OPENAI_API_KEY from the environment: nothing synth-specific
history = [{"role": "user", "content": "first question"}]
answer = client.chat.completions.create(model="gpt-test", messages=history).choices[0].message.content
history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "second question"}]
stream = client.chat.completions.create(model="gpt-test", messages=history, stream=True)
print("".join(c.choices[0].delta.content or "" for c in stream if c.choices))
'''

ANTHROPIC_SCRIPT = '''
import anthropic

client = anthropic.Anthropic()  # ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY from the environment
history = [{"role": "user", "content": "first question"}]
answer = client.messages.create(model="claude-test", max_tokens=64, messages=history).content[0].text
history += [{"role": "assistant", "content": answer}, {"role": "user", "content": "second question"}]
with client.messages.stream(model="claude-test", max_tokens=64, messages=history) as stream:
    print(stream.get_final_text())
'''


@pytest.mark.parametrize("api", ["openai", "anthropic"])
def test_an_unmodified_sdk_script_is_traced_and_its_session_filters_into_the_conversation(tmp_path, upstream, api):
    import os
    import subprocess
    import sys

    db = tmp_path / "traces.db"
    script = tmp_path / "agent.py"
    script.write_text(OPENAI_SCRIPT if api == "openai" else ANTHROPIC_SCRIPT)
    with running_proxy(tmp_path, upstream.base_url, db) as px:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_"))}
        env.update({"OPENAI_BASE_URL": px.openai_url, "OPENAI_API_KEY": KEY} if api == "openai" else
                   {"ANTHROPIC_BASE_URL": px.url, "ANTHROPIC_API_KEY": KEY})
        done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120,
                              check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "echo: second question"
        assert px.stop() == 0
    expected = [{"role": "user", "content": "first question"},
                {"role": "assistant", "content": "echo: first question"},
                {"role": "user", "content": "second question"},
                {"role": "assistant", "content": "echo: second question"}]
    assert [e["messages"] for e in _filter(db, tmp_path)] == [expected[:2], expected]
    assert [e["messages"] for e in _filter(db, tmp_path, "--mode", "sessions")] == [expected]
    (sid, _), (sid2, _) = _records(db)
    assert sid == sid2 and sid.startswith("proxy-") and sid.endswith("-127.0.0.1-1")
