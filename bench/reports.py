"""Benchmark: the report commands on a big trace DB against a raw read of every call record.

    python bench/reports.py --db bench/.cache/filter-v4-1000x20.db [--runs 3] [--compare /work/main]

Commands, whole processes, interleaved in rotating order, each --runs times after one warm-up
round (page cache warm): the floor (`python -c` reading every `events.call_records` value of
the DB with sqlite3, nothing parsed), then `synth-ai usage`, `traces`, `experiments` and
`recent --hours 1000000` on the same DB. Also `startup`: `synth-ai usage` on the 30-session
fixture DB, what any report costs before it reads anything. With `--compare DIR`, the same
reports run from another checkout (e.g. the code before a change) in the same rounds.
Reported per command: median wall and CPU (user + system), peak RSS (`/usr/bin/time -v`,
bench/_measure.py), the floor and the ratios to it, and the load average.
Target (issue 12): each report <= 1.5 x the floor.

"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.dont_write_bytecode = True
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import bench_env, run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FLOOR = ("import sqlite3, sys, urllib.parse as u\n"
         "c = sqlite3.connect('file:' + u.quote(sys.argv[1]) + '?mode=ro', uri=True)\n"
         "n = 0\n"
         "for (b,) in c.execute(\"SELECT call_records FROM events WHERE event_type = 'cais' "
         "AND call_records IS NOT NULL\"):\n"
         "    n += len(b)\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="trace DB file or sqld directory")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--compare", metavar="DIR", help="another checkout whose reports run in the same rounds")
    args = ap.parse_args()
    db = Path(args.db)
    if db.is_dir():
        db = db / "dbs" / "default" / "data"
    env = bench_env(ROOT)  # bytecode cached, as an installed package has it
    fixture = ROOT / "tests" / "fixtures" / "synth-ai-0.2.4.dev2-crafter"

    def reports(tag: str, root: Path) -> list[tuple[str, list[str], dict[str, str]]]:
        cli = [sys.executable, "-m", "synth_cli"]
        own = bench_env(root)
        return [(f"usage{tag}", cli + ["usage", "--db", str(db)], own),
                (f"traces{tag}", cli + ["traces", "--db", str(db)], own),
                (f"experiments{tag}", cli + ["experiments", "--db", str(db)], own),
                (f"recent{tag}", cli + ["recent", "--hours", "1000000", "--db", str(db)], own)]

    commands = [("floor", [sys.executable, "-c", FLOOR, str(db)], env),
                ("startup", [sys.executable, "-m", "synth_cli", "usage", "--db", str(fixture)], env)]
    commands += reports("", ROOT)
    if args.compare:
        commands += reports(f" ({args.compare})", Path(args.compare).resolve())
    walls: dict[str, list[float]] = {n: [] for n, _, _ in commands}
    cpus: dict[str, list[float]] = {n: [] for n, _, _ in commands}
    rss: dict[str, list[int]] = {n: [] for n, _, _ in commands}
    for i in range(args.runs + 1):
        k = i % len(commands)
        for name, argv, cmd_env in commands[k:] + commands[:k]:
            before = os.times()
            wall, peak, proc = run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=cmd_env)
            after = os.times()
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {proc.stderr.decode()[-500:]}")
            if i:  # round 0 warms the page cache
                walls[name].append(wall)
                cpus[name].append(after.children_user - before.children_user
                                  + after.children_system - before.children_system)
                rss[name].append(peak)
                sys.stderr.write(f"  run {i} {name}: {wall:.2f}s\n")
    floor = statistics.median(walls["floor"])
    floor_cpu = statistics.median(cpus["floor"])
    result = {"db": str(db), "db_mb": round(os.path.getsize(db) / 1e6, 1), "runs": args.runs,
              "load_average": [round(x, 1) for x in os.getloadavg()], "rss_method": "/usr/bin/time -v"}
    for name, _, _ in commands:
        median = statistics.median(walls[name])
        cpu = statistics.median(cpus[name])
        result[name] = {"median_wall_s": round(median, 3), "median_cpu_s": round(cpu, 3),
                        "peak_rss_mb": round(max(rss[name]) / 2**20, 1), "floor_s": round(floor, 3),
                        "ratio_to_floor": round(median / floor, 2), "cpu_ratio_to_floor": round(cpu / floor_cpu, 2)}
    result["target_ratio_max"] = 1.5
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
