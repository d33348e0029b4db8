"""Start-up benchmark: `synth-ai --help` and `synth-ai traces --db <fixture>` as whole processes.

    python bench/startup.py [--runs 21] [--db PATH] [--json]

`--db` times `traces` on another DB (e.g. the 265 MB one `bench/filter.py` caches in
bench/.cache/); the targets apply to the fixture only.

Each command runs `--runs` times (after 2 warm-up runs) as a fresh process: the
`synth-ai` console script when it is on PATH, else `python -m synth_cli`. Wall time
is measured around the process; peak RSS is the child's own `ru_maxrss` from
`os.wait4` (what `/usr/bin/time -v` reports as "Maximum resident set size").

Writes nothing into the repository: the processes run in a temporary directory with
PYTHONPYCACHEPREFIX pointing into it, and the DB is opened read-only.
Targets (issue 2): --help median <= 0.25 s, traces <= 0.35 s, peak RSS <= 60 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "synth-ai-0.2.4.dev2-crafter"
TARGETS = {"help": 0.25, "traces": 0.35}
RSS_TARGET_MB = 60.0


def _command() -> list[str]:
    script = shutil.which("synth-ai")
    return [script] if script else [sys.executable, "-m", "synth_cli"]


def run_once(argv: list[str], env: dict, cwd: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one process."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode("utf-8", "replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
    return wall, usage.ru_maxrss / 1024.0, proc.returncode  # ru_maxrss is in KB on Linux


def measure(name: str, args: list[str], runs: int, warmup: int, env: dict, cwd: str) -> dict:
    argv = _command() + args
    for _ in range(warmup):
        run_once(argv, env, cwd)
    walls, rss = [], []
    for _ in range(runs):
        wall, peak, _ = run_once(argv, env, cwd)
        walls.append(wall)
        rss.append(peak)
    return {
        "name": name, "command": "synth-ai " + " ".join(args), "runs": runs,
        "median_s": round(statistics.median(walls), 4), "min_s": round(min(walls), 4),
        "max_s": round(max(walls), 4), "peak_rss_mb": round(max(rss), 1),
        "target_s": TARGETS.get(name), "rss_target_mb": RSS_TARGET_MB,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=21, help="measured runs per command (default 21)")
    ap.add_argument("--warmup", type=int, default=2, help="unmeasured runs first (default 2)")
    ap.add_argument("--db", default=str(FIXTURE), help="trace DB for `traces` (default: the test fixture)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNTH_", "LIBSQL_", "TURSO_"))}
        # Byte-code is cached as after any real install, but in the temp dir (warm-up runs fill it).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.update(PYTHONPYCACHEPREFIX=os.path.join(tmp, "pycache"), NO_COLOR="1", COLUMNS="160")
        results = [
            measure("help", ["--help"], args.runs, args.warmup, env, tmp),
            measure("traces", ["traces", "--db", str(Path(args.db).resolve())], args.runs, args.warmup, env, tmp),
        ]
        if Path(args.db).resolve() != FIXTURE.resolve():
            results[1]["target_s"] = None  # the target is for the fixture; other DBs are for information
    machine = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "launcher": " ".join(_command())}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
        return 0
    print(f"python {machine['python']} · {machine['cpus']} CPUs · launcher: {machine['launcher']}")
    print(f"{'command':<48} {'median':>8} {'min':>8} {'max':>8} {'peak RSS':>10}  target")
    for r in results:
        line = (f"{r['command'][:48]:<48} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['max_s']:>7.3f}s "
                f"{r['peak_rss_mb']:>7.1f} MB")
        if r["target_s"] is None:
            print(line + "  (no target for this DB)")
            continue
        ok = r["median_s"] <= r["target_s"] and r["peak_rss_mb"] <= RSS_TARGET_MB
        print(line + f"  ≤{r['target_s']} s, ≤{RSS_TARGET_MB:g} MB: {'ok' if ok else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
