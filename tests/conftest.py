"""pytest fixtures, injected by name: a clean environment for every test, private copies of the
fixture DB (`fixture_db`, `fixture_dir`) and the CLI runners (`cli`, `cli_process`). Shared code
the tests import lives in tests/helpers/.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import _CLI_ENV, FIXTURE_DB, FIXTURE_DIR, invoke, run_cli


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for name in _CLI_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    # refused connections are retried for 15 s by default (a backend restarting); 1 s keeps tests quick
    monkeypatch.setenv("SYNTH_CONNECT_RETRY_SECONDS", "1")
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    yield
    from synth_cli import config

    config.reset_env_tracking()


@pytest.fixture
def fixture_db(tmp_path) -> Path:
    """A private copy of the fixture DB file (tests may not touch tests/fixtures)."""
    target = tmp_path / "fixture.db"
    shutil.copyfile(FIXTURE_DB, target)
    return target


@pytest.fixture
def fixture_dir(tmp_path) -> Path:
    """A private copy of the fixture in sqld layout: DIR/dbs/default/data."""
    target = tmp_path / "crafter.db"
    shutil.copytree(FIXTURE_DIR, target)
    return target


@pytest.fixture(scope="module")
def sqld_url(tmp_path_factory):
    """A real sqld on 127.0.0.1 serving a private copy of the fixture, one per test module
    (tests/helpers/sqld.py; skipped when sqld cannot be installed)."""
    from helpers import sqld

    if sqld.sqld_binary() is None:
        pytest.skip(sqld.install_error())
    served = tmp_path_factory.mktemp("sqld") / "crafter.db"
    shutil.copytree(FIXTURE_DIR, served)
    with sqld.running_sqld(served) as url:
        yield url


@pytest.fixture
def cli():
    """The CLI in-process: `cli("traces", "--json")` -> CliResult (see helpers.invoke)."""
    return invoke


@pytest.fixture
def cli_process():
    """The CLI as a subprocess, as a user runs it (see helpers.run_cli)."""
    return run_cli
