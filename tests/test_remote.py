"""The inspection commands against a real libSQL server (sqld on 127.0.0.1, see tests/helpers/sqld.py):
the same answers over http:// as for the local file, and keyset pagination in bounded pages."""

from __future__ import annotations

import shutil

import pytest

from helpers.inspectdb import make_earlier_schema, sqld_dir
from helpers import FIXTURE_DIR, invoke

from helpers import sqld as _sqld

SESSION = "36f675cc-81e7-4ef5-e8e2-5d940ed90475"



def _strip(value, url: str):
    """The same document with the DB named alike: labels, kinds and sizes differ by design."""
    if isinstance(value, dict):
        return {k: _strip(v, url) for k, v in value.items() if k not in ("kind", "size_bytes", "elapsed_ms")}
    if isinstance(value, list):
        return [_strip(v, url) for v in value]
    if isinstance(value, str):
        return value.replace(url, "DB").replace(str(FIXTURE_DIR), "DB")
    return value


def _both(url: str, *args: str):
    remote = invoke("--json", *args, "--db", url)
    assert remote.exit_code == 0, remote.output
    local = invoke("--json", *args, "--db", FIXTURE_DIR)
    assert local.exit_code == 0, local.output
    return remote.json(), local.json()


@pytest.mark.parametrize("args", [
    ("traces",),
    ("usage",),
    ("usage", "--model", "gpt*", "--since", "2026-11-22T22:23:50"),
    ("session", SESSION),
    ("session", "36f6"),
    ("experiments",),
    ("experiment", "crafter_run_2"),
], ids=lambda a: " ".join(a))
def test_same_answers_over_http(sqld_url, args):
    remote, local = _both(sqld_url, *args)
    assert _strip(remote, sqld_url) == _strip(local, str(FIXTURE_DIR))


def test_traces_over_http_counts(sqld_url):
    remote, _ = _both(sqld_url, "traces")
    [row] = remote["dbs"]
    assert row["db"] == sqld_url and row["kind"] == "libsql"
    assert (row["sessions"], row["events"], row["llm_calls"], row["experiments"]) == (30, 720, 240, 3)
    assert row["size_bytes"] > 0


def test_human_session_over_http(sqld_url):
    result = invoke("session", "36f6", "--db", sqld_url)
    assert result.exit_code == 0, result.output
    assert f"DB          {sqld_url}" in result.stdout
    assert result.stdout.count("LLM call · ") == 8


def test_session_ambiguous_over_http(sqld_url):
    result = invoke("session", "3", "--db", sqld_url)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: session ID prefix '3' is ambiguous: 4 sessions match: ")


def test_keyset_scan_pages_through_the_fixture(sqld_url):
    """Small pages: every event once, in id order, and one bounded query per page."""
    from synth_cli.store.reader import TraceStore

    with TraceStore.open(sqld_url) as remote, TraceStore.open(FIXTURE_DIR) as local:
        executed: list[str] = []
        original = remote._read  # a scan's pages (Protobuf encoding)

        def counting(sql, params=()):
            executed.append(sql)
            result = original(sql, params)
            assert len(result.rows) <= 7
            return result

        remote._read = counting
        sql = "SELECT id, session_id, event_type FROM events WHERE event_type != ?"
        rows = [tuple(r) for r in remote.scan(sql, ["none"], key="id", page_size=7)]
        expected = [tuple(r) for r in local.scan(sql, ["none"], key="id")]
    assert len(rows) == 720 and rows == expected
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert len(executed) == 720 // 7 + 1  # 103 pages: 102 full + 1 short
    assert all("LIMIT ?" in sql for sql in executed)


def test_earlier_schema_over_http(tmp_path):
    if _sqld.sqld_binary() is None:
        pytest.skip(_sqld.install_error())
    root = sqld_dir(tmp_path / "old.db")
    make_earlier_schema(root / "dbs" / "default" / "data")
    with _sqld.running_sqld(root) as url:
        data = invoke("--json", "traces", "--db", url).json()
        usage = invoke("--json", "usage", "--db", url).json()
        session = invoke("--json", "session", SESSION, "--db", url).json()
    [row] = data["dbs"]
    assert row["call_records"] is False and row["llm_calls"] is None and row["events"] == 720
    assert usage["totals"]["calls"] == 240
    assert session["call_records_available"] is False and session["totals"]["events"] == 24


# --------------------------------------------------------------------------- auth tokens


