"""`filter --workers N`: the same bytes and the same stats as one process, whatever N."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import FIXTURE_DB, ROOT, invoke
from synth_cli.dataset.build import DigestSet

SHAPES_DB = ROOT / "tests" / "fixtures" / "published" / "shapes.db"


def _run(db: Path, out: Path, workers: int, *extra: str) -> dict:
    result = invoke("filter", "--db", str(db), "-o", str(out), "--workers", str(workers), "--json", *extra)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    data.pop("elapsed_s")
    data.pop("output")
    data.pop("val_output")
    data.pop("manifest", None)  # named after the output, like output/val_output
    return data


@pytest.mark.parametrize("db", [FIXTURE_DB, SHAPES_DB], ids=["fixture", "shapes"])
@pytest.mark.parametrize("mode", ["calls", "sessions"])
@pytest.mark.parametrize("extra", [(), ("--val-fraction", "0.3"), ("--include-metadata", "--redact", "pii")],
                         ids=["plain", "val", "metadata-pii"])
def test_workers_write_the_bytes_of_one_process(tmp_path: Path, db: Path, mode: str, extra: tuple) -> None:
    outs = {}
    stats = {}
    for workers in (1, 2, 3):
        out = tmp_path / f"w{workers}.jsonl"
        stats[workers] = _run(db, out, workers, "--mode", mode, *extra)
        outs[workers] = (out.read_bytes(), out.with_name(f"w{workers}.val.jsonl").read_bytes()
                         if "--val-fraction" in extra else None)
    assert outs[1][0]  # something was written
    if "--val-fraction" in extra:
        assert outs[1][1]
    assert outs[2] == outs[1] and outs[3] == outs[1]
    assert stats[2] == stats[1] and stats[3] == stats[1]
    assert stats[1]["redaction"]["mode"] != "off"  # scrubbing was on


def test_workers_name_the_same_first_problems(tmp_path: Path) -> None:
    """The lists that name the first few invalid examples / malformed rows come out in scan order."""
    one = _run(SHAPES_DB, tmp_path / "a.jsonl", 1)
    two = _run(SHAPES_DB, tmp_path / "b.jsonl", 2)
    assert one["examples"]["invalid_examples"] and two["examples"]["invalid_examples"] == \
        one["examples"]["invalid_examples"]
    assert two["malformed_rows"] == one["malformed_rows"]


def test_workers_is_checked(tmp_path: Path) -> None:
    result = invoke("filter", "--db", str(FIXTURE_DB), "-o", str(tmp_path / "x.jsonl"), "--workers", "0")
    assert result.exit_code == 2
    assert "--workers" in result.stderr and "Traceback" not in result.stderr


def test_digest_set_is_exact() -> None:
    seen = DigestSet()
    lines = [f'{{"n":{i}}}'.encode() for i in range(20000)]
    assert all(seen.add(DigestSet.digest(line)) for line in lines)
    assert not any(seen.add(DigestSet.digest(line)) for line in lines)
    assert seen.count == 20000
    # a digest that only appears straddling two stored ones is not a member
    a, b = DigestSet.digest(b"a"), DigestSet.digest(b"b")
    fresh = DigestSet()
    straddle = (a + a)[6:18]
    fresh.add(a)
    fresh._buckets[straddle[0] << 4 | straddle[1] >> 4] += a + a  # force the overlap into its bucket
    assert fresh.add(straddle) is True
    assert fresh.add(b) is True and fresh.add(b) is False


def test_workers_that_cannot_start_fall_back_to_one_process(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    one = _run(SHAPES_DB, tmp_path / "a.jsonl", 1)

    def no_tmp(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tempfile, "mkdtemp", no_tmp)
    two = _run(SHAPES_DB, tmp_path / "b.jsonl", 2)
    assert two == one
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
