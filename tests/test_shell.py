"""The root app: version, help, global flags, error formatting, exit codes."""

from __future__ import annotations

import json

from conftest import invoke, run_cli
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
