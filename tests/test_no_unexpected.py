"""Bad input never ends in `error: unexpected …` and never hangs: one clear line (or, for valid
input, the right result). One test per class of the audit: URLs, numbers and dates, encodings,
files (FIFOs, devices, unreadable places, a file growing during upload, odd table names),
a corrupt DB under `traces --root`, a WAL DB in a directory the reader cannot write."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pytest
from helpers import FIXTURE_DB, ROOT, invoke, run_cli


def _clear_error(result, code=None):
    assert result.exit_code != 0, result.output
    if code is not None:
        assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: "), result.stderr
    assert "unexpected" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert all(line.startswith(("error: ", "hint: ")) for line in lines), result.stderr
    return lines[0]


# --------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("args, expected", [
    (("traces", "--db", "http://[::1"), "not a valid URL (Invalid IPv6 URL)"),
    (("usage", "--db", "https://127.0.0.1:99999"), "not a valid URL (port out of range 0-65535)"),
    (("session", "x", "--db", "libsql://host:0"), "port 0"),
    (("sft", "list", "--base-url", "http://[::1", "--api-key", "sk-test-abcdefghijkl"), "not a valid URL"),
    (("sft", "list", "--base-url", "http://:8000", "--api-key", "sk-test-abcdefghijkl"), "no host"),
    (("status", "--base-url", "http://[::1"), "not a valid URL"),
])
def test_bad_urls(args, expected):
    line = _clear_error(invoke(*args))
    assert expected in line


def test_bad_url_error_hides_credentials():
    line = _clear_error(invoke("usage", "--db", "http://user:hunter2@[::1/x?authToken=tok123"))
    assert "hunter2" not in line and "tok123" not in line


def test_bad_base_url_from_the_environment_names_it():
    line = _clear_error(invoke("sft", "list", "--api-key", "sk-test-abcdefghijkl",
                               env={"SYNTH_BASE_URL": "http://h:99999"}))
    assert "env SYNTH_BASE_URL" in line


# --------------------------------------------------------------------------- numbers and dates


@pytest.mark.parametrize("args, option", [
    (("recent", "--hours", "inf"), "--hours"),
    (("recent", "--hours", "nan"), "--hours"),
    (("filter", "--min-achievements", "99999999999999999999999", "--dry-run"), "--min-achievements"),
    (("filter", "--max-tokens", "-99999999999999999999999", "--dry-run"), "--max-tokens"),
    (("traces", "--limit", "99999999999999999999"), "--limit"),
    (("sft", "poll", "ftjob-x", "--interval", "inf"), "--interval"),
    (("sft", "run", "x.jsonl", "--model", "m", "--learning-rate-multiplier", "inf"), "--learning-rate-multiplier"),
    (("sft", "submit", "x.jsonl", "--model", "m", "--learning-rate-multiplier", "nan"), "--learning-rate-multiplier"),
])
def test_numbers_out_of_range_are_usage_errors(fixture_db, args, option):
    line = _clear_error(invoke(*args, "--db", fixture_db) if args[0] in ("recent", "filter", "traces")
                        else invoke(*args, "--api-key", "sk-test-abcdefghijkl"), code=2)
    assert option in line


def test_learning_rate_inf_is_refused_before_any_upload(tmp_path):
    """No server is running: had the CLI tried to upload, the error would be a connection error."""
    data = tmp_path / "train.jsonl"
    data.write_text('{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n' * 10)
    line = _clear_error(invoke("sft", "run", data, "--model", "m", "--learning-rate-multiplier", "inf",
                               "--api-key", "sk-test-abcdefghijkl", "--base-url", "http://127.0.0.1:9"), code=2)
    assert "finite" in line


def test_config_file_numbers_are_bounded(fixture_db, tmp_path):
    config = tmp_path / "f.toml"
    config.write_text("[filter]\nmin_achievements = 99999999999999999999\n")
    line = _clear_error(invoke("filter", "--db", fixture_db, "--config", config, "--dry-run"), code=2)
    assert "min_achievements" in line and "out of range" in line


@pytest.mark.parametrize("args", [
    ("--since", "99999999999d"),
    ("--since", "0001-01-01"),
    ("--until", "9999-12-31"),
    ("--until", "9999-12-31T23:00:00-05:00"),
])
def test_dates_at_the_ends_of_the_calendar_work(fixture_db, args):
    result = invoke("--json", "filter", "--db", fixture_db, "--dry-run", *args)
    assert result.exit_code == 0, result.output
    assert result.json()["sessions"]["kept"] == 30


def test_spans_at_the_ends_of_the_calendar_work(fixture_db):
    result = invoke("--json", "recent", "--db", fixture_db, "--hours", "1e300")
    assert result.exit_code == 0, result.output
    assert len(result.json()["experiments"]) == 3
    result = invoke("--json", "usage", "--db", fixture_db, "--since", "99999999999d")
    assert result.exit_code == 0, result.output


# --------------------------------------------------------------------------- encodings


def test_binary_toml_and_env_files(fixture_db, tmp_path):
    binary = tmp_path / "bin"
    binary.write_bytes(b"\x7fELF\x02\x01\x01\x00\xd0\xff\xfe" * 20)
    line = _clear_error(invoke("filter", "--db", fixture_db, "--config", binary, "--dry-run"), code=2)
    assert "not UTF-8" in line
    line = _clear_error(invoke("--env-file", binary, "traces", "--db", fixture_db), code=2)
    assert "not UTF-8" in line
    (tmp_path / ".env").write_bytes(b"SYNTH_API_KEY=\xff\xfe\n")  # ./.env, read implicitly
    line = _clear_error(invoke("traces", "--db", fixture_db), code=2)
    assert ".env: not UTF-8" in line


def test_non_utf8_paths(tmp_path):
    """Subprocess: the name reaches the CLI as bytes, the way a shell passes it."""
    name = os.fsdecode(b"\xff-traces.db")
    shutil.copyfile(FIXTURE_DB, tmp_path / name)
    result = run_cli("--json", "traces", "--db", name, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert result.json()["totals"]["sessions"] == 30
    result = run_cli("session", "nope", "--db", name, cwd=tmp_path)
    assert "\\xff-traces.db" in _clear_error(result)  # shown visibly, never as a raw byte
    out = os.fsdecode(b"\xfe-out.jsonl")
    result = run_cli("filter", "--db", name, "-o", out, cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    assert len((tmp_path / out).read_bytes().splitlines()) == 240


@pytest.mark.parametrize("key, what", [
    ("sk-test-abcdefghijkl\n", "whitespace"),
    (" sk-test-abcdefghijkl", "whitespace"),
    ("sk-test-abcdéfghijkl", "non-ASCII"),
    ("sk-test-abc def-ghijkl", "space"),
])
def test_api_key_that_cannot_be_sent_is_refused_at_once(key, what):
    # port 9: nothing listens; were the key accepted, the error would be about the connection
    result = invoke("sft", "list", "--api-key", key, "--base-url", "http://127.0.0.1:9")
    line = _clear_error(result, code=2)
    assert what in line and "--api-key" in line
    assert "abcd" not in result.stderr  # the key is never shown
    result = invoke("sft", "list", "--base-url", "http://127.0.0.1:9", env={"SYNTH_API_KEY": key})
    assert "env SYNTH_API_KEY" in _clear_error(result, code=2)


# --------------------------------------------------------------------------- files


def test_fifo_and_devices_are_refused_at_once(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    env = {"PYTHONPATH": str(ROOT)}
    for args in (("traces", "--db", fifo), ("filter", "--db", fifo, "--dry-run"), ("session", "x", "--db", fifo),
                 ("sft", "validate", fifo), ("sft", "validate", "/dev/zero"), ("usage", "--db", "/dev/zero")):
        result = run_cli(*args, env=env, timeout=30)  # a hang fails with TimeoutExpired
        line = _clear_error(result)
        assert "not a regular file" in line, line


def test_demo_dir_that_cannot_be_created():
    line = _clear_error(invoke("demo", "--dir", "/proc/nope"), code=2)
    assert line.startswith("error: --dir /proc/nope: cannot create the directory")


def test_table_name_with_a_quote(fixture_db):
    conn = sqlite3.connect(fixture_db)
    conn.execute('CREATE TABLE "odd""name" (x INTEGER)')
    conn.execute('CREATE VIEW "v""w" AS SELECT 1 AS one')
    conn.commit()
    conn.close()
    for args in (("traces",), ("experiments",), ("usage",)):
        result = invoke("--json", *args, "--db", fixture_db)
        assert result.exit_code == 0, result.output
    result = invoke("--json", "filter", "--db", fixture_db, "--dry-run")
    assert result.exit_code == 0 and result.json()["examples"]["written"] == 240


def test_file_growing_during_upload_is_one_clear_error(tmp_path):
    """The upload sends exactly the size it announced, then says the file changed (no protocol
    error retried into 'connection cut')."""
    from helpers.devserver import running_server

    from synth_cli.api.client import ApiClient
    from synth_cli.api.files import Files
    from synth_cli.errors import SynthError

    data = tmp_path / "train.jsonl"
    line = b'{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}\n'
    data.write_bytes(line * 2000)

    def grow(sent, total):
        if sent == 0:
            with open(data, "ab") as fh:
                fh.write(line * 100)

    with running_server(tmp_path) as srv:
        client = ApiClient(srv.base_url, srv.api_key, max_retries=1)
        with pytest.raises(SynthError) as info:
            Files(client).upload(data, progress=grow)
        assert "changed while it was being uploaded" in info.value.message
        listed = client.get("files")["data"]
        assert listed == []  # nothing half-uploaded was stored


# --------------------------------------------------------------------------- reading trace DBs


def test_corrupt_db_under_root_is_skipped(tmp_path):
    root = tmp_path / "dbs"
    root.mkdir()
    shutil.copyfile(FIXTURE_DB, root / "good.db")
    bad = root / "bad.db"
    shutil.copyfile(FIXTURE_DB, bad)
    conn = sqlite3.connect(bad)
    conn.execute("PRAGMA journal_mode=delete")
    conn.close()
    with open(bad, "r+b") as fh:  # a valid header, garbage pages after it
        fh.seek(4096 * 3)
        fh.write(b"\xff" * 16384)
    for command in ("traces", "status"):
        result = invoke("--json", command, "--root", root)
        assert result.json()["skipped"] and result.json()["skipped"][0]["db"].endswith("bad.db"), result.output
        assert "warning: skipping" in result.stderr
    assert invoke("--json", "traces", "--root", root).json()["totals"]["sessions"] == 30
    # named explicitly, the same DB is an error
    _clear_error(invoke("traces", "--root", root, "--db", bad))


def _wal_db_with_committed_frames(directory):
    """A WAL DB whose last committed transaction lives only in its -wal (the writer was killed)."""
    db = directory / "t.db"
    shutil.copyfile(FIXTURE_DB, db)
    code = ("import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.execute('PRAGMA journal_mode=wal'); "
            "c.execute('PRAGMA wal_autocheckpoint=0'); "
            "c.execute(\"INSERT INTO experiments (experiment_id, name) VALUES ('exp-wal', 'only in the WAL')\"); "
            "c.commit(); os._exit(0)")
    subprocess.run([sys.executable, "-c", code, str(db)], check=True)
    try:
        os.unlink(f"{db}-shm")
    except FileNotFoundError:
        pass
    assert os.path.getsize(f"{db}-wal") > 0
    return db


def test_wal_db_on_a_read_only_mount(tmp_path):
    """The real thing: a read-only bind mount in a user namespace (no root needed)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False).returncode:
        pytest.skip("unprivileged user namespaces are not available here")
    mount = tmp_path / "ro"
    mount.mkdir()
    db = _wal_db_with_committed_frames(mount)
    script = (f"mount --bind -o ro {mount} {mount} && {sys.executable} -m synth_cli --json experiments --db {db}")
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "exp-wal" in {e["experiment_id"] for e in json.loads(proc.stdout)["experiments"]}
    assert sorted(os.listdir(mount)) == ["t.db", "t.db-wal"]  # nothing written next to it


