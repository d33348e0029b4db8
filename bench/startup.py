"""Start-up benchmark: `synth-ai --help` and `synth-ai traces --db <fixture>` as whole processes.

    python bench/startup.py [--runs 21] [--db PATH] [--json]

`--db` times `traces` on another DB (e.g. the 265 MB one `bench/filter.py` caches in
bench/.cache/); the targets apply to the fixture only.

Each command runs `--runs` times (after 2 warm-up runs) as a fresh process: the
`synth-ai` console script when it is on PATH, else `python -m synth_cli`. Wall time
is measured around the process (under `/usr/bin/time -v`, which adds its own exec, ~1 ms);
peak RSS is `/usr/bin/time -v`'s "Maximum resident set size", which cannot include this
bench process (see bench/_measure.py). The floor, measured the same way in the same run:
`python -c "import typer, rich"` (what any typer + rich CLI loads); each command's ratio to it
is printed.

Writes nothing into the repository: the processes run in a temporary directory with
PYTHONPYCACHEPREFIX pointing into it, and the DB is opened read-only.
Targets: --help median <= 0.12 s (issue 12; was 0.25 s), traces <= 0.35 s, peak RSS <= 60 MB.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "synth-ai-0.2.4.dev2-crafter"
TARGETS = {"help": 0.12, "traces": 0.35}
RSS_TARGET_MB = 60.0


def _command() -> list[str]:
    script = shutil.which("synth-ai")
    return [script] if script else [sys.executable, "-m", "synth_cli"]


def run_once(argv: list[str], env: dict, cwd: str) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, exit code) of one process, under /usr/bin/time -v (bench/_measure.py)."""
    sys.dont_write_bytecode = True  # no bench/__pycache__: this bench writes nothing into the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _measure import run

    wall, rss, proc = run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {err.strip()[-500:]}")
    return wall, rss / 2**20, proc.returncode


def measure(commands: list[tuple[str, list[str]]], runs: int, warmup: int, env: dict, cwd: str) -> list[dict]:
    """Each (name, argv) `runs` times, the commands interleaved (rotating order), after `warmup` rounds."""
    for _ in range(warmup):
        for _, argv in commands:
            run_once(argv, env, cwd)
    walls: dict[str, list[float]] = {name: [] for name, _ in commands}
    rss: dict[str, list[float]] = {name: [] for name, _ in commands}
    for i in range(runs):
        k = i % len(commands)
        for name, argv in commands[k:] + commands[:k]:
            wall, peak, _ = run_once(argv, env, cwd)
            walls[name].append(wall)
            rss[name].append(peak)
    floor = statistics.median(walls["floor"])
    out = []
    for name, argv in commands:
        median = statistics.median(walls[name])
        shown = " ".join(argv[2:]) if name == "floor" else "synth-ai " + " ".join(argv[len(_command()):])
        out.append({
            "name": name, "command": shown, "runs": runs,
            "median_s": round(median, 4), "min_s": round(min(walls[name]), 4),
            "max_s": round(max(walls[name]), 4), "peak_rss_mb": round(max(rss[name]), 1),
            "floor_s": round(floor, 4), "ratio_to_floor": round(median / floor, 2),
            "target_s": TARGETS.get(name), "rss_target_mb": RSS_TARGET_MB if name != "floor" else None,
        })
    return out


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
        results = measure([
            ("floor", [sys.executable, "-c", "import typer, rich"]),
            ("help", _command() + ["--help"]),
            ("traces", _command() + ["traces", "--db", str(Path(args.db).resolve())]),
        ], args.runs, args.warmup, env, tmp)
        if Path(args.db).resolve() != FIXTURE.resolve():
            results[2]["target_s"] = None  # the target is for the fixture; other DBs are for information
    machine = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "launcher": " ".join(_command()),
               "load_average": [round(x, 1) for x in os.getloadavg()],
               "rss_method": "/usr/bin/time -v"}
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
        return 0
    print(f"python {machine['python']} · {machine['cpus']} CPUs · launcher: {machine['launcher']} · "
          f"load {machine['load_average']}")
    print(f"{'command':<48} {'median':>8} {'min':>8} {'max':>8} {'peak RSS':>10} {'÷ floor':>8}  target")
    for r in results:
        line = (f"{r['command'][:48]:<48} {r['median_s']:>7.3f}s {r['min_s']:>7.3f}s {r['max_s']:>7.3f}s "
                f"{r['peak_rss_mb']:>7.1f} MB {r['ratio_to_floor']:>7.2f}x")
        if r["name"] == "floor":
            print(line + "  (the floor)")
            continue
        if r["target_s"] is None:
            print(line + "  (no target for this DB)")
            continue
        ok = r["median_s"] <= r["target_s"] and r["peak_rss_mb"] <= RSS_TARGET_MB
        print(line + f"  ≤{r['target_s']} s, ≤{RSS_TARGET_MB:g} MB: {'ok' if ok else 'OVER'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
