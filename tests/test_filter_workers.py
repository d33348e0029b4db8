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


@pytest.mark.parametrize("extra", [("--min-reward", "1"), ("--min-achievements", "1"), ("--where", "task_split=train"),
                                   ("--max-tokens", "20000", "--mode", "sessions")],
                         ids=["reward", "achievements", "where", "tokens-sessions"])
def test_workers_that_select_their_sessions_drop_what_one_process_drops(tmp_path: Path, extra: tuple) -> None:
    """With --workers N each worker runs the session query for its share: the same sessions dropped
    (and counted by filter), the same bytes and stats."""
    one = _run(FIXTURE_DB, tmp_path / "w1.jsonl", 1, *extra)
    for workers in (2, 3):
        many = _run(FIXTURE_DB, tmp_path / f"w{workers}.jsonl", workers, *extra)
        assert many == one
        assert (tmp_path / f"w{workers}.jsonl").read_bytes() == (tmp_path / "w1.jsonl").read_bytes()
    if extra[0] != "--max-tokens":
        assert one["sessions"]["dropped"] > 0 and one["sessions"]["kept"] > 0


def test_workers_run_the_session_query_themselves(tmp_path: Path, monkeypatch) -> None:
    """The parent of --workers 2 runs no session query (the workers do, each for its share); with
    --val-fraction (whose split needs every kept session first) the parent runs it."""
    from synth_cli.dataset import run

    one = _run(FIXTURE_DB, tmp_path / "a.jsonl", 1)
    one_val = _run(FIXTURE_DB, tmp_path / "v1.jsonl", 1, "--val-fraction", "0.3")
    real = run.select_kept
    calls = []

    def parent_select(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(run, "select_kept", parent_select)
    two = _run(FIXTURE_DB, tmp_path / "b.jsonl", 2)
    assert calls == []
    assert two == one and (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    two_val = _run(FIXTURE_DB, tmp_path / "v2.jsonl", 2, "--val-fraction", "0.3")
    assert len(calls) == 1
    assert two_val == one_val
    assert (tmp_path / "v2.val.jsonl").read_bytes() == (tmp_path / "v1.val.jsonl").read_bytes()


def test_merge_writes_runs_of_one_worker_in_key_order() -> None:
    """The parent's merge: entries of several streams in key order, consecutive kept lines of one
    batch as one write, duplicates and the train/validation switch cutting the runs."""
    from synth_cli.dataset.build import FilterStats, Sink
    from synth_cli.dataset.options import FilterOptions
    from synth_cli.dataset.parallel import _merge

    class Out:
        def __init__(self) -> None:
            self.writes: list[bytes] = []

        def write(self, data) -> None:
            self.writes.append(bytes(data))

    def batch(items):  # (row id, text, is_val); the digest is the text's (equal texts: duplicates)
        data = b"".join(text.encode() + b"\n" for _, text, _ in items)
        columns = ([row for row, _, _ in items], [len(text) + 1 for _, text, _ in items],
                   b"".join(DigestSet.digest(text.encode()) for _, text, _ in items), [1] * len(items),
                   [2 << 2 | (2 if is_val else 0) | (row % 2) for row, _, is_val in items], ["m"] * len(items))
        return columns, memoryview(data)

    a = [batch([(1, "a1", False), (2, "a2", False), (5, "a5", False)]), batch([(6, "a6", True), (9, "a9", False)])]
    b = [batch([(3, "b3", False), (4, "a2", False), (7, "b7", False), (8, "b8", False)])]
    train, val = Out(), Out()
    stats = FilterStats()
    sink = Sink(FilterOptions(dbs=["x"], output="x.jsonl", redact="off"), stats, train, val)
    _merge([iter(a), iter(b)], sink)
    assert train.writes == [b"a1\na2\n", b"b3\n", b"a5\n", b"b7\nb8\n", b"a9\n"]
    assert val.writes == [b"a6\n"]
    assert (stats.examples, stats.train, stats.val, stats.duplicates) == (8, 7, 1, 1)
    assert (stats.messages, stats.with_tool_calls, stats.token_estimate) == (16, 5, 8)  # odd rows: tool calls
    assert sink.train_sha.hexdigest() == __import__("hashlib").sha256(b"".join(train.writes)).hexdigest()
