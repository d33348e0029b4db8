"""Bad input to the inspection commands: one `error:` line (+ hint), an exit code, no traceback,
nothing created or changed."""

from __future__ import annotations

import os
import socket
import sqlite3

import pytest

from helpers.inspectdb import break_call_records, copy_fixture
from helpers import FIXTURE_DB, invoke, run_cli

READ_COMMANDS = [
    ("traces",),
    ("usage",),
    ("experiments",),
    ("recent",),
    ("status",),
    ("experiment", "crafter_run_0"),
    ("session", "36f6"),
]


def _one_error(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[0].startswith("error: ")
    assert all(line.startswith(("error: ", "hint: ")) for line in lines)
    assert len(lines) <= 2
    return lines[0]


def _listing(path):
    return sorted(os.listdir(path))


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_nonexistent_path_creates_nothing(tmp_path, command):
    missing = tmp_path / "missing" / "traces.db"
    before = _listing(tmp_path)
    line = _one_error(invoke(*command, "--db", missing))
    assert line == f"error: {missing}: no such file or directory"
    assert not missing.exists() and not missing.parent.exists()
    assert _listing(tmp_path) == before


def test_nonexistent_sqlite_url_and_root_create_nothing(tmp_path):
    line = _one_error(invoke("usage", "--db", "sqlite:///new.db"))
    assert "new.db: no such file or directory" in line
    assert not (tmp_path / "new.db").exists()
    line = _one_error(invoke("traces", "--root", tmp_path / "nowhere"))
    assert line == f"error: {tmp_path / 'nowhere'}: no such directory"
    assert not (tmp_path / "nowhere").exists()


def test_subprocess_nonexistent_path_no_traceback(tmp_path):
    missing = tmp_path / "x.db"
    for command in (("traces",), ("session", "abc"), ("usage",)):
        result = run_cli(*command, "--db", missing)
        _one_error(result)
        assert result.stdout == ""
    assert not missing.exists()


def test_directory_with_no_dbs(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    line = _one_error(invoke("usage", "--db", empty))
    assert line == f"error: {empty}: no trace database in this directory"
    result = invoke("traces", "--root", empty)
    assert result.exit_code == 0 and "No trace databases found" in result.stdout
    assert _listing(empty) == []


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_corrupt_file(tmp_path, command):
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(8192))
    data = junk.read_bytes()
    line = _one_error(invoke(*command, "--db", junk))
    assert line == f"error: {junk}: not a SQLite database (corrupt or another file type)"
    assert junk.read_bytes() == data


def test_truncated_sqlite_file(tmp_path):
    cut = tmp_path / "cut.db"
    cut.write_bytes(FIXTURE_DB.read_bytes()[:5000])
    line = _one_error(run_cli("traces", "--db", cut))
    assert str(cut) in line


def test_empty_file(tmp_path):
    empty = tmp_path / "empty.db"
    empty.touch()
    assert _one_error(invoke("traces", "--db", empty)) == f"error: {empty}: empty file, not a trace database"


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_sqlite_without_trace_tables(tmp_path, command):
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
    conn.close()
    result = invoke(*command, "--db", other)
    line = _one_error(result)
    assert line == f"error: {other}: not a synth-ai trace database (no session_traces, events table)"
    assert result.stderr.splitlines()[1].startswith("hint: ")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("command", [("traces",), ("usage",), ("session", "36f6")], ids=lambda c: c[0])
def test_unreachable_libsql_url(command):
    url = f"http://127.0.0.1:{_closed_port()}"
    result = run_cli(*command, "--db", url, timeout=60)
    line = _one_error(result)
    assert line == f"error: {url}: cannot reach the libSQL server (connection refused)"
    assert result.stdout == ""


def test_unreachable_libsql_ws_url():
    url = f"ws://127.0.0.1:{_closed_port()}"
    line = _one_error(run_cli("traces", "--db", url, timeout=60))
    assert line == f"error: {url}: cannot reach the libSQL server (connection refused)"


def test_ambiguous_session_prefix():
    line = _one_error(run_cli("session", "3", "--db", FIXTURE_DB))
    assert "ambiguous: 4 sessions match" in line


def test_malformed_call_records_are_skipped_and_counted(tmp_path):
    db = copy_fixture(tmp_path / "t.db")
    broken = break_call_records(db, ["{not json", "42", '"a string"'])
    event_ids = [e for e, _ in broken]
    session_id = broken[0][1]

    traces = invoke("--json", "traces", "--db", db)
    assert traces.exit_code == 0
    [row] = traces.json()["dbs"]
    assert row["malformed_call_records"] == 3
    assert row["llm_calls"] == 240 - 3
    assert "warning: 3 call_records values are not valid JSON arrays" in traces.stderr

    usage = invoke("--json", "usage", "--db", db)
    assert usage.exit_code == 0
    assert usage.json()["totals"]["calls"] == 240  # the events still count, by their columns

    session = invoke("--json", "session", session_id, "--db", db)
    assert session.exit_code == 0, session.output
    data = session.json()
    malformed_here = sum(1 for e, s in broken if s == session_id)
    assert data["totals"]["malformed_call_records"] == malformed_here
    assert data["totals"]["llm_calls"] == 8 - malformed_here
    flagged = [e["id"] for t in data["timesteps"] for e in t["events"] if e.get("malformed_call_records")]
    assert flagged == [e for e, s in broken if s == session_id]
    assert session.stderr.startswith(f"warning: {malformed_here} call_records value(s) could not be parsed")
    human = invoke("session", session_id, "--db", db)
    assert human.exit_code == 0 and "call_records malformed (skipped)" in human.stdout
    assert str(event_ids[0]) in human.stderr


def test_malformed_record_shapes_are_skipped_not_fatal(tmp_path):
    """Valid JSON of the wrong shape inside the array (a list of numbers) is malformed too."""
    db = copy_fixture(tmp_path / "t.db")
    [(event_id, session_id)] = break_call_records(db, ["[1, 2]"])
    data = invoke("--json", "session", session_id, "--db", db).json()
    assert data["totals"]["malformed_call_records"] == 1
    row = invoke("--json", "traces", "--db", db).json()["dbs"][0]
    assert row["llm_calls"] == 239  # no object in that array: no call counted


def test_bad_option_values_are_usage_errors():
    assert _one_error(invoke("traces", "--limit", "x"), code=2).startswith("error: ")
    assert _one_error(invoke("usage", "--db", FIXTURE_DB, "--since", "soon"), code=2).startswith("error: --since")
    assert _one_error(invoke("recent", "--hours", "-1", "--db", FIXTURE_DB), code=2)
    assert _one_error(invoke("session", "", "--db", FIXTURE_DB), code=2) == "error: session ID is empty"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/traces.db", "s3://bucket/traces.db", "postgres://u@127.0.0.1/db"])
def test_a_url_of_another_scheme_is_named_not_taken_for_a_path(tmp_path, url):
    """Before, `ftp://h/x` was read as the path `ftp:/h/x` ("no such file or directory")."""
    from synth_cli.errors import TraceStoreError
    from synth_cli.tracing.tracer import SessionTracer

    scheme = url.split(":", 1)[0]
    line = _one_error(invoke("traces", "--db", url))
    assert line == f"error: {url}: unsupported URL scheme '{scheme}'"
    out = tmp_path / "out.jsonl"
    assert _one_error(invoke("filter", "--db", url, "-o", out)) == line
    assert not out.exists()
    with pytest.raises(TraceStoreError, match=f"unsupported URL scheme '{scheme}'"):
        SessionTracer(url)
    assert _listing(tmp_path) == []
