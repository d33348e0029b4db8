"""`.env.example` lists every variable the CLI reads, each with a comment."""

from __future__ import annotations

import re

from helpers import ROOT
from synth_cli.config import ENV_VARS


def _example_vars() -> dict[str, bool]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    found: dict[str, bool] = {}
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z][A-Z0-9_]*)=", line)
        if m:
            found[m.group(1)] = i > 0 and lines[i - 1].startswith("#")
    return found


def test_every_variable_is_listed_with_a_comment():
    found = _example_vars()
    missing = sorted(set(ENV_VARS) - set(found))
    assert not missing, f".env.example lacks {missing}"
    uncommented = sorted(k for k, ok in found.items() if not ok)
    assert not uncommented, f"no comment above {uncommented}"


def test_no_unknown_variables_and_no_values():
    found = _example_vars()
    assert set(found) <= set(ENV_VARS), sorted(set(found) - set(ENV_VARS))
    text = (ROOT / ".env.example").read_text()
    assert not re.search(r"^[A-Z_]+=\S", text, re.M), "the example must not carry values"
