"""`filter` with each history message parsed, converted, checked, scrubbed and written once per
session (synth_cli/dataset/history.py) writes the bytes and the stats of the general path, which
handles every call record on its own, on shapes chosen to break each shortcut."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers.filterdb import call, make_db, text
from helpers import FIXTURE_DB, ROOT, invoke
from synth_cli.dataset import history as hist
from synth_cli.dataset.history import History

SHAPES_DB = ROOT / "tests" / "fixtures" / "published" / "shapes.db"
TOOLS = [{"type": "function", "function": {"name": "act", "description": "Act",
                                           "parameters": {"type": "object", "properties": {}}}}]
SECRET = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4"
IMAGE = {"type": "image", "base64_data": "iVBORw0KGgo=", "mime_type": "image/png"}


def _agent(turns: int, *, prefix: str = "", tools: list | None = TOOLS, extra_user: Any = None,
           every: int = 2, name: str | None = None, tool_results: bool = False,
           parallel: bool | None = None) -> list[dict]:
    """Records of an agent that resends its whole history; `extra_user(t)` gives a turn's user parts."""
    history: list[dict] = [text("system", f"{prefix}You are a test agent.")]
    records = []
    for t in range(turns):
        parts = extra_user(t) if extra_user else None
        user = {"role": "user", "parts": parts} if parts else text("user", f"{prefix}observation {t}")
        if name:
            user["name"] = name
        history.append(user)
        answer = f"{prefix}answer {t}"
        calls = None
        if t % every == 1:
            calls = [{"name": "act", "arguments_json": json.dumps({"step": t}), "call_id": f"{prefix}c{t}"}]
        records.append(call(list(history), answer, tool_calls=calls, tools=tools, parallel=parallel,
                            call_id=f"{prefix}call{t}", schema_version="1.0"))
        history.append(text("assistant", answer))
        if tool_results and calls:
            history.append({"role": "tool", "parts": [{"type": "text", "text": f"result {t}"}],
                            "tool_call_id": f"{prefix}c{t}"})
    return records


def _db(path: Path, sessions: dict[str, list], interleave: bool = False) -> Path:
    """A trace DB whose sessions' cais events hold exactly these row texts (str: as is; list: orjson)."""
    make_db(path, [{"id": sid, "calls": [call([text("user", "x")], "y") for _ in rows]}
                   for sid, rows in sessions.items()])
    conn = sqlite3.connect(path)
    ids = {sid: [r[0] for r in conn.execute("SELECT id FROM events WHERE event_type = 'cais' AND session_id = ? "
                                             "ORDER BY id", (sid,))] for sid in sessions}
    for sid, rows in sessions.items():
        for event_id, row in zip(ids[sid], rows):
            blob = row if isinstance(row, str) else orjson.dumps(row).decode()
            conn.execute("UPDATE events SET call_records = ? WHERE id = ?", (blob, event_id))
    if interleave:  # the sessions' events one of each in turn, not one session after the other
        rows = conn.execute("SELECT id, session_id FROM events ORDER BY id").fetchall()
        place: dict[str, int] = {}
        new = []
        for event_id, sid in rows:
            place[sid] = place.get(sid, 0) + 1
            new.append((event_id, place[sid] * 10_000 + list(sessions).index(sid) if sid in sessions else event_id))
        conn.execute("UPDATE events SET id = -id")
        for event_id, new_id in new:
            conn.execute("UPDATE events SET id = ? WHERE id = ?", (new_id + 1_000_000, -event_id))
    conn.commit()
    conn.close()
    return path


def _each(records: list[dict]) -> list[list[dict]]:
    return [[r] for r in records]


