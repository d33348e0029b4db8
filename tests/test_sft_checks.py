"""What the fine-tuning API would reject is caught locally, before anything is uploaded.

`sft validate` and the local check of `sft submit`/`sft run`: fewer than 10 training examples,
examples over the model's limit of tokens per example (with their line numbers), a UTF-8 BOM
(accepted), a file that is not text (one error); `filter` and `sft validate` report the same
token count for the same file; `sft run` with a bad validation file uploads nothing (counted
on a real `synth-ai serve`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synth_cli.dataset.validate import context_limit, estimate_tokens, target_for
from helpers import FIXTURE_DB, invoke, run_cli
from helpers import devserver as _devserver

PUBLISHED = Path(__file__).parent / "fixtures" / "published" / "shapes.db"
MODEL = "Qwen/Qwen3-4B-Instruct-2507"


def _example(i: int, text: str = "hello") -> dict:
    return {"messages": [{"role": "user", "content": f"{text} {i}"}, {"role": "assistant", "content": "ok"}]}


def _write(path: Path, examples: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in examples), encoding="utf-8")
    return path


def test_fewer_than_ten_examples_is_an_error(tmp_path):
    three = _write(tmp_path / "three.jsonl", [_example(i) for i in range(3)])
    res = invoke("sft", "validate", str(three))
    assert res.exit_code == 1
    assert "only 3 examples; at least 10 are required" in res.stderr
    data = json.loads(invoke("--json", "sft", "validate", str(three)).stdout)
    assert data["valid"] is False and data["limits"]["min_examples"] == 10
    assert any("invalid_n_examples" in e["reason"] for e in data["errors"])
    # a validation file has no minimum
    assert invoke("sft", "validate", str(three), "--validation").exit_code == 0
    ten = _write(tmp_path / "ten.jsonl", [_example(i) for i in range(10)])
    assert invoke("sft", "validate", str(ten)).exit_code == 0


def test_examples_over_the_models_limit_are_errors_with_line_numbers(tmp_path):
    examples = [_example(i) for i in range(12)]
    examples[3] = _example(3, "x" * 80_000)  # ≈ 20,000 tokens
    examples[7] = _example(7, "y" * 300_000)  # ≈ 75,000 tokens
    path = _write(tmp_path / "big.jsonl", examples)
    data = json.loads(invoke("--json", "sft", "validate", str(path)).stdout)  # OpenAI's 65,536
    assert data["valid"] is False
    assert data["errors"] == [{"reason": "over the 65,536-token limit per example of OpenAI's fine-tuning models "
                                         "(estimated)", "count": 1, "lines": [8]}]
    # a family with a smaller limit, and the flag
    data = json.loads(invoke("--json", "sft", "validate", str(path), "--model", "gpt-3.5-turbo-0125").stdout)
    assert data["errors"][0]["lines"] == [4, 8] and "16,385-token limit" in data["errors"][0]["reason"]
    data = json.loads(invoke("--json", "sft", "validate", str(path), "--max-example-tokens", "100000").stdout)
    assert data["valid"] is True and data["limits"]["max_example_tokens"] == 100_000
    res = invoke("sft", "validate", str(path), "--max-example-tokens", "1000")
    assert res.exit_code == 1 and "lines 4, 8" not in res.stderr  # the table names them
    assert "4, 8" in res.stdout


def test_context_limit_table():
    assert context_limit("gpt-4o-mini-2024-07-18") == 65_536
    assert context_limit("ft:gpt-4.1-mini-2025-04-14:org::abc") == 65_536
    assert context_limit("gpt-3.5-turbo") == 16_385
    assert context_limit(MODEL) == 65_536  # unknown family: OpenAI's figure, overridable
    assert target_for(MODEL, 4096).max_example_tokens == 4096


def test_images_count_as_fixed_tokens_not_as_their_bytes():
    url = "data:image/png;base64," + "A" * 400_000
    example = {"messages": [{"role": "user", "content": [{"type": "text", "text": "what?"},
                                                         {"type": "image_url", "image_url": {"url": url}}]},
                            {"role": "assistant", "content": "a pixel"}]}
    line = json.dumps(example, separators=(",", ":")).encode()
    assert 765 < estimate_tokens(line, example) < 900


def test_bom_is_accepted_and_a_non_text_file_is_one_error(tmp_path):
    plain = _write(tmp_path / "plain.jsonl", [_example(i) for i in range(10)])
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    res = invoke("--json", "sft", "validate", str(bom))
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["examples"] == 10
    db = tmp_path / "traces.db"
    shutil.copy(PUBLISHED, db)
    res = run_cli("sft", "validate", db)
    assert res.exit_code == 1 and "Traceback" not in res.stderr
    assert res.stderr.splitlines()[0] == f"error: {db}: is a SQLite database, not a JSONL file"
    assert len([ln for ln in res.stderr.splitlines() if ln.startswith("error:")]) == 1
    assert res.stdout == ""


@pytest.mark.parametrize("metadata", [False, True])
def test_filter_and_sft_validate_report_the_same_token_count(tmp_path, metadata):
    db = tmp_path / "shapes.db"
    shutil.copy(PUBLISHED, db)  # images, tool calls, long histories
    out = tmp_path / "out.jsonl"
    args = ["--include-metadata"] if metadata else []
    res = invoke("--json", "filter", "--db", str(db), "-o", str(out), *args)
    assert res.exit_code == 0, res.stderr
    filtered = json.loads(res.stdout)["token_estimate"]
    checked = json.loads(invoke("--json", "sft", "validate", str(out)).stdout)["token_estimate"]
    assert filtered == checked > 0


# --------------------------------------------------------------------------- nothing uploaded


def _files(srv) -> list[dict]:
    import httpx

    r = httpx.get(srv.base_url + "/files", params={"purpose": "fine-tune"},
                  headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]


def test_sft_run_with_a_bad_validation_file_uploads_nothing(tmp_path):
    train = tmp_path / "train.jsonl"
    res = run_cli("filter", "--db", FIXTURE_DB, "--output", train)
    assert res.exit_code == 0, res.stderr
    bad = tmp_path / "val.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n', encoding="utf-8")
    db = tmp_path / "traces.db"
    shutil.copy(PUBLISHED, db)
    three = _write(tmp_path / "three.jsonl", [_example(i) for i in range(3)])
    with _devserver.running_server(tmp_path) as srv:
        env = {"SYNTH_BACKEND_BASE_URL": srv.base_url, "SYNTH_BACKEND_API_KEY": srv.api_key}
        res = run_cli("sft", "run", train, "--model", MODEL, "--validation-file", bad, env=env)
        assert res.exit_code == 1 and "Traceback" not in res.stderr
        assert "validation file" in res.stderr and "line 2" in res.stderr
        assert "uploaded" not in res.stderr
        assert _files(srv) == []
        res = run_cli("sft", "submit", train, "--model", MODEL, "--validation-file", db, env=env)
        assert res.exit_code == 1 and "is a SQLite database" in res.stderr
        assert _files(srv) == []
        res = run_cli("sft", "submit", three, "--model", MODEL, env=env)
        assert res.exit_code == 1 and "at least 10" in res.stderr
        assert _files(srv) == []
        # a good pair: both uploaded (training first), then the job
        res = run_cli("sft", "submit", train, "--model", MODEL, "--validation-file", three, "--json", env=env)
        assert res.exit_code == 0, res.stderr
        assert len(_files(srv)) == 2