def test_non_utf8_arguments_reach_sql_and_urls_safely(fixture_db):
    odd = os.fsdecode(b"\xff\xfe")  # what a shell passes for bytes that are not UTF-8
    for args in (("session", odd), ("experiment", odd), ("usage", "--model", odd),
                 ("filter", "--dry-run", "--experiment", odd), ("filter", "--dry-run", "--where", f"a={odd}")):
        result = invoke(*args, "--db", fixture_db)
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
        assert result.exit_code in (0, 1), (args, result.output)
    from synth_cli.api.client import path_segment

    assert path_segment(odd) == "%FF%FE"


def test_name_too_long_is_a_file_error(fixture_db):
    long_name = "a" * 5000
    for args in (("traces", "--root", long_name), ("filter", "--db", long_name, "--dry-run"),
                 ("--env-file", long_name, "traces", "--db", fixture_db)):
        line = _clear_error(invoke(*args))
        assert "too long" in line.lower(), line


@pytest.mark.parametrize("line", ["where = 5", "where = [5]", "limit = 1e400", "since = 07:32:00"])
def test_config_values_of_the_wrong_type(fixture_db, tmp_path, line):
    config = tmp_path / "f.toml"
    config.write_text(f"[filter]\n{line}\n")
    _clear_error(invoke("filter", "--db", fixture_db, "--config", config, "--dry-run"), code=2)