def _shapes() -> dict[str, list]:
    s: dict[str, list] = {}
    s["plain"] = _each(_agent(12))
    s["plain-copy"] = _each(_agent(12))  # the same examples again: de-duplicated
    s["secret-in-history"] = _each(_agent(8, extra_user=lambda t: [
        {"type": "text", "text": f"the key is {SECRET}" if t == 2 else f"observation {t}"}], prefix="sec "))
    s["secret-in-tools"] = _each(_agent(6, tools=[{"type": "function", "function": {
        "name": "act", "description": f"token={SECRET}", "parameters": {"type": "object"}}}], prefix="tools "))
    s["pii"] = _each(_agent(5, extra_user=lambda t: [
        {"type": "text", "text": f"mail me at a{t}@example.com or +1 415 555 01{t:02d}"}], prefix="pii "))
    s["images"] = _each(_agent(6, extra_user=lambda t: [{"type": "text", "text": f"look {t}"}, IMAGE],
                               prefix="img "))
    s["named"] = _each(_agent(6, name="player", prefix="named "))
    s["tool-results"] = _each(_agent(8, tool_results=True, prefix="tr "))
    single = _agent(5, parallel=False, prefix="np ")
    for r in single[1::2]:  # two calls where parallel_tool_calls is false: invalid
        r["output_tool_calls"] = [{"name": "act", "arguments_json": "{}", "call_id": f"{r['call_id']}-{k}"}
                                  for k in range(2)]
    s["no-parallel"] = _each(single)
    # an assistant turn of the history whose tool call does not parse: every later example invalid
    broken = _agent(6, prefix="broken ")
    for r in broken[2:]:
        r["input_messages"][4] = {**r["input_messages"][4], "tool_calls": [
            {"name": "act", "arguments_json": "{not json", "call_id": "zz"}]}
    s["broken-history"] = _each(broken)
    # roles with no equivalent and parts with none (counted in skipped_parts on every call that holds them)
    odd = _agent(7, prefix="odd ")
    for i, r in enumerate(odd):
        r["input_messages"] = [*r["input_messages"][:2], {"role": "critic", "parts": [text("x", "meh")["parts"][0]]},
                               {"role": "assistant", "parts": [{"type": "text", "text": "hm"}, IMAGE,
                                                               {"type": "thinking", "text": "..."}]},
                               *r["input_messages"][2:]]
        r["output_tool_calls"] = [{"name": "act", "arguments_json": "{}"}] if i % 2 else []  # no call id
    s["odd"] = _each(odd)
    # a history cut short mid-session (an agent summarising), then growing again
    cut = _agent(10, prefix="cut ")
    for r in cut[5:]:
        r["input_messages"] = [r["input_messages"][0], *r["input_messages"][-3:]]
    s["cut"] = _each(cut)
    # a malformed message arriving in the new part of a history, then the session goes on
    bad = _agent(8, prefix="bad ")
    for r in bad[4:]:
        r["input_messages"][9] = {"role": "user", "parts": 42}
    bad[6]["input_messages"] = "not a list"
    s["bad"] = _each(bad)
    # a model the --model filter drops on some calls; error outcomes
    mixed = _agent(8, prefix="mixed ")
    for i, r in enumerate(mixed):
        r["model_name"] = "model-b" if i % 3 == 1 else "model-a"
        if i == 5:
            r["outcome"] = "error"
    s["mixed"] = _each(mixed)
    # two records in one row
    two = _agent(6, prefix="two ")
    s["two-per-row"] = [two[0:1], two[1:3], two[3:4], two[4:6]]
    # rows written by another JSON writer (spaces, \u escapes): the messages never match as text
    other = _agent(6, prefix="ß other ")
    s["other-writer"] = [json.dumps([r]) for r in other]
    # a key spelled with an escape, a duplicate key: the text after the history is not what it seems
    tricky = _agent(7, prefix="tricky ")
    rows: list = _each(tricky)
    t4 = orjson.dumps(rows[4]).decode()
    rows[4] = t4[:-2] + ',"input\\u005fmessages":' + orjson.dumps(tricky[4]["input_messages"][-2:]).decode() + "}]"
    t5 = orjson.dumps(rows[5]).decode()
    rows[5] = t5[:-2] + ',"input_messages":' + orjson.dumps(tricky[5]["input_messages"][-1:]).decode() + "}]"
    t6 = orjson.dumps(rows[6]).decode()
    rows[6] = t6.replace('"input_messages":', '"input\\u005fmessages":', 1)
    s["tricky"] = rows
    # equal as Python values, written differently: 1, 1.0 and true in a history message's tool call
    # arguments, rows by another writer (so no row is cut and the history is compared as values)
    flip = _agent(6, prefix="flip ")
    for i, r in enumerate(flip[1:]):  # message 2: the first answer, in every history after the first call
        r["input_messages"][2] = {**r["input_messages"][2], "tool_calls": [
            {"name": "act", "arguments": {"n": [1, 1.0, True][i % 3]}, "call_id": "f1"}]}
    s["equal-not-same"] = [json.dumps([r]) for r in flip]
    # a session whose history holds the key itself
    meta = _agent(5, prefix="meta ")
    for r in meta:
        r["input_messages"][0]["metadata"] = {"input_messages": 1}
    s["key-in-history"] = _each(meta)
    return s


@pytest.fixture(scope="module")
def shapes_db(tmp_path_factory) -> Path:
    return _db(tmp_path_factory.mktemp("history") / "shapes.db", _shapes())


@pytest.fixture(scope="module")
def interleaved_db(tmp_path_factory) -> Path:
    sessions = {f"s{i}": _each(_agent(6, prefix=f"s{i} ", every=3)) for i in range(6)}
    return _db(tmp_path_factory.mktemp("history") / "interleaved.db", sessions, interleave=True)


def _general(monkeypatch) -> None:
    """Every call record parsed and converted on its own (the history never used)."""
    monkeypatch.setattr(History, "parse", lambda self, text: orjson.loads(text))
    monkeypatch.setattr(History, "owns", lambda self, record: False)


def _run(db: Path, out: Path, *args: str) -> tuple[bytes, bytes | None, dict]:
    result = invoke("filter", "--db", str(db), "-o", str(out), "--json", *args)
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    for key in ("elapsed_s", "output", "val_output", "manifest"):
        data.pop(key, None)
    val = out.with_name(out.stem + ".val.jsonl")
    return out.read_bytes(), val.read_bytes() if val.exists() else None, data


OPTIONS = [(), ("--no-redact",), ("--redact", "pii", "--include-metadata"), ("--val-fraction", "0.3"),
           ("--model", "model-a"), ("--include-errors",)]


