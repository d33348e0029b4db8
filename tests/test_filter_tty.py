"""`synth-ai filter` on a terminal: a progress bar with the total (the kept sessions' LLM events,
counted before the scan) and an ETA, not a spinner; nothing of it is left on the screen."""

from __future__ import annotations

from helpers import FIXTURE_DB
from tests.test_sft_tty import Terminal


def test_filter_shows_a_bar_with_a_total_on_a_terminal(tmp_path):
    out = tmp_path / "train.jsonl"
    term = Terminal("filter", "--db", FIXTURE_DB, "-o", out, env={})
    term.read()
    assert term.close() == 0, term.text
    assert "filtering" in term.text and "/240 LLM events" in term.text  # 240 calls in the fixture
    assert "examples" in term.text and out.stat().st_size > 0