def test_wal_db_on_a_read_only_mount_that_cannot_be_copied_says_so(tmp_path):
    """When the private copy is impossible (here: larger than the limit), the DB is read without its
    WAL and a warning says committed sessions may be missing: never silently."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True, check=False).returncode:
        pytest.skip("unprivileged user namespaces are not available here")
    mount = tmp_path / "ro"
    mount.mkdir()
    db = _wal_db_with_committed_frames(mount)
    code = ("import sys; import synth_cli.store.reader as r; r.SNAPSHOT_MAX_BYTES = 0; "
            "from synth_cli.app import app; app(sys.argv[1:], prog_name='synth-ai')")
    script = f"mount --bind -o ro {mount} {mount} && {sys.executable} -c \"{code}\" --json experiments --db {db}"
    proc = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"warning: {db}: cannot read the transactions in t.db-wal (the directory cannot be written, and at 2 MB "
        "it is too large to copy); committed sessions may be missing"]
    assert "exp-wal" not in {e["experiment_id"] for e in json.loads(proc.stdout)["experiments"]}


def test_env_file_line_that_cannot_be_parsed_is_a_warning_line(fixture_db, tmp_path):
    env = tmp_path / "x.env"
    env.write_text("=oops\nSYNTH_TRACES_DB=" + str(fixture_db) + "\n")
    result = invoke("--env-file", env, "traces")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip().splitlines() == [
        f"warning: {env}: python-dotenv could not parse statement starting at line 1; that line is ignored"]
    assert "30" in result.stdout  # the line after it was read
