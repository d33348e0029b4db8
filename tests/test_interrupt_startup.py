"""Ctrl-C at any point of start-up: one `error: interrupted` line and exit 130, never a traceback.

The interrupt is delivered exactly while a given module is being imported (a meta-path
hook sends SIGINT to the process), so every early moment is tested deterministically,
from the package's first line through the command's own lazy imports.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import FIXTURE_DB, ROOT

_HOOK = """
import os, signal, sys
target = sys.argv.pop(1)

class Interrupt:
    def find_spec(self, name, path=None, target_=None):
        if name == target:
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, Interrupt())
sys.argv[0] = "synth-ai"  # as the console script runs it
from synth_cli.app import main
main()
"""


@pytest.mark.parametrize("module", [
    "synth_cli.errors",          # the package's first imports
    "typer",                     # the heavy import the issue saw interrupted
    "rich.table",                # rendering the result
    "synth_cli.commands.traces",  # command registration
    "synth_cli.output",          # the first thing run_guarded imports
    "synth_cli.config",          # the root callback
    "sqlite3",                   # inside the command
])
def test_sigint_during_startup_is_one_line(tmp_path, module):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("SYNTH_DEBUG", None)
    proc = subprocess.run([sys.executable, "-c", _HOOK, module, "traces", "--db", str(FIXTURE_DB)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 130, (proc.returncode, proc.stderr)
    assert proc.stderr.strip().splitlines() == ["error: interrupted"]


def test_library_import_keeps_python_sigint_handling(tmp_path):
    """Importing the package from an agent (the tracer) must not install the CLI's handler."""
    code = ("import signal, synth_cli, synth_cli.tracing; "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert proc.stdout.strip() == "True", proc.stderr
