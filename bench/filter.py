"""Benchmark: `synth-ai filter --mode calls` against the floor (bench/floor.py), whole processes.

1. A trace DB shaped like the fixture (tests/fixtures/synth-ai-0.2.4.dev2-crafter: a Crafter
   agent whose every call carries the whole conversation so far, tools offered on most calls,
   tool calls in most outputs, environment rewards and achievements, runtime events, messages)
   is written with the project's own tracer (`SessionTracer`), by default 1,000 sessions × 20
   steps ≈ 20,000 call records ≈ 250 MB, in sqld layout, cached under bench/.cache/
   (gitignored) between runs.
2. In the same run, in rotating order, --runs times each (after one warm-up of each so all read a
   warm page cache): `python -m synth_cli filter --db DB --mode calls -o OUT` (secrets scrubbed,
   the default), the same with `--no-redact`, and `python bench/floor.py DB OUT`. Reported per
   command: median wall time and peak RSS (`/usr/bin/time -v`: the largest process of the
   command's tree, never including this bench process), the floor and the ratio to it, and
   `redaction_cost` (filter / filter --no-redact - 1, by wall time; `redaction_cost_cpu` by CPU
   time, user + system of the whole tree, steadier on a shared machine). Commands: the floor, `filter --workers 2`
   (the default on 2 CPUs), `filter --workers 1`, `filter --workers 2 --no-redact`.
   Targets: filter (2 processes) wall <= 0.8 × floor, peak RSS <= 64 MB, identical bytes.
3. Once: `--mode sessions` on the same DB (wall, peak RSS, examples).
4. With --sqld (and tests/helpers/sqld.py able to start sqld), or --libsql-url URL (a server already
   serving the bench DB): the same filter against a libSQL server on loopback; reported: wall,
   examples/s and peak RSS.

    python bench/filter.py                         # full size
    python bench/filter.py --sessions 100          # quicker
    python bench/filter.py --sqld                  # also over http:// against sqld
    python bench/filter.py --libsql-url http://127.0.0.1:8080
Prints a JSON summary on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import Timed, bench_env, log

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
DB_VERSION = 4  # bump when the generated shape changes

SYSTEM = "You are an agent playing Crafter. Use the interact tool to act. Unlock achievements."
ACTIONS = ["noop", "move_left", "move_right", "move_up", "move_down", "do", "sleep", "place_stone", "place_table",
           "place_furnace", "place_plant", "make_wood_pickaxe", "make_stone_pickaxe", "make_wood_sword"]
ACHIEVEMENTS = ["collect_wood", "collect_sapling", "place_table", "collect_drink", "eat_cow", "wake_up",
                "collect_stone", "place_plant", "make_wood_pickaxe", "defeat_zombie"]
THINGS = ["water", "tree", "stone", "grass", "sand", "cow", "zombie", "coal", "iron", "table"]
SIDES = ["north", "south", "east", "west"]
MODELS = ["Qwen/Qwen3-4B-Instruct-2507", "gpt-4o-mini", "claude-3-5-haiku"]
TOOLS = [{"type": "function", "function": {
    "name": "interact", "description": "Take actions",
    "parameters": {"type": "object", "properties": {"actions": {"type": "array", "items": {"type": "string"}},
                                                    "reasoning": {"type": "string"}}, "required": ["actions"]}}}]


# --------------------------------------------------------------------------- the DB


def _observation(rng: random.Random, step: int) -> str:
    inv = ", ".join(f"{k}={rng.randint(0, 9)}" for k in ("wood", "sapling", "stone", "drink"))
    seen = "; ".join(f"{rng.choice(THINGS)} {rng.randint(1, 6)} steps {rng.choice(SIDES)}" for _ in range(2))
    grid = " ".join(rng.choice(THINGS)[:2] for _ in range(9))
    return (f"Step {step}. Health {rng.randint(3, 9)}/9, Food {rng.randint(3, 9)}/9, Drink {rng.randint(3, 9)}/9. "
            f"Inventory: {inv}. Nearby: {seen}. View (3x3): {grid}.")


def _part(text: str) -> dict:
    return {"type": "text", "text": text}


def crafter_step(rng: random.Random, s: int, step: int, history: list, model: str, call_id: str):
    """One agent step of the bench's Crafter shape: (observation, actions, reply text, LLMCallRecord).

    Appends the observation to `history` (the whole conversation so far goes into each call, as
    the published tracer's agents send it). The draws from `rng` are in a fixed order, so a seed
    always gives the same DB.
    """
    from synth_cli.tracing.models import LLMCallRecord

    obs = _observation(rng, step)
    history.append({"role": "user", "parts": [_part(obs)]})
    acts = [rng.choice(ACTIONS) for _ in range(rng.randint(1, 3))]
    text = f"I see {rng.choice(THINGS)} to the {rng.choice(SIDES)}, so I will {', '.join(acts)}."
    offer_tools = rng.random() < 0.7
    calls = []
    if offer_tools and rng.random() < 0.95:
        calls = [{"name": "interact", "call_id": f"call_{s}_{step}", "index": 0,
                  "arguments_json": json.dumps({"actions": acts, "reasoning": text})}]
    t0 = 1_750_000_000 + s * 100 + step
    record = LLMCallRecord.from_dict({
        "call_id": call_id, "provider": "synth", "model_name": model,
        "started_at": t0, "completed_at": t0 + 0.4, "latency_ms": 400,
        "request_params": {"temperature": 0.7, "max_tokens": 512,
                           "raw_params": {"tools": TOOLS} if offer_tools else {}},
        "input_messages": list(history),
        "output_messages": [{"role": "assistant", "parts": [_part(text)]}],
        "output_tool_calls": calls,
        "usage": {"input_tokens": 100 + 60 * step, "output_tokens": 40,
                  "total_tokens": 140 + 60 * step, "cost_usd": 0.0004},
        "finish_reason": "tool_calls" if calls else "stop", "outcome": "success"})
    return obs, acts, text, record


def build_db(path: Path, sessions: int, steps: int, seed: int = 0) -> None:
    from synth_cli.tracing.events import EnvironmentEvent, RuntimeEvent
    from synth_cli.tracing.tracer import SessionTracer

    rng = random.Random(seed)
    tmp = path.with_name(path.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    with SessionTracer(tmp, layout="sqld") as tracer:
        experiments = []
        for i in range(3):
            experiments.append(tracer.create_experiment(f"exp_bench_{i}", f"crafter_run_{i}", f"batch {i}"))
        for s in range(sessions):
            model = MODELS[s % len(MODELS)]
            achieved: dict[str, bool] = {a: False for a in ACHIEVEMENTS}
            history = [{"role": "system", "parts": [_part(SYSTEM)]}]
            metadata = {"experiment_id": experiments[s % 3], "model": model, "seed": s, "env_name": "crafter",
                        "task_split": "train" if s % 5 else "test"}
            with tracer.session(metadata=metadata, experiment_id=experiments[s % 3]):
                for step in range(steps):
                    with tracer.timestep(f"step_{step}", turn_number=step):
                        obs, acts, text, record = crafter_step(rng, s, step, history, model,
                                                               f"{s:08d}-{step:04d}-bench")
                        tracer.record_message(obs, message_type="user")
                        tracer.record_llm_call(record, system_instance_id="crafter-react-agent")
                        tracer.record_message(text, message_type="assistant")
                        tracer.record_event(RuntimeEvent(system_instance_id="crafter-runtime",
                                                         actions=[ACTIONS.index(a) for a in acts]))
                        reward = 0.0
                        if rng.random() < 0.06:
                            todo = [a for a, done in achieved.items() if not done]
                            if todo:
                                achieved[rng.choice(todo)] = True
                                reward = 1.0
                        tracer.record_event(EnvironmentEvent(
                            system_instance_id="crafter-env", reward=reward, terminated=step == steps - 1,
                            system_state_after={"public_state": {"achievements_status": dict(achieved)}}))
                        history.append({"role": "assistant", "parts": [_part(text)]})
            if (s + 1) % 100 == 0:
                log(f"  {s + 1}/{sessions} sessions ({time.perf_counter() - started:.0f}s)")
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def ensure_db(sessions: int, steps: int) -> Path:
    """The cached DB; built in a child process so this (measuring) process stays small.

    Built in a child so this (measuring) process stays small; peak RSS is measured through
    /usr/bin/time anyway (see run_measured).
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"filter-v{DB_VERSION}-{sessions}x{steps}.db"
    if not (path / "dbs" / "default" / "data").is_file():
        log(f"writing {path.name} with SessionTracer ({sessions} sessions × {steps} steps)…")
        subprocess.run([sys.executable, __file__, "--build", str(path), "--sessions", str(sessions),
                        "--steps", str(steps)], check=True, env=_env())
    return path


# --------------------------------------------------------------------------- measuring


CPU: dict[int, float] = {}  # id(cmd) → CPU seconds (user + sys, the whole tree) of its last run


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, int, int]:
    """(wall seconds, peak RSS bytes, exit status) of one child process; its CPU time goes to CPU[id(cmd)].

    Under `/usr/bin/time -v` (bench/_measure.py), so the peak RSS cannot include this (bench)
    process's pages; for a command with worker processes it is the largest process of the tree.
    """
    with Timed(cmd) as timed:
        started = time.perf_counter()
        proc = subprocess.run(timed.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()}")
        CPU[id(cmd)] = timed.cpu_s()
        return wall, timed.rss_bytes(), proc.returncode


