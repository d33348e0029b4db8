"""bench/serve.py runs end to end with tiny settings and reports what docs/performance.md quotes
(no figure is asserted: benchmarks are not tests)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

from helpers import ROOT


def test_serve_bench_runs_small_and_reports_every_figure(tmp_path):
    before = {p: sorted(os.listdir(ROOT / p)) for p in (".", "bench", "tests")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "serve.py"), "--rounds", "1", "--seconds", "0.2",
                           "--clients", "1,3", "--jobs", "2", "--json"],
                          capture_output=True, text=True, timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    rows = {(r["endpoint"], r["clients"]): r for r in summary["rows"]}
    assert set(rows) == {("jobs list", 1), ("jobs list", 3), ("job events", 1), ("job events", 3)}
    for row in rows.values():
        for side in ("serve", "floor"):
            assert row[side]["rps"] > 0 and 0 < row[side]["p50_ms"] <= row[side]["p99_ms"]
            assert math.isnan(row[side]["cpu_us"]) or row[side]["cpu_us"] > 0
        assert row["ratio"] == row["serve"]["rps"] / row["floor"]["rps"] and row["body_bytes"] > 100
    if os.access("/usr/bin/time", os.X_OK):  # each server's own peak RSS, never this process's
        assert 5 < summary["serve_peak_rss_mb"] < 200 and 5 < summary["floor_peak_rss_mb"] < 200
    assert isinstance(summary["target_met"], bool)
    assert summary["uvicorn"]["http"] in ("httptools", "h11") and summary["uvicorn"]["loop"] == "asyncio"
    assert {p: sorted(os.listdir(ROOT / p)) for p in (".", "bench", "tests")} == before
