"""The root app: version, help, global flags, error formatting, exit codes."""

from __future__ import annotations

import json

import pytest

from helpers import invoke, run_cli
from synth_cli import __version__, config


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.stdout.strip() == f"synth-ai {__version__}"


def test_python_dash_m_and_help():
    result = run_cli("--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout and "synth-ai" in result.stdout


def test_unknown_command_is_a_usage_error_on_one_line():
    result = run_cli("no-such-command")
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: ") and "no-such-command" in lines[0]
    assert lines[1].startswith("hint: ")
    assert result.stdout == ""


def test_global_flags_are_accepted_after_the_subcommand():
    from synth_cli.app import _hoist_global_flags

    assert _hoist_global_flags(["traces", "--json", "--limit", "3"]) == ["--json", "traces", "--limit", "3"]
    assert _hoist_global_flags(["x", "--", "--json"]) == ["x", "--", "--json"]


def test_mask_key_shapes():
    assert config.mask_key("sk_live_1234567890abcdefac95") == "sk_liv…ac95"
    assert config.mask_key(None) == "(none)"
    assert "secret" not in config.mask_key("secret12")


def test_redact_masks_registered_secrets_and_bearer_tokens():
    key = "sk_live_" + "x" * 20 + "ac95"
    config.register_secret(key)
    text = config.redact(f"failed with {key} and Authorization: Bearer abcdefghijklmnop")
    assert key not in text and "sk_liv…ac95" in text
    assert "abcdefghijklmnop" not in text


def test_key_chain_order_and_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("DEFAULT_DEV_API_KEY", "dev-key-000000000001")
    assert config.api_key().source == "env DEFAULT_DEV_API_KEY"
    monkeypatch.setenv("SYNTH_API_KEY", "api-key-000000000002")
    assert config.api_key().source == "env SYNTH_API_KEY"
    monkeypatch.setenv("SYNTH_BACKEND_API_KEY", "backend-key-000000003")
    assert config.api_key().value == "backend-key-000000003"
    assert config.api_key("flag-key-0000000000004").source == "--api-key"


def test_dotenv_does_not_override_the_shell(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("SYNTH_API_KEY=from-dotenv-000000001\nSYNTH_BASE_URL=http://example.test:9\n")
    monkeypatch.setenv("SYNTH_BASE_URL", "http://127.0.0.1:1234")
    config.load_env(cwd=tmp_path)
    assert config.api_key() == config.Setting("from-dotenv-000000001", ".env SYNTH_API_KEY")
    assert config.base_url() == config.Setting("http://127.0.0.1:1234/v1", "env SYNTH_BASE_URL")


def test_base_url_normalisation():
    assert config.normalize_base_url("http://h:8000") == "http://h:8000/v1"
    assert config.normalize_base_url("http://h:8000/v1/") == "http://h:8000/v1"
    assert config.normalize_base_url("https://api.example.com/api") == "https://api.example.com/api/v1"
    assert config.base_url().value == config.DEFAULT_BASE_URL


def test_missing_env_file_is_a_usage_error(fixture_db):
    result = run_cli("--env-file", "nope.env", "traces", "--db", str(fixture_db))
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --env-file nope.env: no such file")


def test_unexpected_errors_have_no_traceback_unless_debug(monkeypatch):
    from synth_cli.app import run_guarded

    def boom():
        raise RuntimeError("kaput")

    assert run_guarded(boom, debug=False) == 1
    assert json.dumps  # keep import used


def test_unexpected_and_interrupted_errors_are_one_line(capsys):
    from synth_cli.app import run_guarded

    def boom():
        raise RuntimeError("kaput")

    def ctrl_c():
        raise KeyboardInterrupt

    assert run_guarded(boom, debug=False) == 1
    err = capsys.readouterr().err
    assert err.splitlines() == ["error: unexpected RuntimeError: kaput",
                                "hint: run again with --debug (or SYNTH_DEBUG=1) for the traceback"]
    assert run_guarded(boom, debug=True) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.splitlines()[-1] == "error: unexpected RuntimeError: kaput"
    assert run_guarded(ctrl_c, debug=False) == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_every_global_option_works_after_the_subcommand(fixture_db, tmp_path):
    (tmp_path / "other.env").write_text("SYNTH_BASE_URL=http://127.0.0.1:9/from-file\n")
    version = invoke("traces", "--version")
    assert version.exit_code == 0 and version.stdout == f"synth-ai {__version__}\n"
    for args in (("--env-file", "other.env"), ("--env-file=other.env",)):
        result = invoke("status", "--db", fixture_db, *args, "--json")
        assert result.exit_code == 0, result.output
        assert result.json()["backend"]["base_url"] == "http://127.0.0.1:9/from-file/v1"
        assert result.json()["backend"]["base_url_source"] == ".env SYNTH_BASE_URL"
        config.reset_env_tracking()
    quiet = invoke("calc", "gpt-4o", "1M", "500k", "-q")
    assert quiet.exit_code == 0 and quiet.stdout == "7.50\n"
    assert invoke("calc", "gpt-4o", "1M", "500k", "--quiet").stdout == "7.50\n"
    missing = invoke("status", "--env-file")  # no value: an error, and `status` is not taken as the path
    assert missing.exit_code == 2 and "--env-file" in missing.stderr
    assert invoke("x", "--", "-q").exit_code == 2  # after `--` nothing is hoisted


def test_settings_precedence_flag_env_dotenv_default_end_to_end(tmp_path):
    """flag > shell environment > ./.env > default, as `status --json` reports value and source."""
    (tmp_path / ".env").write_text("SYNTH_BASE_URL=http://127.0.0.1:3/dotenv\n"
                                   "SYNTH_API_KEY=sk_live_fromdotenv0000000001\n")

    def backend(*args, env=None):
        result = run_cli("--json", "status", *args, env=env)
        assert result.exit_code == 0, result.output
        return result.json()["backend"]

    dotenv = backend()
    assert (dotenv["base_url"], dotenv["base_url_source"]) == ("http://127.0.0.1:3/dotenv/v1", ".env SYNTH_BASE_URL")
    assert (dotenv["api_key"], dotenv["api_key_source"]) == ("sk_liv…0001", ".env SYNTH_API_KEY")
    shell = backend(env={"SYNTH_BASE_URL": "http://127.0.0.1:4/", "SYNTH_API_KEY": "sk_live_fromshell00000000002"})
    assert (shell["base_url"], shell["base_url_source"]) == ("http://127.0.0.1:4/v1", "env SYNTH_BASE_URL")
    assert (shell["api_key"], shell["api_key_source"]) == ("sk_liv…0002", "env SYNTH_API_KEY")
    flag = backend("--base-url", "http://127.0.0.1:5/v1/", "--api-key", "sk_live_fromflag000000000003",
                   env={"SYNTH_BASE_URL": "http://127.0.0.1:4"})
    assert (flag["base_url"], flag["base_url_source"]) == ("http://127.0.0.1:5/v1", "--base-url")
    assert (flag["api_key"], flag["api_key_source"]) == ("sk_liv…0003", "--api-key")
    (tmp_path / ".env").unlink()
    default = backend()
    assert (default["base_url"], default["base_url_source"]) == (config.DEFAULT_BASE_URL, "default")
    # no key anywhere and the default local `serve`: its public dev key, said so
    assert (default["api_key"], default["api_key_source"]) == (config.DEFAULT_DEV_KEY, config.DEV_KEY_SOURCE)
    elsewhere = backend("--base-url", "http://127.0.0.1:6")
    assert elsewhere["api_key"] is None  # another backend never gets the dev key
    root = run_cli("--json", "--base-url", "http://127.0.0.1:7", "--api-key", "sk_live_fromroot0000000000004",
                   "status").json()["backend"]  # the globals before the command, like --json
    assert (root["base_url"], root["base_url_source"]) == ("http://127.0.0.1:7/v1", "--base-url")
    assert (root["api_key"], root["api_key_source"]) == ("sk_liv…0004", "--api-key")


def test_debug_env_traceback_masks_the_key(tmp_path):
    key = "sk_live_" + "d" * 22 + "ac95"
    plain = run_cli("status", "--base-url", f"ftp://{key}", env={"SYNTH_API_KEY": key})
    debug = run_cli("status", "--base-url", f"ftp://{key}", env={"SYNTH_API_KEY": key, "SYNTH_DEBUG": "1"})
    flag = run_cli("status", "--base-url", f"ftp://{key}", "--debug", env={"SYNTH_API_KEY": key})
    assert plain.exit_code == debug.exit_code == flag.exit_code == 2
    assert plain.stderr == "error: base URL 'ftp://sk_liv…ac95' must start with http:// or https://\n"
    for result in (debug, flag):
        assert result.stderr.startswith("Traceback (most recent call last):")
        assert "UsageError" in result.stderr and result.stderr.endswith(plain.stderr)
    assert key not in plain.stderr + debug.stderr + flag.stderr


@pytest.mark.parametrize("args", [(), ("sft",)], ids=["root", "group"])
def test_no_command_prints_the_help_and_no_empty_error(args):
    res = run_cli(*args)
    assert res.exit_code == 2
    assert "Usage: synth-ai" in res.stdout and ("Commands" in res.stdout or "Inspect traces:" in res.stdout)
    assert res.stderr == ""
