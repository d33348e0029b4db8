"""`--json` is a contract (docs/json.md): every command's document validates against the schema
the package ships (`synth-ai schema COMMAND`), and follows the rules the schemas cannot say
alone: an object at the top, RFC 3339 UTC times with `Z`, money as `..._usd` numbers (cents only
under `raw`), one name per concept (`sessions`), and a failure that is a JSON object too."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema  # the `test` extra: a missing validator is a failure, not a skip
import pytest

from helpers import FIXTURE_DB, FIXTURE_DIR, invoke, run_cli
from synth_cli import schemas

TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LOOKS_LIKE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
TIME_KEYS = {"since", "until", "first_activity", "last_activity", "first_used", "last_used", "event_time",
             "estimated_finish"}
#: user data (trace metadata, message text, environment state) is passed through as recorded
DATA_KEYS = {"raw", "metadata", "messages", "state_after", "content", "input_messages", "output_messages",
             "request_params", "extra", "arguments", "tool_results", "filters"}
#: names of one concept: a count of sessions is `sessions`, never `traces` or `runs`
RETIRED = {"traces", "runs", "balance_cents", "balance_dollars"}
_validated: set[str] = set()


def check_rules(doc: Any, path: str = "$") -> None:
    """The rules of docs/json.md a JSON Schema does not state for every key."""
    if path == "$":
        assert isinstance(doc, dict), f"{path}: a document is an object, not {type(doc).__name__}"
    if isinstance(doc, dict):
        for key, value in doc.items():
            where = f"{path}.{key}"
            if key in DATA_KEYS:
                continue
            assert key not in RETIRED, f"{where}: retired name (docs/json.md: one name per concept)"
            assert not key.endswith("_cents"), f"{where}: money is `..._usd` (cents only under `raw`)"
            if key.endswith("_usd") and value is not None:
                assert isinstance(value, (int, float)) and not isinstance(value, bool), f"{where}: a number"
            if (key.endswith("_at") or key in TIME_KEYS) and value is not None:
                assert isinstance(value, str) and TIME.match(value), f"{where}: RFC 3339 UTC with Z, got {value!r}"
            check_rules(value, where)
    elif isinstance(doc, list):
        for i, item in enumerate(doc):
            check_rules(item, f"{path}[{i}]")
    elif isinstance(doc, str) and LOOKS_LIKE_TIME.match(doc):
        assert TIME.match(doc), f"{path}: a time is RFC 3339 UTC with Z, got {doc!r}"


def validate(command: str, doc: Any) -> None:
    schema = schemas.load(command)
    jsonschema.Draft202012Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, f"{command}: " + "; ".join(f"{list(e.path)}: {e.message[:200]}" for e in errors[:5])
    if command != "schema":  # a schema document describes keys, it has no values of its own
        check_rules(doc)
    _validated.add(command)


def run_json(command: str, *args: Any, env: dict | None = None, code: int = 0) -> Any:
    result = invoke("--json", *args, env=env)
    assert result.exit_code == code, result.output
    doc = result.json()
    validate(command, doc)
    return doc


# --------------------------------------------------------------------------- trace commands


def test_trace_commands_follow_their_schemas():
    run_json("traces", "traces", "--db", FIXTURE_DIR)
    assert run_json("traces", "traces", "--db", FIXTURE_DIR, "--limit", "1")["has_more"] is False
    run_json("status", "status", "--db", FIXTURE_DB, "--base-url", "http://127.0.0.1:9")
    experiments = run_json("experiments", "experiments", "--db", FIXTURE_DB, "--limit", "2")
    assert experiments["has_more"] is True and experiments["total"] == 3
    run_json("recent", "recent", "--db", FIXTURE_DB, "--hours", "1000000")
    run_json("recent", "recent", "--db", FIXTURE_DB, "--hours", "1")
    experiment = run_json("experiment", "experiment", "crafter_run_1", "--db", FIXTURE_DB)
    session = experiment["sessions"][0]["session_id"]
    detail = run_json("session", "session", session, "--db", FIXTURE_DB)
    records = [r for t in detail["timesteps"] for e in t["events"] for r in (e.get("call_records") or [])]
    assert records and all(TIME.match(r["started_at"]) for r in records if r.get("started_at"))
    run_json("usage", "usage", "--db", FIXTURE_DB)
    run_json("usage", "usage", "--db", FIXTURE_DB, "--since", "2026-11-22T22:23:50Z", "--model", "gpt*")


def test_traces_merge_follows_its_schema(tmp_path):
    import shutil

    shutil.copyfile(FIXTURE_DB, tmp_path / "a.db")
    target = tmp_path / "all.db"
    assert run_json("traces merge", "traces", "merge", tmp_path / "a.db", "--into", target)["copied"] == 30
    assert run_json("traces merge", "traces", "merge", tmp_path / "a.db", "--into", target, "--dry-run")["skipped"] == 30


def test_one_precision_for_every_time_in_a_document():
    """`2026-11-22T22:23:49` next to `…:50.837694` in one document was the complaint."""
    doc = invoke("--json", "traces", "--db", FIXTURE_DIR).json()["dbs"][0]
    assert (doc["first_activity"], doc["last_activity"]) == ("2026-11-22T22:23:49.000Z", "2026-11-22T22:23:50.837Z")


# --------------------------------------------------------------------------- dataset, account, local


def test_filter_and_validate_follow_their_schemas(tmp_path):
    out = tmp_path / "train.jsonl"
    run_json("filter", "filter", "--db", FIXTURE_DB, "-o", out, "--val-fraction", "0.2")
    run_json("filter", "filter", "--db", FIXTURE_DB, "--dry-run", "--min-reward", "2")
    run_json("sft validate", "sft", "validate", out)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": []}\n')
    doc = run_json("sft validate", "sft", "validate", bad, code=1)
    assert doc["valid"] is False


def test_calc_follows_its_schema(tmp_path):
    estimate = run_json("calc", "calc", "gpt-4o", "1M", "500k", "--cached-input-tokens", "200k")
    assert isinstance(estimate["cost_usd"], float)
    run_json("calc", "calc", "2*(3+4)")
    prices = run_json("calc", "calc", "--list")
    exported = tmp_path / "prices.json"
    exported.write_text(json.dumps(prices))  # the listing is a price table again
    run_json("calc", "calc", "gpt-4o", "1M", "500k", "--pricing", exported)


def test_balance_and_remote_usage_follow_their_schemas(tmp_path):
    from helpers import devserver as _devserver

    with _devserver.running_server(tmp_path, credit_usd=50) as handle:
        env = {"SYNTH_BASE_URL": handle.base_url, "SYNTH_API_KEY": handle.api_key}
        doc = run_json("balance", "balance", "--usage", env=env)
        assert doc["balance_usd"] == 50 and doc["raw"]["balance"]["balance_cents"] == 5000
        run_json("balance", "balance", env=env)
        remote = run_json("usage", "usage", "--remote", "--model", "gpt-4o-mini", env=env)
        assert [m["model"] for m in remote["models"]] == ["gpt-4o-mini"]
        run_json("usage", "usage", "--remote", env=env)


def test_local_and_reference_commands_follow_their_schemas(tmp_path):
    run_json("demo", "demo", "--list")
    run_json("man", "man", "sft", "run")
    run_json("man", "man", "--write", tmp_path / "man")
    listing = run_json("schema", "schema")
    assert {row["command"] for row in listing["schemas"]} == set(schemas.names())
    run_json("schema", "schema", "traces")


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize("args,code", [
    (("traces", "--db", "/nonexistent/x.db"), 1),
    (("sft", "list", "--limit", "0"), 2),
    (("--bogus",), 2),
    (("calc",), 2),
    (("schema", "nope"), 2),
])
def test_a_failure_under_json_is_a_json_object_on_stdout_too(args, code):
    result = run_cli("--json", *args, env={"SYNTH_BASE_URL": "http://127.0.0.1:9"})
    assert result.exit_code == code
    doc = result.json()
    validate("error", doc)
    assert doc["error"]["exit_code"] == code
    assert result.stderr.startswith(f"error: {doc['error']['message']}")  # the stderr line stays


def test_every_schema_is_valid_and_self_contained():
    for name in schemas.names():
        schema = schemas.load(name)
        jsonschema.Draft202012Validator.check_schema(schema)
        refs = re.findall(r'"\$ref": "([^"]*)"', json.dumps(schema))
        assert all(r.startswith("#/$defs/") and r.split("/")[-1] in schema["$defs"] for r in refs), name
    package = Path(schemas.SCHEMA_DIR)
    assert (package / "_defs.json").is_file() and "synth_cli" in package.parts


def test_schema_command_prints_a_schema_and_refuses_unknown_names():
    doc = run_cli("schema", "sft", "validate").json()
    assert doc["title"] == "synth-ai sft validate --json" and "$defs" in doc and "time" in doc["$defs"]
    assert run_cli("schema", "synth-ai", "traces").json()["title"] == "synth-ai traces --json"
    wrong = run_cli("schema", "trace")
    assert wrong.exit_code == 2 and "did you mean: traces" in wrong.stderr


# --------------------------------------------------------------------------- sft


def _ndjson(command: str, result: Any) -> list[dict]:
    docs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert docs, result.output
    for doc in docs:
        validate(command, doc)
    return docs


def test_sft_commands_follow_their_schemas(tmp_path):
    from helpers.fakeapi import KEY, serve_fake

    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"q{i}"},
                                                      {"role": "assistant", "content": f"a{i}"}]}) + "\n"
                             for i in range(4)))
    with serve_fake(steps=3) as srv:
        env = {"SYNTH_API_KEY": KEY, "SYNTH_BASE_URL": srv.base_url}
        job = run_json("sft submit", "sft", "submit", train, "-m", "m", "--no-validate", env=env)
        assert job["object"] == "fine_tuning.job" and TIME.match(job["created_at"]) and job["raw"]["id"] == job["id"]
        run_json("sft show", "sft", "show", job["id"], env=env)
        run = invoke("--json", "sft", "run", train, "-m", "gpt-4o-mini", "--no-validate", "--interval", "0.05",
                     env=env)
        assert run.exit_code == 0, run.output
        docs = _ndjson("sft run", run)
        assert docs[-1]["object"] == "fine_tuning.job" and docs[-1]["status"] == "succeeded"
        assert all(d["object"] == "fine_tuning.job.event" for d in docs[:-1])
        done = docs[-1]["id"]
        poll = invoke("--json", "sft", "poll", done, "--interval", "0.05", env=env)
        _ndjson("sft poll", poll)
        listing = run_json("sft list", "sft", "list", env=env)
        assert {j["id"] for j in listing["jobs"]} == {job["id"], done} and listing["has_more"] is False
        assert run_json("sft list", "sft", "list", "--limit", "1", env=env)["has_more"] is True
        events = run_json("sft events", "sft", "events", done, env=env)
        assert events["events"] and events["job_id"] == done
        follow = invoke("--json", "sft", "events", done, "--follow", "--interval", "0.05", env=env)
        _ndjson("sft events", follow)
        checkpoints = run_json("sft checkpoints", "sft", "checkpoints", done, env=env)
        assert checkpoints["checkpoints"] and isinstance(checkpoints["checkpoints"][0]["step"], int)
        predictions = run_json("sft predictions", "sft", "predictions", job["id"], "--limit", "1", env=env)
        assert predictions["has_more"] is True and predictions["next"] == 1
        run_json("sft trends", "sft", "trends", job["id"], env=env)
        srv.api.jobs[job["id"]]["status"] = "running"
        assert run_json("sft pause", "sft", "pause", job["id"], env=env)["status"] == "paused"
        assert run_json("sft resume", "sft", "resume", job["id"], env=env)["status"] == "running"
        run_json("sft cancel", "sft", "cancel", job["id"], env=env)
        params = run_json("sft params", "sft", "params", env=env)
        assert params["params"] and all(p["key"] for p in params["params"])
        missing = invoke("--json", "sft", "show", "ftjob-nope", env=env)
        assert missing.exit_code == 1
        validate("error", missing.json())


def test_every_schema_is_exercised_by_a_test_here():
    """A command given a schema without a test running it against the schema fails here."""
    source = Path(__file__).read_text()
    untested = [name for name in schemas.names()
                if f'run_json("{name}"' not in source and f'_ndjson("{name}"' not in source
                and f'validate("{name}"' not in source]
    assert not untested, untested


def test_serve_announces_itself_by_its_schema(tmp_path):
    from helpers import devserver as _devserver

    with _devserver.running_server(tmp_path, json=True) as handle:
        first = next(line for line in handle.log().splitlines() if line.startswith("{"))
        doc = json.loads(first)
        validate("serve", doc)
        assert doc["base_url"] == handle.base_url
