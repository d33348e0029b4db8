"""`filter -o`: no output path destroys data (synth_cli/dataset/writer.py).

Trace DBs and their sidecars are refused by path and by inode; FIFOs are written
through (or refused at once when nobody reads them); an existing file keeps its mode;
a symlink's target is written; a train+val pair is never split by an interrupt or a
kill; a killed run's temp files are removed by the next run; a missing directory is an
error unless --parents; a write that fails (file size limit) leaves the old output.
None of these needs root.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import stat
import subprocess
import sys
import threading

import pytest
from helpers import FIXTURE_DB, ROOT, invoke

OLD = b'{"old": true}\n'


def _wal_db(tmp_path, name="traces.db"):
    """A copy of the fixture in WAL mode with a committed write in its -wal file (kept while `conn` is open)."""
    db = tmp_path / name
    db.write_bytes(FIXTURE_DB.read_bytes())
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=wal")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("INSERT INTO experiments (experiment_id, name) VALUES ('exp-wal', 'committed, in the WAL')")
    conn.commit()
    return db, conn


def _one_error(result, code=1):
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
    return lines[0]


def _hidden(directory):
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# --------------------------------------------------------------------------- trace DB files


@pytest.mark.parametrize("suffix", ["", "-wal", "-shm", "-journal"])
def test_output_never_a_db_file_or_sidecar(tmp_path, suffix):
    db, conn = _wal_db(tmp_path)
    target = tmp_path / f"traces.db{suffix}"
    if suffix == "-journal":
        target.write_bytes(b"")  # as a rollback-journal DB would have it
    def contents():  # the -shm index changes whenever a reader opens the DB: not compared
        return {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file() and not p.name.endswith("-shm")}

    before = contents()
    line = _one_error(invoke("filter", "--db", db, "-o", target))
    assert f"refusing to write {target}" in line and "trace DB being read" in line
    assert contents() == before
    assert stat.S_ISREG(os.stat(target).st_mode) and not target.is_symlink()
    conn.close()


def test_sidecar_of_second_db_and_by_inode(tmp_path):
    one, c1 = _wal_db(tmp_path, "one.db")
    two, c2 = _wal_db(tmp_path, "two.db")
    wal = tmp_path / "two.db-wal"
    before = wal.read_bytes()
    assert before, "the test needs a non-empty WAL"
    os.link(wal, tmp_path / "hardlink.jsonl")
    (tmp_path / "symlink.jsonl").symlink_to(two)
    for output in ("two.db-wal", "hardlink.jsonl", "symlink.jsonl"):
        line = _one_error(invoke("filter", "--db", one, "--db", two, "-o", tmp_path / output))
        assert "refusing to write" in line
    # the val split of an output is checked too: x.jsonl → x.val.jsonl
    os.link(wal, tmp_path / "x.val.jsonl")
    line = _one_error(invoke("filter", "--db", one, "--db", two, "-o", tmp_path / "x.jsonl", "--val-fraction", "0.2"))
    assert "x.val.jsonl" in line
    assert wal.read_bytes() == before
    assert not (tmp_path / "x.jsonl").exists()
    c1.close()
    c2.close()


# --------------------------------------------------------------------------- file kinds


def test_fifo_with_a_reader_is_written_through(tmp_path, fixture_db):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    got = bytearray()

    def read():
        with open(fifo, "rb") as fh:
            got.extend(fh.read())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    result = invoke("filter", "--db", fixture_db, "-o", fifo)
    reader.join(10)
    assert result.exit_code == 0, result.output
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)  # still a FIFO, not replaced by a file
    lines = bytes(got).splitlines()
    assert len(lines) == 240 and all(json.loads(line)["messages"] for line in lines)


def test_fifo_nobody_reads_is_an_error_at_once(tmp_path, fixture_db):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    line = _one_error(invoke("filter", "--db", fixture_db, "-o", fifo))
    assert line == f"error: {fifo}: no process is reading this FIFO"
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    # a val split needs a directory entry of its own: refused next to a FIFO
    line = _one_error(invoke("filter", "--db", fixture_db, "-o", fifo, "--val-fraction", "0.2"))
    assert "needs a regular file" in line
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("fixture.db")) == ["out.fifo"]


def test_existing_file_keeps_its_mode(tmp_path, fixture_db):
    out = tmp_path / "train.jsonl"
    out.write_bytes(OLD)
    out.chmod(0o600)
    assert invoke("filter", "--db", fixture_db, "-o", out).exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert out.read_bytes() != OLD
    out.chmod(0o640)
    assert invoke("filter", "--db", fixture_db, "-o", out, "--limit", "3").exit_code == 0
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o640


def test_symlink_writes_its_target(tmp_path, fixture_db):
    real = tmp_path / "data" / "real.jsonl"
    real.parent.mkdir()
    real.write_bytes(OLD)
    link = tmp_path / "train.jsonl"
    link.symlink_to(real)
    assert invoke("filter", "--db", fixture_db, "-o", link, "--limit", "5").exit_code == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len(real.read_bytes().splitlines()) == 5
    assert _hidden(real.parent) == [] and _hidden(tmp_path) == []
    dangling = tmp_path / "new.jsonl"
    dangling.symlink_to(tmp_path / "data" / "created.jsonl")
    assert invoke("filter", "--db", fixture_db, "-o", dangling, "--limit", "2").exit_code == 0
    assert dangling.is_symlink() and len((tmp_path / "data" / "created.jsonl").read_bytes().splitlines()) == 2


def test_missing_directory_is_an_error_unless_parents(tmp_path, fixture_db):
    target = tmp_path / "missing" / "dir" / "x.jsonl"
    line = _one_error(invoke("filter", "--db", fixture_db, "-o", target))
    assert line == f"error: {target}: the directory {target.parent} does not exist"
    assert not (tmp_path / "missing").exists()
    assert invoke("filter", "--db", fixture_db, "-o", target, "--parents").exit_code == 0
    assert len(target.read_bytes().splitlines()) == 240
    # nothing to write: no directory either
    other = tmp_path / "other" / "x.jsonl"
    result = invoke("filter", "--db", fixture_db, "-o", other, "--parents", "--min-reward", "1000")
    assert result.exit_code == 1 and not other.exists()


# --------------------------------------------------------------------------- interrupts and kills

_KILL_AFTER_FIRST_RENAME = """
import os, signal, sys
real = os.replace
def replace(src, dst, *a, **k):
    real(src, dst, *a, **k)
    if str(dst).endswith(".jsonl"):
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from synth_cli.app import app
app(sys.argv[1:], prog_name="synth-ai")
"""


def _subprocess(*args, script=None, preexec_fn=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", script, *map(str, args)] if script else \
        [sys.executable, "-m", "synth_cli", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, preexec_fn=preexec_fn,
                          check=False)


def test_pair_survives_sigint_between_the_renames(tmp_path, fixture_db, monkeypatch):
    train, val = tmp_path / "out.jsonl", tmp_path / "out.val.jsonl"
    train.write_bytes(OLD)
    val.write_bytes(OLD)
    real = os.replace
    calls = []

    def replace(src, dst, *a, **k):
        real(src, dst, *a, **k)
        if str(dst).endswith(".jsonl"):
            calls.append(dst)
            if len(calls) == 1:  # Ctrl-C right between the train and the val rename
                os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(os, "replace", replace)
    try:
        result = invoke("filter", "--db", fixture_db, "-o", train, "--val-fraction", "0.2")
    except KeyboardInterrupt:  # pragma: no cover - today's main: the interrupt lands between the renames
        result = None
    monkeypatch.undo()
    both_old = train.read_bytes() == OLD and val.read_bytes() == OLD
    both_new = train.read_bytes() != OLD and val.read_bytes() != OLD
    assert both_old or both_new, (train.read_bytes()[:40], val.read_bytes()[:40])
    assert result is not None and result.exit_code in (0, 130)
    assert _hidden(tmp_path) == []


@pytest.mark.parametrize("symlinked", [False, True], ids=["plain", "train-is-a-symlink-elsewhere"])
def test_pair_after_sigkill_between_the_renames_is_finished_by_the_next_run(tmp_path, fixture_db, symlinked):
    train, val = tmp_path / "out.jsonl", tmp_path / "out.val.jsonl"
    if symlinked:  # the train file lives in another directory than the val file
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "elsewhere" / "real.jsonl").write_bytes(OLD)
        train.symlink_to(tmp_path / "elsewhere" / "real.jsonl")
    else:
        train.write_bytes(OLD)
    val.write_bytes(OLD)
    args = ("filter", "--db", fixture_db, "--val-fraction", "0.2", "--seed", "7")
    killed = _subprocess(*args, "-o", train, script=_KILL_AFTER_FIRST_RENAME)
    assert killed.returncode == -signal.SIGKILL
    assert train.read_bytes() != OLD and val.read_bytes() == OLD  # the state the next run must repair
    reference = tmp_path / "ref" / "ref.jsonl"
    assert invoke(*args, "-o", reference, "--parents").exit_code == 0
    # the next run to the same output writes nothing itself (no session matches), but finishes the pair
    result = invoke("filter", "--db", fixture_db, "-o", train, "--min-reward", "1000")
    assert result.exit_code == 1
    assert "finished an earlier run's interrupted write" in result.stderr
    assert train.read_bytes() == reference.read_bytes()
    assert val.read_bytes() == (reference.parent / "ref.val.jsonl").read_bytes()
    assert _hidden(tmp_path) == []
    if symlinked:
        assert train.is_symlink() and _hidden(tmp_path / "elsewhere") == []


def test_killed_run_temp_files_are_removed_by_the_next_run(tmp_path, fixture_db):
    out = tmp_path / "out.jsonl"
    killed = _subprocess("filter", "--db", fixture_db, "-o", out, "--val-fraction", "0.2",
                         script=_KILL_AFTER_FIRST_RENAME)
    assert killed.returncode == -signal.SIGKILL
    assert _hidden(tmp_path), "the killed run leaves its temp file and journal behind"
    # a live process's temp file and files of other kinds are not ours to remove
    live = tmp_path / f".out.jsonl.{os.getpid()}.0123abcd.synth-tmp"
    live.write_bytes(b"in progress")
    unrelated = [tmp_path / ".out.jsonl.1.tmp", tmp_path / ".other.jsonl.999999999.0123abcd.synth-tmp"]
    for path in unrelated:
        path.write_bytes(b"x")
    result = invoke("filter", "--db", fixture_db, "-o", out)
    assert result.exit_code == 0, result.output
    assert _hidden(tmp_path) == sorted(p.name for p in [live, *unrelated])


def test_file_size_limit_keeps_the_old_output(tmp_path, fixture_db):
    out = tmp_path / "out.jsonl"
    out.write_bytes(OLD)

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    result = _subprocess("filter", "--db", fixture_db, "-o", out, preexec_fn=limit)
    assert result.returncode == 1, result.stderr
    expected = (f"error: {out}: file too large (a file size limit) while writing; nothing written, "
                "the existing file is unchanged")
    assert result.stderr.strip().splitlines() == [expected]
    assert out.read_bytes() == OLD
    assert _hidden(tmp_path) == []


def test_sidecars_of_a_db_read_through_a_symlink(tmp_path):
    (tmp_path / "real").mkdir()
    db, conn = _wal_db(tmp_path / "real", "t.db")
    link = tmp_path / "link.db"
    link.symlink_to(db)
    before = (tmp_path / "real" / "t.db-wal").read_bytes()
    for output in (tmp_path / "real" / "t.db-wal", tmp_path / "link.db-wal"):
        line = _one_error(invoke("filter", "--db", link, "-o", output))
        assert "refusing to write" in line
    assert (tmp_path / "real" / "t.db-wal").read_bytes() == before
    conn.close()


def test_a_long_write_is_synced_while_it_runs_and_the_syncer_stops_before_close(tmp_path, monkeypatch) -> None:
    """The output's data goes to disk while it is written (the fsync at the end finds little left),
    through the temp file's own descriptor, and never after that descriptor is closed."""
    from synth_cli.dataset import writer

    synced: list[int] = []
    first = threading.Event()
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        real(fd)
        synced.append(fd)
        first.set()

    monkeypatch.setattr(writer, "SYNC_EVERY", 0.01)
    monkeypatch.setattr(writer.os, "fdatasync", fdatasync)
    target = tmp_path / "out.jsonl"
    with writer.AtomicFiles() as files:
        out = files.open(target)
        fd = out._fh.fileno()
        out.write(b'{"a":1}\n' * 1000)
        out._fh.flush()
        assert first.wait(30)  # a sync ran while the file was open
        files.commit()
    after = len(synced)
    assert set(synced) == {fd}
    assert target.read_bytes() == b'{"a":1}\n' * 1000
    threading.Event().wait(0.05)
    assert len(synced) == after  # stopped with the file
