"""What an install from an sdist or with `uv tool install` gets: docs/openapi and examples in the
sdist, an SPDX license, and man pages `synth-ai man --install` puts where man(1) looks."""

from __future__ import annotations

import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from helpers import ROOT, invoke

try:
    import tomllib
except ImportError:  # pragma: no cover - Python 3.10
    import tomli as tomllib


def test_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # a table is deprecated in setuptools (PEP 639)


def test_sdist_carries_the_contracts_examples_man_pages_and_schemas(tmp_path):
    pytest.importorskip("build")
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    [sdist] = tmp_path.glob("synth_ai-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
        info = tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith("/PKG-INFO"))).read().decode()
    for path in sorted((ROOT / "docs" / "openapi").rglob("*")) + sorted((ROOT / "examples").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            assert str(path.relative_to(ROOT)) in names, f"{path.relative_to(ROOT)} is not in the sdist"
    assert "man/synth-ai.1" in names and "synth_cli/data/schemas/traces.json" in names
    assert "tests/conftest.py" in names  # the contract tests run from an unpacked sdist
    assert "License-Expression: MIT" in info


def test_man_install_writes_the_pages_where_man_finds_them(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    result = invoke("--json", "man", "--install")
    assert result.exit_code == 0, result.output
    target = tmp_path / ".local" / "share" / "man" / "man1"
    assert result.json()["directory"] == str(target)
    assert (target / "synth-ai.1").is_file() and (target / "synth-ai-sft-run.1").is_file()
    assert "124" in (target / "synth-ai-sft-poll.1").read_text() or "124" in (target / "synth-ai.1").read_text()
    human = invoke("man", "--install")
    assert human.exit_code == 0 and "MANPATH" in human.stderr and str(target) in human.stdout
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert invoke("--json", "man", "--install").json()["directory"] == str(tmp_path / "xdg" / "man" / "man1")
    assert invoke("man", "--install", "sft").exit_code == 2


def test_readme_and_man_page_document_exit_124():
    readme = (ROOT / "README.md").read_text()
    assert "124" in readme and "--timeout" in readme
    assert "124" in Path(ROOT / "man" / "synth-ai.1").read_text()
