"""Secrets never reach the dataset: synth_cli.dataset.redact and `filter`'s scrubbing.

One test per pattern with the shapes it must catch and the near-misses that must survive;
then `filter` end to end on the published-tracer DB, whose planted secrets sit in user
content, tool arguments and tool results.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from synth_cli.dataset.redact import Redactor, redact_text
from helpers import invoke
from helpers.filterdb import call, make_db, text

FIXTURE = Path(__file__).parent / "fixtures" / "published"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())

# kind → (strings that are that secret, near-misses that must come out unchanged)
CASES = {
    "openai_key": (
        ["sk-proj-Xq3vT9mB2nL7kR4wZ8yH1cF6dJ0sA5gE3uP9oI2tY7rW4qN8bV6xM1zK5hG0jD3f",
         "sk-4fG7hJ2kL9mN3pQ6rS8tU1vW5xY0zA2bC4dE6fG8hJ1kL3mN",
         "sk-svcacct-Ab12Cd34Ef56Gh78Ij90Kl12Mn34Op56"],
        ["sk-1234", "task-sk-1234 and risk-assessment", "disk-usage-report-for-all-servers-2024",
         "sk-abcdefghijklmnopqrstuvwxyz"]),
    "anthropic_key": (
        ["sk-ant-api03-h7Gk2Lm9Qr4Tv8Wx1Yz3Ab6Cd0Ef5Gh9Ij2Kl7Mn4Op8Qr1St6Uv3Wx0Yz5Ab9Cd2Ef7Gh-Ij4KlAA",
         "sk-ant-admin01-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe"],
        ["sk-ant-", "the sk-ant- prefix names Anthropic keys"]),
    "aws_access_key": (
        ["AKIAZ7QW3ERT5YUI9OPA", "ASIAY34FZKBOKMUTVV7A"],
        ["AKIA is a prefix, AKIA123 is too short", "AKIAZ7QW3ERT5YUI9OPAX1", "akiaz7qw3ert5yui9opa"]),
    "github_token": (
        ["ghp_4fG7hJ2kL9mN3pQ6rS8tU1vW5xY0zA2bC4dE", "gho_16C7e42F292c6912E7710c838347Ae178B4a",
         "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUV"],
        ["https://example.com/ghp/readme", "ghp_short", "the ghp_ prefix"]),
    "gitlab_token": (
        ["glpat-xY7zW3vU9tS5rQ1pO8nM"],
        ["glpat-short", "see glpat- tokens in the docs"]),
    "slack_token": (
        ["xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "xoxp-1234-5678-abcdefgh"],
        ["xoxo hugs", "xoxb-", "xoxb-token"]),
    "google_api_key": (
        ["AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY"],
        ["AIza is a prefix", "AIzaSyD-short"]),
    "jwt": (
        ["eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4ifQ."
         "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"],
        ["eyJhbGciOiJIUzI1NiJ9", "a.b.c", "eyJ.eyJ.x"]),
    "private_key": (
        ["-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
         "-----END RSA PRIVATE KEY-----",
         "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
         "-----END OPENSSH PRIVATE KEY-----",
         "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"],  # cut short
        ["-----BEGIN CERTIFICATE-----\nMIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJ\n"
         "-----END CERTIFICATE-----",
         "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----"]),
}
# assignments: (text, what must remain) — the name stays, the value goes
ASSIGNMENTS = [
    ("DB_PASSWORD=hunter2-Correct-Horse", "DB_PASSWORD="),
    ("export GITHUB_TOKEN=abc123def456", "export GITHUB_TOKEN="),
    ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "AWS_SECRET_ACCESS_KEY="),
    ('{"api_key": "abcd-1234-efgh"}', '{"api_key": "'),
    ("client_secret: s3cr3t-value", "client_secret: "),
    ("Password: hunter22", "Password: "),
    ("stripe_key=rk_live_51H8abc", "stripe_key="),
]
ASSIGNMENT_NEAR_MISSES = [
    "max_tokens=512", "monkey=banana", "keyboard=qwerty1", "PWD=/home/user/app", "token_count=12345678",
    "the key: remember it well", "password=${DB_PASSWORD}", "api_key=<your-key>", "password=********",
    "api_key=123456", 'password: {"type": "string"}', "SECRET_KEY_BASE is read from the environment",
]


@pytest.mark.parametrize("kind", sorted(CASES))
def test_each_pattern_catches_its_secrets_and_spares_near_misses(kind):
    secrets, near_misses = CASES[kind]
    for secret in secrets:
        out, counts = redact_text(f"before {secret} after")
        assert out == f"before [REDACTED:{kind}] after", secret
        assert counts == {kind: 1}
    for near in near_misses:
        assert redact_text(near) == (near, {}), near


def test_assignments_lose_their_value_and_keep_their_name():
    for source, kept in ASSIGNMENTS:
        out, counts = redact_text(source)
        assert out.startswith(kept + "[REDACTED:secret_assignment]"), source
        assert counts == {"secret_assignment": 1}
    for near in ASSIGNMENT_NEAR_MISSES:
        assert redact_text(near) == (near, {}), near


def test_high_entropy_alone_is_not_a_secret():
    for s in ("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",  # sha256
              "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/XM+Liw==",  # base64
              "call_Xq3vT9mB2nL7kR4wZ8yH1cF6", "chatcmpl-9f86d081884c7d659a2feaa0c55ad015",
              "550e8400-e29b-41d4-a716-446655440000"):
        assert redact_text(s) == (s, {})


def test_pii_only_when_asked():
    source = "mail a.b+tag@example.co.uk or call +1 415-555-0100; on 2025-09-01 at 10.0.0.1, v1.2.3"
    assert redact_text(source) == (source, {})
    out, counts = redact_text(source, pii=True)
    assert out == ("mail [REDACTED:email] or call [REDACTED:phone]; on 2025-09-01 at 10.0.0.1, v1.2.3")
    assert counts == {"email": 1, "phone": 1}


def test_json_tool_arguments_stay_json():
    r = Redactor()
    args = json.dumps({"cmd": "deploy", "key": "settings.theme",
                       "env": {"GITHUB_TOKEN": "abcdefgh123", "OPENAI": "sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12"},
                       "password": "hunter22", "note": "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg\n"
                                                       "-----END PRIVATE KEY-----"})
    out = json.loads(r.arguments(args))
    assert out == {"cmd": "deploy", "key": "settings.theme",
                   "env": {"GITHUB_TOKEN": "[REDACTED:secret_assignment]", "OPENAI": "[REDACTED:openai_key]"},
                   "password": "[REDACTED:secret_assignment]", "note": "[REDACTED:private_key]"}
    clean = '{"actions": ["move_left"],   "reasoning": "a tree"}'
    assert r.arguments(clean) is clean  # unchanged bytes when nothing is found
    assert r.arguments("not json sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12") == "not json [REDACTED:openai_key]"


def test_example_every_string_images_untouched():
    image = "data:image/png;base64,sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12AKIAZ7QW3ERT5YUI9OPA=="
    example = {"messages": [
        {"role": "system", "content": "token=abcdef123456"},
        {"role": "user", "content": [{"type": "text", "text": "key sk-proj-Ab12Cd34Ef56Gh78Ij90Kl12"},
                                     {"type": "image_url", "image_url": {"url": image}}]},
        {"role": "assistant", "name": "agent-ghp_4fG7hJ2kL9mN3pQ6rS8tU1vW5xY0zA2bC4dE", "content": "",
         "tool_calls": [{"id": "call_1", "type": "function",
                         "function": {"name": "run", "arguments": '{"cmd": "echo AKIAZ7QW3ERT5YUI9OPA"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "xoxb-123456789012-1234567890123-AbCdEfGhIjKl"},
        {"role": "assistant", "content": "done"}],
        "tools": [{"type": "function", "function": {"name": "run", "description": "uses glpat-xY7zW3vU9tS5rQ1pO8nM"}}]}
    r = Redactor()
    assert r.example(example) is True
    line = json.dumps(example)
    for secret in ("abcdef123456", "Ab12Cd34Ef56Gh78Ij90Kl12\"", "4fG7hJ2kL9mN3pQ6rS8t", "echo AKIA", "xoxb-", "glpat-"):
        assert secret not in line, secret
    assert example["messages"][1]["content"][1]["image_url"]["url"] == image  # byte-identical
    assert example["messages"][3]["tool_call_id"] == "call_1"
    assert json.loads(example["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {
        "cmd": "echo [REDACTED:aws_access_key]"}
    assert r.summary() == {"mode": "secrets", "examples": 1, "by_kind": {
        "aws_access_key": 1, "github_token": 1, "gitlab_token": 1, "openai_key": 1, "secret_assignment": 1,
        "slack_token": 1}}
    assert r.example({"messages": [{"role": "user", "content": "hello"}]}) is False
    assert r.examples == 1


@pytest.fixture()
def db(tmp_path) -> Path:
    copy = tmp_path / "shapes.db"
    shutil.copy(FIXTURE / "shapes.db", copy)
    return copy


def _planted() -> list[str]:
    """Every planted secret, and each line of the multi-line ones, as it would appear in JSON."""
    out = []
    for value in EXPECTED["secrets"].values():
        out.append(json.dumps(value)[1:-1])
        out.extend(json.dumps(line)[1:-1] for line in value.split("\n") if len(line) > 20)
    out.append(EXPECTED["secrets"]["secret_assignment"].split("=", 1)[1])
    return out


def test_filter_scrubs_planted_secrets_by_default(db, tmp_path):
    out = tmp_path / "out.jsonl"
    result = invoke("--json", "filter", "--db", str(db), "-o", str(out))
    assert result.exit_code == 0, result.stderr
    written = out.read_bytes().decode()
    for secret in _planted():
        assert secret not in written, secret
    for near in EXPECTED["near_misses"]:
        assert near in written, near
    for line in written.splitlines():
        json.loads(line)  # still valid JSON
        for m in json.loads(line)["messages"]:
            for tc in m.get("tool_calls") or ():
                json.loads(tc["function"]["arguments"])  # arguments still JSON
    red = json.loads(result.stdout)["redaction"]
    assert red["mode"] == "secrets"
    assert red["examples"] == 2  # the two calls of the secrets session
    assert set(red["by_kind"]) == {"openai_key", "anthropic_key", "github_token", "aws_access_key", "private_key",
                                   "secret_assignment"}
    # the image of the Anthropic session is byte-identical to the source
    assert EXPECTED["calls"]["anthropic-call-1"]["messages"][1]["content"][1]["image_url"]["url"] in written


def test_no_redact_writes_strings_as_stored_and_says_so(db, tmp_path):
    out = tmp_path / "out.jsonl"
    result = invoke("--json", "filter", "--db", str(db), "-o", str(out), "--no-redact")
    assert result.exit_code == 0, result.stderr
    assert EXPECTED["secrets"]["openai_key"] in out.read_text()
    assert json.loads(result.stdout)["redaction"] == {"mode": "off", "examples": 0, "by_kind": {}}
    human = invoke("filter", "--db", str(db), "-o", str(out), "--no-redact")
    assert "redaction" in human.stdout and "off (--no-redact)" in human.stdout


def test_redact_pii_and_contradicting_flags(tmp_path):
    db = make_db(tmp_path / "p.db", [{"id": "s1", "calls": [call([text("user", "I am jo@example.com, +44 20 7946 0958")],
                                                                 "noted")]}])
    out = tmp_path / "out.jsonl"
    result = invoke("--json", "filter", "--db", str(db), "-o", str(out), "--redact", "pii")
    assert result.exit_code == 0, result.stderr
    assert "jo@example.com" not in out.read_text() and "7946" not in out.read_text()
    assert json.loads(result.stdout)["redaction"]["by_kind"] == {"email": 1, "phone": 1}
    default = invoke("--json", "filter", "--db", str(db), "-o", str(out))
    assert "jo@example.com" in out.read_text()
    assert json.loads(default.stdout)["redaction"]["mode"] == "secrets"
    bad = invoke("filter", "--db", str(db), "-o", str(out), "--redact", "pii", "--no-redact")
    assert bad.exit_code != 0 and "contradict" in bad.stderr
    bad = invoke("filter", "--db", str(db), "-o", str(out), "--redact", "everything")
    assert bad.exit_code != 0 and "expected secrets, pii or off" in bad.stderr