def _env() -> dict:
    """The commands' environment: this checkout's code, no SYNTH_* settings, and compiled bytecode
    kept (bench_env: in $TMPDIR/synth-bench-pycache) as an installed package has it: with PYTHONDONTWRITEBYTECODE
    set (as in some sandboxes) every run would compile the CLI's modules again, a cost the floor,
    which imports two C modules, does not pay and no installed synth-ai pays either (pip compiles
    them at install). The warm-up round writes the cache (bench/startup.py does the same)."""
    return bench_env(ROOT)


def _self_rss() -> float | None:
    """This process's peak RSS (children's figures include it as a floor), MiB."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def count_lines(path: Path) -> int:
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sessions", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", metavar="PATH", help="measure this DB file (e.g. one --build wrote) instead of the cached one")
    ap.add_argument("--no-warmup", action="store_true", help="no warm-up run of each command (big DBs)")
    ap.add_argument("--skip-sessions", action="store_true", help="skip the --mode sessions run")
    ap.add_argument("--skip-no-redact", action="store_true", help="skip the --no-redact runs (no redaction_cost)")
    ap.add_argument("--sqld", action="store_true", help="also measure against sqld on loopback (tests/helpers/sqld.py)")
    ap.add_argument("--libsql-url", metavar="URL", help="also measure against this running libSQL server, "
                                                           "which must serve the bench DB")
    ap.add_argument("--build", metavar="PATH", help="write a bench DB (sqld layout) at PATH and stop")
    args = ap.parse_args()
    if args.build:
        sys.path.insert(0, str(ROOT))
        build_db(Path(args.build), args.sessions, args.steps)
        return 0

    if args.db:
        db_file = Path(args.db)
        if db_file.is_dir():
            db_file = db_file / "dbs" / "default" / "data"
        db_dir = db_file.parents[2] if db_file.parent.parent.name == "dbs" else db_file.parent
    else:
        db_dir = ensure_db(args.sessions, args.steps)
        db_file = db_dir / "dbs" / "default" / "data"
    size = os.path.getsize(db_file)
    log(f"DB: {db_file} ({size / 1e6:.0f} MB)")
    env = _env()
    work = Path(tempfile.mkdtemp(prefix="bench-filter-"))
    try:
        def filter_cmd(name: str, *extra: str) -> list[str]:
            return [sys.executable, "-m", "synth_cli", "filter", "--db", str(db_file), "--mode", "calls",
                    "-o", str(work / f"{name}.jsonl"), "--quiet", *extra]

        out_floor = work / "floor.jsonl"
        cmd_floor = [sys.executable, str(ROOT / "bench" / "floor.py"), str(db_file), str(out_floor)]
        # filter: the default (secrets scrubbed, --workers = the CPU count, 2 here), one process, no scrubbing
        commands = [("floor", cmd_floor), ("filter", filter_cmd("filter", "--workers", "2")),
                    ("filter_1_process", filter_cmd("filter1", "--workers", "1")),
                    ("filter_no_redact", filter_cmd("plain", "--workers", "2", "--no-redact"))]
        if args.skip_no_redact:
            commands.pop()
        if not args.no_warmup:
            log("warm-up…")
            for _, cmd in commands:
                run_measured(cmd, env)
        walls: dict[str, list[float]] = {name: [] for name, _ in commands}
        rss: dict[str, list[int]] = {name: [] for name, _ in commands}
        cpu: dict[str, list[float]] = {name: [] for name, _ in commands}
        for i in range(args.runs):
            k = i % len(commands)  # rotate the order, so no command always runs first
            for name, cmd in commands[k:] + commands[:k]:
                wall, peak, _ = run_measured(cmd, env)
                walls[name].append(wall)
                rss[name].append(peak)
                cpu[name].append(CPU[id(cmd)])
                log(f"  run {i + 1} {name}: {wall:.2f}s, CPU {CPU[id(cmd)]:.2f}s, {peak / 2**20:.0f} MiB")
        examples = count_lines(work / "filter.jsonl")
        records = count_lines(out_floor)
        same = (work / "filter.jsonl").read_bytes() == (work / "filter1.jsonl").read_bytes()
        result: dict = {
            "db": str(db_file.relative_to(ROOT)) if db_file.is_relative_to(ROOT) else str(db_file),
            "db_mb": round(size / 1e6, 1),
            "call_records": records, "examples": examples, "runs": args.runs,
            "python": sys.version.split()[0], "cpus": os.cpu_count(),
            "load_average": [round(x, 1) for x in os.getloadavg()],
            "rss_method": "/usr/bin/time -v (largest process of the command's tree)",
            "workers_output_identical": same,
        }
        floor = statistics.median(walls["floor"])
        floor_cpu = statistics.median(cpu["floor"])
        for name, _ in commands:
            median = statistics.median(walls[name])
            result[name] = {"median_wall_s": round(median, 3), "min_wall_s": round(min(walls[name]), 3),
                            "max_wall_s": round(max(walls[name]), 3),
                            "median_cpu_s": round(statistics.median(cpu[name]), 3),
                            "cpu_ratio_to_floor": round(statistics.median(cpu[name]) / floor_cpu, 2),
                            "peak_rss_mb": round(max(rss[name]) / 2**20, 1),
                            "floor": "floor" if name != "floor" else None,
                            "ratio_to_floor": round(median / floor, 2)}
        result["wall_ratio"] = result["filter"]["ratio_to_floor"]
        if "filter_no_redact" in result:  # what scrubbing secrets (on by default) adds to the filter's time
            result["redaction_cost"] = round(result["filter"]["median_wall_s"]
                                             / result["filter_no_redact"]["median_wall_s"] - 1, 3)
            result["redaction_cost_cpu"] = round(result["filter"]["median_cpu_s"]
                                                 / result["filter_no_redact"]["median_cpu_s"] - 1, 3)
        result["targets"] = {"wall_ratio_2_processes_max": 0.8, "peak_rss_mb_max": 64,
                             "met": result["wall_ratio"] <= 0.8 and result["filter"]["peak_rss_mb"] <= 64
                             and same}
        if not args.skip_sessions:
            out_sessions = work / "sessions.jsonl"
            wall, peak, _ = run_measured([sys.executable, "-m", "synth_cli", "filter", "--db", str(db_file),
                                          "--mode", "sessions", "-o", str(out_sessions), "--quiet"], env)
            result["sessions_mode"] = {"wall_s": round(wall, 3), "peak_rss_mb": round(peak / 2**20, 1),
                                       "examples": count_lines(out_sessions),
                                       "ratio_to_floor": round(wall / floor, 2)}
        if args.sqld:
            result["sqld"] = bench_sqld(db_dir, work, env)
        if args.libsql_url:
            result["libsql"] = bench_remote(args.libsql_url, work, env)
        print(json.dumps(result, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def bench_sqld(db_dir: Path, work: Path, env: dict) -> dict:
    sys.path.insert(0, str(ROOT))
    try:
        from tests.helpers.sqld import running_sqld, sqld_binary
    except ImportError:
        return {"skipped": "tests/helpers/sqld.py is not there"}
    if sqld_binary() is None:
        return {"skipped": "sqld could not be installed"}
    copy = work / "served.db"
    shutil.copytree(db_dir, copy)
    with running_sqld(copy) as url:
        return bench_remote(url, work, env)


def bench_remote(url: str, work: Path, env: dict) -> dict:
    out = work / "remote.jsonl"
    cmd = [sys.executable, "-m", "synth_cli", "filter", "--db", url, "--mode", "calls", "-o", str(out), "--quiet"]
    log(f"filter over {url}…")
    wall, peak, _ = run_measured(cmd, env)
    examples = count_lines(out)
    return {"server": "libSQL (sqld) on 127.0.0.1", "wall_s": round(wall, 2), "examples": examples,
            "examples_per_s": round(examples / wall), "peak_rss_mb": round(peak / 2**20, 1)}


if __name__ == "__main__":
    sys.exit(main())
