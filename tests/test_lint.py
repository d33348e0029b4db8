"""The lint gate: `ruff check` over the repository is clean, with the rules in pyproject.toml.

It runs as part of the test command, so CI (`.ci/run`) and a developer's run gate on it alike.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from helpers import ROOT


def test_ruff_check_is_clean():
    ruff = shutil.which("ruff") or shutil.which("ruff", path=str(ROOT / ".venv" / "bin"))
    command = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    result = subprocess.run([*command, "check", "--no-cache", "--output-format", "concise", str(ROOT)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
