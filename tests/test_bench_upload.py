"""bench/upload.py runs end to end on a small file and reports what docs/performance.md quotes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from helpers import ROOT


def test_upload_bench_runs_small_and_reports_every_figure(tmp_path):
    before = {p: sorted(os.listdir(ROOT / p)) for p in (".", "bench", "tests")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "upload.py"), "--size-mb", "2", "--runs", "1",
                           "--poll-seconds", "2.5", "--interval", "0.5", "--cache", str(tmp_path)],
                          capture_output=True, text=True, timeout=180, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    upload = summary["upload"]
    assert upload["bytes"] == (tmp_path / "upload-2mb.jsonl").stat().st_size >= 2 * 2**20
    assert upload["throughput_mb_s"] > 0 and 5 < upload["client_peak_rss_mb"] <= 100
    assert upload["progress_callbacks"] >= 3  # the 1 MiB chunks were reported as they left
    for mode in ("pipe", "tty"):  # the whole `synth-ai sft submit` process, to a pipe and on a terminal
        assert upload[f"cli_submit_{mode}"]["seconds"] > 0
        assert 5 < upload[f"cli_submit_{mode}"]["peak_rss_mb"] <= 100
    polling = summary["polling"]
    assert polling["requests_per_minute"] > 0 and polling["events_received"] > 0
    # one job request and one incremental events request per poll (the first poll may page once more)
    assert polling["polls"] >= 2 and polling["event_requests"] <= polling["polls"] + 1
    assert polling["requests"] == polling["polls"] + polling["event_requests"]
    assert {p: sorted(os.listdir(ROOT / p)) for p in (".", "bench", "tests")} == before
