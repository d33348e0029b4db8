"""What the tests share: the fixture DB's paths and ground truth, and two ways to run the CLI
as a user would (:func:`invoke` in-process through typer's CliRunner, :func:`run_cli` as a
`python -m synth_cli` subprocess). Import it as `from helpers import ...`; the pytest fixtures
built on it live in tests/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "synth-ai-0.2.4.dev2-crafter"
FIXTURE_DB = FIXTURE_DIR / "dbs" / "default" / "data"
SHARED_DIR = ROOT.parent / "shared"

# Ground truth of the fixture (../shared/README.md).
FIXTURE_COUNTS = {
    "sessions": 30,
    "events": 720,
    "cais": 240,
    "environment": 240,
    "runtime": 240,
    "messages": 480,
    "timesteps": 240,
    "experiments": 3,
    "call_records": 240,
    "with_tool_calls": 165,
    "reward_ge_1": 20,
    "reward_ge_2": 9,
    "per_model": {"Qwen/Qwen3-4B-Instruct-2507": 80, "gpt-4o-mini": 80, "claude-3-5-haiku": 80},
}

# Variables the CLI reads: cleared for every test so the developer's shell cannot leak in.
_CLI_ENV = (
    "SYNTH_BACKEND_API_KEY", "SYNTH_API_KEY", "DEFAULT_DEV_API_KEY", "SYNTH_BACKEND_BASE_URL",
    "SYNTH_BASE_URL", "SYNTH_TRACES_ROOT", "SYNTH_TRACES_DB", "SYNTH_TRACES_BUSY_TIMEOUT", "LIBSQL_AUTH_TOKEN", "TURSO_AUTH_TOKEN",
    "SYNTH_DEBUG", "SYNTH_PRICING_FILE", "SYNTH_DEV_API_KEYS", "SYNTH_DATA_DIR",
    "OPENAI_API_KEY", "TOGETHER_API_KEY", "TOGETHER_BASE_URL", "SYNTH_PROVIDER", "SYNTH_CONFIRM_ABOVE_USD",
    "SYNTH_TOGETHER_MULTIPART_BYTES",
    "SYNTH_PROXY_UPSTREAM", "SYNTH_PROXY_SPOOL",
)


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self):
        import json

        return json.loads(self.stdout)


def invoke(*args: str, env: dict | None = None, input: str | None = None) -> CliResult:
    """Run the CLI in-process (typer's CliRunner), stdout and stderr kept apart."""
    from typer.testing import CliRunner

    from synth_cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, [str(a) for a in args], env=env, input=input, catch_exceptions=False)
    stderr = result.stderr if hasattr(result, "stderr") else ""
    return CliResult(result.exit_code, result.stdout, stderr)


def run_cli(*args: str, env: dict | None = None, timeout: float = 120, cwd: str | os.PathLike | None = None,
            input: str | None = None) -> CliResult:
    """Run `python -m synth_cli ARGS` in a subprocess, as a user would."""
    full_env = {k: v for k, v in os.environ.items() if k not in _CLI_ENV}
    full_env.update(env or {})
    proc = subprocess.run([sys.executable, "-m", "synth_cli", *map(str, args)], capture_output=True, text=True,
                          env=full_env, timeout=timeout, cwd=cwd, input=input)
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