def _jwt_pair(tmp_path):
    """An Ed25519 key file for sqld and a token signed with it (EdDSA JWT, built by hand)."""
    import base64
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519 as crypto

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    key = crypto.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    key_file = tmp_path / "jwt.key"
    key_file.write_text(b64(public))
    signing_input = b64(json.dumps({"alg": "EdDSA", "typ": "JWT"}).encode()) + "." + b64(b'{"a": "rw"}')
    return key_file, signing_input + "." + b64(key.sign(signing_input.encode()))


def test_auth_token_from_libsql_or_turso_env(tmp_path, monkeypatch):
    if _sqld.sqld_binary() is None:
        pytest.skip(_sqld.install_error())
    key_file, token = _jwt_pair(tmp_path)
    served = tmp_path / "crafter.db"
    shutil.copytree(FIXTURE_DIR, served)
    with _sqld.running_sqld(served, extra_args=("--auth-jwt-key-file", str(key_file))) as url:
        refused = invoke("traces", "--db", url)
        monkeypatch.setenv("LIBSQL_AUTH_TOKEN", "not.a.token")
        wrong = invoke("--debug", "traces", "--db", url)
        monkeypatch.setenv("LIBSQL_AUTH_TOKEN", token)
        libsql = invoke("--json", "traces", "--db", url)
        monkeypatch.delenv("LIBSQL_AUTH_TOKEN")
        monkeypatch.setenv("TURSO_AUTH_TOKEN", token)
        turso = invoke("--json", "session", SESSION[:8], "--db", url.replace("http://", "ws://"))
        monkeypatch.delenv("TURSO_AUTH_TOKEN")
        monkeypatch.delenv("SYNTH_DEBUG", raising=False)  # set by --debug above
        in_url = invoke("--json", "traces", "--db", f"{url}?authToken={token}")
        wrong_in_url = invoke("traces", "--db", f"{url.replace('http://', 'libsql://')}?tls=0&authToken=x{token}")
    assert refused.exit_code == 1 and refused.stdout == ""
    assert refused.stderr.splitlines() == [
        (f"error: {url}: the libSQL server refused the credentials "
         "(HTTP 401: Unauthorized: `Expected authorization header but none given`)"),
        "hint: set LIBSQL_AUTH_TOKEN (or TURSO_AUTH_TOKEN)"]
    assert wrong.exit_code == 1 and "hint: check the token in LIBSQL_AUTH_TOKEN" in wrong.stderr
    assert f"error: {url}: the libSQL server refused the credentials (HTTP 401: Unauthorized: " in wrong.stderr
    assert "not.a.token" not in wrong.stderr  # masked even in the --debug traceback
    assert libsql.exit_code == 0, libsql.output
    assert libsql.json()["totals"]["sessions"] == 30 and libsql.json()["totals"]["llm_calls"] == 240
    assert turso.exit_code == 0, turso.output
    assert turso.json()["session_id"] == SESSION
    assert token not in libsql.output + turso.output
    assert in_url.exit_code == 0, in_url.output
    assert in_url.json()["dbs"][0]["db"] == url and in_url.json()["totals"]["sessions"] == 30
    assert wrong_in_url.exit_code == 1
    assert wrong_in_url.stderr.splitlines() == [
        f"error: {url.replace('http://', 'libsql://')}: the libSQL server refused the credentials "
        "(HTTP 401: Unauthorized: `The JWT is invalid`)",
        "hint: check the authToken in the URL"]
    assert token not in in_url.output + wrong_in_url.output


def test_schema_in_one_query_is_the_local_schema(sqld_url):
    from synth_cli.store.reader import TraceStore

    with TraceStore.open(sqld_url) as remote, TraceStore.open(FIXTURE_DIR) as local:
        assert remote.schema.columns == local.schema.columns
        assert list(remote.schema.columns) == list(local.schema.columns)


def test_a_view_that_no_longer_compiles_fails_as_on_the_file(tmp_path):
    """The one-query schema falls back to a query per table, which fails as it always did."""
    import shutil
    import sqlite3

    if _sqld.sqld_binary() is None:
        pytest.skip(_sqld.install_error())
    served = tmp_path / "broken.db"
    shutil.copytree(FIXTURE_DIR, served)
    conn = sqlite3.connect(served / "dbs" / "default" / "data")
    conn.executescript("CREATE TABLE gone (x); CREATE VIEW broken AS SELECT x FROM gone; DROP TABLE gone;")
    conn.close()
    with _sqld.running_sqld(served) as url:
        remote = invoke("traces", "--db", url)
    local = invoke("traces", "--db", served)
    for result in (remote, local):
        assert result.exit_code == 1 and "Traceback" not in result.stderr
        assert result.stderr.startswith("error: ") and "no such table: main.gone" in result.stderr, result.stderr
