"""Benchmark: `SessionTracer` call records/s into a local file, 1 and 8 writers, against a floor.

* **Input** (built in each writer process before the clock starts): sessions shaped like the
  fixture (a Crafter agent; per step a user message, an LLM call whose record carries the whole
  conversation so far, tools on ~70% of calls, an assistant message, a runtime event and an
  environment event), as an agent has them: `LLMCallRecord` objects and event objects.
* **Tracer**: W processes, each its own `SessionTracer` on one shared new DB file, recording
  its sessions (`session`, `timestep`, `record_message`, `record_llm_call`, `record_event`,
  one transaction per session), all started at once.
* **Floor**: the same rows (the per-event figures included), read back from the tracer's DB
  before the clock starts, inserted
  by W processes into a new DB with the same schema with plain `executemany`, one
  transaction per session: no objects, no serialisation, no checks.
* Throughput: call records / (last writer's end - first writer's start); also the writers' CPU
  time per call record (steadier than wall time on a shared machine). In both, what was built
  before the clock started is moved out of the garbage collector's view (`gc.freeze()`), so
  neither pays for rescanning its input. Peak RSS of each
  writer process by `/usr/bin/time -v` (a small launcher, so the figure cannot include this
  process). Each configuration --runs times, alternating tracer and floor; medians.

    python bench/tracer.py                     # 1 and 8 writers, 80 sessions x 20 steps per writer
    python bench/tracer.py --sessions 20 --runs 1
Prints a JSON summary on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import TIME, bench_env, log, max_rss_bytes

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- input


def build_input(sessions: int, steps: int, seed: int) -> list:
    sys.path.insert(0, str(ROOT / "bench"))
    from filter import ACHIEVEMENTS, ACTIONS, MODELS, SYSTEM, _part, crafter_step

    from synth_cli.tracing.events import EnvironmentEvent, RuntimeEvent

    rng = random.Random(seed)
    out = []
    for s in range(sessions):
        model = MODELS[s % len(MODELS)]
        achieved = {a: False for a in ACHIEVEMENTS}
        history = [{"role": "system", "parts": [_part(SYSTEM)]}]
        session_steps = []
        for step in range(steps):
            obs, acts, text, record = crafter_step(rng, s, step, history, model, f"{seed:03d}-{s:06d}-{step:04d}")
            reward = 0.0
            if rng.random() < 0.06:
                todo = [a for a, done in achieved.items() if not done]
                if todo:
                    achieved[rng.choice(todo)] = True
                    reward = 1.0
            session_steps.append((obs, record, text,
                                  RuntimeEvent(system_instance_id="crafter-runtime",
                                               actions=[ACTIONS.index(a) for a in acts]),
                                  EnvironmentEvent(system_instance_id="crafter-env", reward=reward,
                                                   terminated=step == steps - 1,
                                                   system_state_after={"public_state": {
                                                       "achievements_status": dict(achieved)}})))
            history.append({"role": "assistant", "parts": [_part(text)]})
        out.append(({"model": model, "seed": s, "env_name": "crafter"}, session_steps))
    return out


def _wait_for(go: Path) -> None:
    while not go.exists():
        time.sleep(0.0005)


def child_tracer(db: str, writer: int, sessions: int, steps: int, go: Path) -> dict:
    from synth_cli.tracing.tracer import SessionTracer

    data = build_input(sessions, steps, seed=writer)
    gc.freeze()  # the input is the agent's, built before the clock: the collector need not rescan it
    Path(f"{go}.{writer}").touch()
    _wait_for(go)
    started, cpu = time.time(), time.process_time()
    records = 0
    with SessionTracer(db) as tracer:
        for s, (metadata, session_steps) in enumerate(data):
            with tracer.session(session_id=f"w{writer:02d}-{s:06d}", metadata=metadata):
                for step, (obs, record, text, runtime, env) in enumerate(session_steps):
                    with tracer.timestep(f"step_{step}", turn_number=step):
                        tracer.record_message(obs, message_type="user")
                        tracer.record_llm_call(record, system_instance_id="crafter-react-agent")
                        tracer.record_message(text, message_type="assistant")
                        tracer.record_event(runtime)
                        tracer.record_event(env)
                        records += 1
    return {"start": started, "end": time.time(), "cpu": time.process_time() - cpu, "records": records}


def child_floor(src: str, db: str, writer: int, go: Path) -> dict:
    """The same rows, plain executemany, one transaction per session."""
    conn_src = sqlite3.connect(f"file:{src}?mode=ro", uri=True)
    prefix = f"w{writer:02d}-%"
    sessions = conn_src.execute("SELECT session_id, created_at, num_timesteps, num_events, num_messages, metadata,"
                                " experiment_id FROM session_traces WHERE session_id LIKE ? ORDER BY session_id",
                                (prefix,)).fetchall()
    step_cols = "step_id, step_index, turn_number, started_at, completed_at, num_events, num_messages, step_metadata"
    event_cols = [r[1] for r in conn_src.execute("PRAGMA table_info(events)") if r[1] not in ("id", "embedding")]
    message_cols = [r[1] for r in conn_src.execute("PRAGMA table_info(messages)") if r[1] not in ("id", "embedding")]
    data = []
    for row in sessions:
        sid = row[0]
        steps = conn_src.execute(f"SELECT id, {step_cols} FROM session_timesteps WHERE session_id = ? ORDER BY id",
                                 (sid,)).fetchall()
        events = conn_src.execute(f"SELECT {', '.join(event_cols)} FROM events WHERE session_id = ? ORDER BY id",
                                  (sid,)).fetchall()
        messages = conn_src.execute(f"SELECT {', '.join(message_cols)} FROM messages WHERE session_id = ? "
                                    "ORDER BY id", (sid,)).fetchall()
        # the per-event figures the tracer stores with its events: (position among the session's events, figures)
        figures = conn_src.execute("SELECT (SELECT count(*) FROM events x WHERE x.session_id = e.session_id "
                                   "AND x.id < e.id), f.llm_calls, f.cost_usd, f.malformed FROM events e "
                                   "JOIN _synth_event_figures f ON f.event_id = e.id WHERE e.session_id = ? "
                                   "ORDER BY e.id", (sid,)).fetchall()
        data.append((row, steps, events, messages, figures))
    conn_src.close()
    records = sum(1 for _, _, events, _, _ in data for e in events if e[event_cols.index("event_type")] == "cais")
    t_idx = event_cols.index("timestep_id")
    m_idx = message_cols.index("timestep_id")
    insert_event = f"INSERT INTO events ({', '.join(event_cols)}) VALUES ({', '.join('?' * len(event_cols))})"
    insert_message = (f"INSERT INTO messages ({', '.join(message_cols)}) "
                      f"VALUES ({', '.join('?' * len(message_cols))})")
    insert_step = f"INSERT INTO session_timesteps (session_id, {step_cols}) VALUES ({', '.join('?' * 9)})"
    gc.freeze()  # as in the tracer's writers
    Path(f"{go}.{writer}").touch()
    _wait_for(go)
    started, cpu = time.time(), time.process_time()
    conn = sqlite3.connect(db, timeout=60, isolation_level=None)
    for row, steps, events, messages, figures in data:
        conn.execute("BEGIN IMMEDIATE")
        first = (conn.execute("SELECT max(id) FROM events").fetchone()[0] or 0) + 1
        conn.execute("INSERT INTO session_traces (session_id, created_at, num_timesteps, num_events, num_messages,"
                     " metadata, experiment_id) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
        ids = {}
        for step in steps:
            ids[step[0]] = conn.execute(insert_step, (row[0], *step[1:])).lastrowid
        conn.executemany(insert_event, [(*e[:t_idx], ids.get(e[t_idx]), *e[t_idx + 1:]) for e in events])
        conn.executemany(insert_message, [(*m[:m_idx], ids.get(m[m_idx]), *m[m_idx + 1:]) for m in messages])
        conn.executemany("INSERT INTO _synth_event_figures (event_id, llm_calls, cost_usd, malformed) "
                         "VALUES (?, ?, ?, ?)", [(first + i, *rest) for i, *rest in figures])
        conn.execute("COMMIT")
    conn.close()
    return {"start": started, "end": time.time(), "cpu": time.process_time() - cpu, "records": records}


# --------------------------------------------------------------------------- driving


def _env() -> dict:
    return bench_env(ROOT, drop=())


def run_writers(kind: str, writers: int, args, db: Path, src: Path | None, work: Path) -> dict:
    go = work / f"go-{kind}-{writers}-{time.time_ns()}"
    procs = []
    for w in range(writers):
        cmd = [sys.executable, __file__, "--child", kind, "--db", str(db), "--writer", str(w),
               "--sessions", str(args.sessions), "--steps", str(args.steps), "--go", str(go)]
        if src is not None:
            cmd += ["--src", str(src)]
        timing = work / f"time-{kind}-{w}.txt"
        procs.append((subprocess.Popen([TIME, "-v", "-o", str(timing), *cmd], stdout=subprocess.PIPE,
                                       env=_env()), timing))
    while not all(Path(f"{go}.{w}").exists() for w in range(writers)):
        if any(p.poll() not in (None, 0) for p, _ in procs):
            raise SystemExit(f"a {kind} writer failed")
        time.sleep(0.01)
    go.touch()
    results, peaks = [], []
    for proc, timing in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a {kind} writer failed (exit {proc.returncode})")
        results.append(json.loads(out))
        peaks.append(max_rss_bytes(timing.read_text()))
    records = sum(r["records"] for r in results)
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    return {"records": records, "wall_s": wall, "records_per_s": records / wall, "peak_rss_mb": max(peaks) / 2**20,
            "cpu_us_per_record": cpu / records * 1e6}


def new_db(path: Path) -> None:
    from synth_cli.store.writers import open_writer

    open_writer(path).close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, default=80, help="sessions per writer")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--writers", default="1,8")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child")
    parser.add_argument("--db")
    parser.add_argument("--src")
    parser.add_argument("--writer", type=int, default=0)
    parser.add_argument("--go")
    args = parser.parse_args()
    if args.child == "tracer":
        print(json.dumps(child_tracer(args.db, args.writer, args.sessions, args.steps, Path(args.go))))
        return 0
    if args.child == "floor":
        print(json.dumps(child_floor(args.src, args.db, args.writer, Path(args.go))))
        return 0
    if not os.access(TIME, os.X_OK):
        raise SystemExit(f"{TIME} is needed to measure each writer's peak RSS")
    summary = {"sessions_per_writer": args.sessions, "steps": args.steps, "runs": args.runs, "configs": []}
    with tempfile.TemporaryDirectory(prefix="bench-tracer-") as tmp:
        work = Path(tmp)
        for writers in [int(w) for w in args.writers.split(",")]:
            tracer_runs, floor_runs = [], []
            for run in range(args.runs):
                traced = work / f"traced-{writers}-{run}.db"
                new_db(traced)          # both start from an empty DB with the schema in place
                tracer_runs.append(run_writers("tracer", writers, args, traced, None, work))
                floor_db = work / f"floor-{writers}-{run}.db"
                new_db(floor_db)
                floor_runs.append(run_writers("floor", writers, args, floor_db, traced, work))
                for p in work.glob("*.db*"):
                    if p.name.startswith("floor"):
                        p.unlink()
                log(f"{writers} writer(s), run {run + 1}: tracer {tracer_runs[-1]['records_per_s']:,.0f}/s, "
                    f"floor {floor_runs[-1]['records_per_s']:,.0f}/s")
                for p in work.glob(f"traced-{writers}-{run}.db*"):
                    p.unlink() if p.is_file() else shutil.rmtree(p)
            tracer_rate = statistics.median(r["records_per_s"] for r in tracer_runs)
            floor_rate = statistics.median(r["records_per_s"] for r in floor_runs)
            config = {
                "writers": writers, "records": tracer_runs[0]["records"],
                "tracer_records_per_s": round(tracer_rate), "floor_records_per_s": round(floor_rate),
                "floor_over_tracer": round(floor_rate / tracer_rate, 2),
                "tracer_cpu_us_per_record": round(statistics.median(r["cpu_us_per_record"] for r in tracer_runs)),
                "floor_cpu_us_per_record": round(statistics.median(r["cpu_us_per_record"] for r in floor_runs)),
                "tracer_peak_rss_mb": round(max(r["peak_rss_mb"] for r in tracer_runs), 1),
                "floor_peak_rss_mb": round(max(r["peak_rss_mb"] for r in floor_runs), 1),
            }
            summary["configs"].append(config)
            log(f"{writers} writer(s): floor {floor_rate:,.0f} records/s, tracer {tracer_rate:,.0f} records/s, "
                f"ratio {floor_rate / tracer_rate:.2f} (target <= 1.5); CPU per record: floor "
                f"{config['floor_cpu_us_per_record']} us, tracer {config['tracer_cpu_us_per_record']} us")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