@pytest.mark.parametrize("mode", ["calls", "sessions"])
@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: " ".join(o) or "default")
def test_history_writes_what_each_record_on_its_own_writes(tmp_path, monkeypatch, shapes_db, mode, options):
    used = {"calls": 0, "cut": 0}
    call_fast, parse = History.call, History.parse

    def counted_call(self, record, skipped):
        used["calls"] += 1
        return call_fast(self, record, skipped)

    def counted_parse(self, text):
        before = self.raw
        records = parse(self, text)
        if before and self.raw is not None and self.raw[:len(before)] == before and self.cut \
                and records is not None and self.raw is not before:
            used["cut"] += 1
        return records

    with monkeypatch.context() as m:
        m.setattr(History, "call", counted_call)
        m.setattr(History, "parse", counted_parse)
        fast = {w: _run(shapes_db, tmp_path / f"fast{w}.jsonl", "--mode", mode, "--workers", str(w), *options)
                for w in (1, 2)}
    _general(monkeypatch)
    general = _run(shapes_db, tmp_path / "general.jsonl", "--mode", mode, "--workers", "1", *options)
    assert general[0]
    assert fast[1] == general
    assert fast[2] == general
    if mode == "calls":
        assert used["calls"] > 50  # the shortcut was taken (in this process: --workers 1)
    assert used["cut"] > 50


def test_the_shapes_hold_what_the_shortcuts_must_not_miss(tmp_path, shapes_db):
    """The test DB does exercise redaction in history and tools, skipped parts, invalid examples,
    malformed rows, de-duplication, restored tool calls and images (else the comparison proves little)."""
    _, _, stats = _run(shapes_db, tmp_path / "x.jsonl", "--redact", "pii")
    assert stats["redaction"]["by_kind"].get("openai_key") == 6  # in the history of 6 examples: counted in each
    assert stats["redaction"]["by_kind"].get("secret_assignment") == 6  # in the tools of 6 examples
    assert stats["redaction"]["by_kind"].get("email", 0) > 5
    assert set(stats["skipped_parts"]) >= {"role:critic", "image_in_assistant_message", "thinking"}
    assert stats["examples"]["invalid_dropped"] and stats["malformed_rows"]["count"] >= 2
    assert stats["examples"]["duplicates_removed"] >= 12
    assert stats["examples"]["restored_tool_calls"] > 0
    lines = (tmp_path / "x.jsonl").read_text().splitlines()
    assert any('"image_url"' in line for line in lines)
    assert any('"call_synth_' in line for line in lines)


@pytest.mark.parametrize("mode", ["calls", "sessions"])
def test_interleaved_sessions_beyond_the_open_histories(tmp_path, monkeypatch, interleaved_db, mode):
    monkeypatch.setattr(hist, "OPEN", 3)  # 6 sessions read in turn: histories are dropped and remade
    fast = _run(interleaved_db, tmp_path / "fast.jsonl", "--mode", mode, "--workers", "1")
    _general(monkeypatch)
    general = _run(interleaved_db, tmp_path / "general.jsonl", "--mode", mode, "--workers", "1")
    assert general[0] and fast == general


@pytest.mark.parametrize("db", [FIXTURE_DB, SHAPES_DB], ids=["fixture", "published-shapes"])
@pytest.mark.parametrize("mode", ["calls", "sessions"])
def test_history_on_the_fixtures(tmp_path, monkeypatch, db, mode):
    fast = _run(db, tmp_path / "fast.jsonl", "--mode", mode, "--redact", "pii", "--include-metadata")
    _general(monkeypatch)
    general = _run(db, tmp_path / "general.jsonl", "--mode", mode, "--redact", "pii", "--include-metadata")
    assert general[0] and fast == general


def test_parse_equals_loads_row_after_row() -> None:
    """History.parse gives loads(text) for every row, whatever the row's text does."""
    records = _agent(6)
    texts = [orjson.dumps([r]).decode() for r in records]
    history = History()
    for t in texts:
        assert history.parse(t) == orjson.loads(t)
    assert history.cut and history.canon  # rows are cut: the history's text is remembered
    base = orjson.dumps([_agent(7)[6]]).decode()
    for variant in (
        base,
        base.replace('"input_messages":[', '"input_messages" :[', 1),  # another spelling of the key
        base[:-2] + ',"input_messages":[]}]',  # a duplicate key: the last one counts
        base[:-2] + ',"input\\u005fmessages":[]}]',  # a duplicate spelled with an escape
        base[:-2] + ',"x":"\\u0041"}]',
        base.replace('"role":"system"', '"role":"sys\\u0074em"', 1),
        "[" + base[1:-1] + "," + base[1:-1] + "]",  # two records
        base[1:-1],  # one record, not in a list
        base.replace('"outcome":"success"', '"outcome":', 1),  # not JSON
    ):
        h = History()
        for t in texts:
            h.parse(t)
        try:
            expected = orjson.loads(variant)
        except orjson.JSONDecodeError:
            with pytest.raises(orjson.JSONDecodeError):
                h.parse(variant)
            continue
        assert h.parse(variant) == expected, variant[-200:]
