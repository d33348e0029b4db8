"""Benchmark: the report commands on a big trace DB against a raw read of every call record.

    python bench/reports.py --db bench/.cache/filter-v4-1000x20.db [--runs 3]

Commands, whole processes, interleaved in rotating order, each --runs times after one warm-up
round (page cache warm): the floor (`python -c` reading every `events.call_records` value of
the DB with sqlite3, nothing parsed), then `synth-ai usage`, `traces`, `experiments` and
`recent --hours 1000000` on the same DB. Reported per command: median wall, peak RSS
(`/usr/bin/time -v`, bench/_measure.py), the floor and the ratio to it, and the load average.
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
from _measure import run  # noqa: E402

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
    args = ap.parse_args()
    db = Path(args.db)
    if db.is_dir():
        db = db / "dbs" / "default" / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    env["PYTHONPATH"] = str(ROOT)
    cli = [sys.executable, "-m", "synth_cli"]
    commands = [("floor", [sys.executable, "-c", FLOOR, str(db)]),
                ("usage", cli + ["usage", "--db", str(db)]),
                ("traces", cli + ["traces", "--db", str(db)]),
                ("experiments", cli + ["experiments", "--db", str(db)]),
                ("recent", cli + ["recent", "--hours", "1000000", "--db", str(db)])]
    walls: dict[str, list[float]] = {n: [] for n, _ in commands}
    rss: dict[str, list[int]] = {n: [] for n, _ in commands}
    for i in range(args.runs + 1):
        k = i % len(commands)
        for name, argv in commands[k:] + commands[:k]:
            wall, peak, proc = run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"{name} failed: {proc.stderr.decode()[-500:]}")
            if i:  # round 0 warms the page cache
                walls[name].append(wall)
                rss[name].append(peak)
                sys.stderr.write(f"  run {i} {name}: {wall:.2f}s\n")
    floor = statistics.median(walls["floor"])
    result = {"db": str(db), "db_mb": round(os.path.getsize(db) / 1e6, 1), "runs": args.runs,
              "load_average": [round(x, 1) for x in os.getloadavg()], "rss_method": "/usr/bin/time -v"}
    for name, _ in commands:
        median = statistics.median(walls[name])
        result[name] = {"median_wall_s": round(median, 3), "peak_rss_mb": round(max(rss[name]) / 2**20, 1),
                        "floor_s": round(floor, 3), "ratio_to_floor": round(median / floor, 2)}
    result["target_ratio_max"] = 1.5
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
