"""`filter` records how a dataset was made (OUT.jsonl.manifest.json); `sft` puts it in the job's metadata."""

from __future__ import annotations

import hashlib
import json

from synth_cli.dataset import manifest
from helpers.fakeapi import KEY, serve_fake
from helpers.filterdb import conversation_calls, make_db, read_jsonl
from tests.conftest import invoke


def _db(tmp_path):
    sessions = [{"id": f"s{i}", "metadata": {"task": "t"}, "experiment": ("exp1", "first"),
                 "calls": conversation_calls(3, prefix=f"s{i} "), "rewards": [float(i % 2), 0.0, 0.0]}
                for i in range(10)]
    return make_db(tmp_path / "traces.db", sessions)


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_filter_writes_a_manifest_with_settings_sources_counts_and_sha256(tmp_path):
    db = _db(tmp_path)
    out = tmp_path / "train.jsonl"
    res = invoke("--json", "filter", "--db", str(db), "--min-reward", "1", "--experiment", "exp1", "--output",
                 str(out), "--val-fraction", "0.2", "--seed", "3")
    assert res.exit_code == 0, res.stderr
    summary = json.loads(res.stdout)
    path = tmp_path / "train.jsonl.manifest.json"
    assert summary["manifest"] == str(path)
    doc = json.loads(path.read_text(encoding="utf-8"))
    assert doc["format"] == "synth-ai.dataset-manifest" and doc["version"] == 1
    assert doc["settings"] == {"mode": "calls", "filters": {"experiments": ["exp1"], "min_reward": 1.0},
                               "val_fraction": 0.2, "seed": 3, "redact": "secrets"}
    assert doc["sources"] == [{"db": str(db), "kind": "sqlite", "source": "call_records"}]
    assert doc["counts"]["sessions_scanned"] == 10 and doc["counts"]["sessions_kept"] == 5
    val = tmp_path / "train.val.jsonl"
    train_n, val_n = len(read_jsonl(out)), len(read_jsonl(val))
    assert doc["counts"]["train"] == train_n and doc["counts"]["val"] == val_n and train_n + val_n == 15
    assert doc["files"] == [
        {"role": "train", "name": "train.jsonl", "sha256": _sha(out), "bytes": out.stat().st_size,
         "examples": train_n},
        {"role": "validation", "name": "train.val.jsonl", "sha256": _sha(val), "bytes": val.stat().st_size,
         "examples": val_n}]
    # no temp files left next to it; the human summary names it
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("traces.db")) == [
        "train.jsonl", "train.jsonl.manifest.json", "train.val.jsonl"]
    human = invoke("filter", "--db", str(db), "--min-reward", "1", "--output", str(out))
    assert human.exit_code == 0 and "train.jsonl.manifest.json" in human.stdout
    assert "val_fraction" not in json.loads(path.read_text(encoding="utf-8"))["settings"]  # rewritten


def test_dry_run_and_streams_write_no_manifest(tmp_path):
    db = _db(tmp_path)
    out = tmp_path / "train.jsonl"
    res = invoke("filter", "--db", str(db), "--output", str(out), "--dry-run")
    assert res.exit_code == 0, res.stderr
    assert not out.exists() and not manifest.manifest_path(out).exists()
    res = invoke("filter", "--db", str(db), "--output", "/dev/null")
    assert res.exit_code == 0, res.stderr
    assert not (tmp_path / "null.manifest.json").exists()


def test_source_labels_never_carry_credentials():
    assert manifest.safe_label("libsql://user:secret@db.turso.io/x?authToken=tok") == "libsql://db.turso.io/x"
    assert manifest.safe_label("https://h:8443/db?authToken=t#f") == "https://h:8443/db"
    assert manifest.safe_label("not/a/file/here.db") == "not/a/file/here.db"


def test_sft_records_the_filter_settings_when_the_manifest_matches(tmp_path):
    db = _db(tmp_path)
    out = tmp_path / "train.jsonl"
    assert invoke("filter", "--db", str(db), "--output", str(out)).exit_code == 0
    doc = json.loads(manifest.manifest_path(out).read_text(encoding="utf-8"))
    with serve_fake() as srv:
        base = ["-m", "gpt-4o-mini", "--base-url", srv.base_url, "--api-key", KEY, "--json"]
        res = invoke("sft", "submit", str(out), "--metadata", "run=7", *base)
        assert res.exit_code == 0, res.stderr
        sent = srv.api.calls("POST", "/v1/fine_tuning/jobs")[-1].json["metadata"]
        assert sent == {"dataset": "train.jsonl", "dataset_sha256": _sha(out), "run": "7",
                        "filter_settings": json.dumps(doc["settings"], separators=(",", ":"), sort_keys=True),
                        "dataset_sources": str(db),
                        "dataset_counts": "sessions 10/10 · examples 30 (train 30, val 0)"}
        assert json.loads(sent["filter_settings"]) == {"mode": "calls", "redact": "secrets"}
        # the file changed after filter wrote it: its manifest no longer describes it
        with open(out, "a", encoding="utf-8") as fh:
            fh.write(out.read_text(encoding="utf-8").splitlines()[0] + "\n")
        res = invoke("sft", "submit", str(out), *base)
        assert res.exit_code == 0, res.stderr
        sent = srv.api.calls("POST", "/v1/fine_tuning/jobs")[-1].json["metadata"]
        assert sent == {"dataset": "train.jsonl", "dataset_sha256": _sha(out)}


def test_job_metadata_fits_openai_limits():
    doc = {"format": manifest.FORMAT, "files": [],
           "settings": {"mode": "calls", "filters": {"where": [["k" * 40, "v" * 40]] * 30,
                                                     "experiments": ["e" * 30] * 30, "min_reward": 1.0},
                        "models": ["m" * 50] * 30, "redact": "secrets"},
           "sources": [{"db": "/very/long/" + "p" * 300 + f"/{i}.db"} for i in range(3)],
           "counts": {"sessions_kept": 1, "sessions_scanned": 2, "examples": 3, "train": 3, "val": 0}}
    meta = manifest.job_metadata(doc)
    assert set(meta) == {"filter_settings", "dataset_sources", "dataset_counts"}
    assert all(isinstance(v, str) and len(v) <= 512 for v in meta.values())
    settings = json.loads(meta["filter_settings"])  # still JSON: the long lists were cut, the rest kept
    assert settings["filters"]["min_reward"] == 1.0 and settings["filters"]["where"] == ["…"]
