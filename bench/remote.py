"""Benchmark: trace DBs on a libSQL server (sqld on 127.0.0.1) against the same DB as a local file.

    python bench/remote.py read        # filter --mode calls: over http:// vs the local file
    python bench/remote.py transport   # read every call_records blob: each client vs sqlite3
    python bench/remote.py write       # call records/s into sqld: 1 and 8 writers vs bulk inserts

`write` writes --write-sessions sessions of --write-steps call records each with SessionTracer
(tests/helpers/trace_worker.py) into a new sqld, by one process and by 8 processes at once (each a
fresh server), against the floor: the same rows (read back from a local file the same script
wrote) bulk-inserted over the same protocol, 500 rows per transaction.

`read` and `transport` use the DB bench/filter.py builds (shaped like the fixture; by default
1,200 sessions x 20 steps = 24,000 call records, cached in bench/.cache/), served by a real
sqld (tests/helpers/sqld.py) from a private copy. Every command runs as its own process, candidate
and floor alternating, --runs times each after a warm-up; the figures are medians. `read` also
reports each command's CPU time (user + system of its whole process tree, /usr/bin/time -v) and
the server's (sqld's own, from /proc), the ratios by wall and by CPU (client + server against the
local filter's), and the load average while it ran; `--compare CHECKOUT` adds the same remote
filter run from another checkout (e.g. a `git worktree` of main), side by side. Peak memory
is each child's own maximum RSS as `/usr/bin/time -v` reports it (GNU time waits for the child
and reads its rusage; the parent's size is not in it). Prints a JSON summary on stdout,
progress on stderr.

`transport` also runs `libsql-client` and the `libsql` package when they are importable by
the Python named in --libsql-client-python / --libsql-python (e.g. a scratch venv), so the
choice in docs/architecture.md can be re-checked.
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

from _measure import bench_env, log, run

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT))

SCAN_SQL = "SELECT id, call_records FROM events WHERE event_type = 'cais' AND call_records IS NOT NULL"
PAGE = 200


def _env() -> dict:
    return bench_env(ROOT, drop=("SYNTH_", "LIBSQL_", "TURSO_"))


def measured(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """(wall seconds, peak RSS MB) of one child, its RSS from /usr/bin/time -v (bench/_measure.py)."""
    wall, rss, proc = run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env or _env())
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    return wall, round(rss / 2**20, 1)


def interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, dict]:
    names = list(commands)
    for name in names:  # warm-up: page cache, sqld's caches
        measured(commands[name])
    walls: dict[str, list[float]] = {n: [] for n in names}
    rss: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        for name in (names if i % 2 == 0 else names[::-1]):
            wall, peak = measured(commands[name])
            walls[name].append(wall)
            rss[name].append(peak)
            log(f"  run {i + 1} {name}: {wall:.2f}s, {peak:.0f} MB")
    return {n: {"median_wall_s": round(statistics.median(walls[n]), 3), "min_wall_s": round(min(walls[n]), 3),
                "peak_rss_mb": max(rss[n])} for n in names}


def served_copy(db_dir: Path, work: Path):
    from tests.helpers.sqld import install_error, running_sqld, sqld_binary

    if sqld_binary() is None:
        raise SystemExit(install_error())
    copy = work / "served.db"
    shutil.copytree(db_dir, copy)
    return running_sqld(copy)


# --------------------------------------------------------------------------- read


def _server_pid(url: str) -> int | None:
    """The pid of the sqld listening on `url`'s port (its CPU time is read from /proc)."""
    listen = "127.0.0.1:" + url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and listen.encode() in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            pass
    return None


def _cpu_of(pid: int | None) -> float:
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _timed(argv: list[str], env: dict, cwd: str, server: int | None) -> tuple[float, float, float, float]:
    """(wall s, client CPU s of the whole process tree, server CPU s, peak RSS MB) of one command."""
    from _measure import Timed

    with Timed(argv) as t:
        before = _cpu_of(server)
        started = time.perf_counter()
        proc = subprocess.run(t.argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd)
        wall = time.perf_counter() - started
        server_cpu = _cpu_of(server) - before
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
        return wall, t.cpu_s(), server_cpu, round(t.rss_mb(), 1)


def bench_read(args) -> dict:
    from filter import ensure_db

    db_dir = ensure_db(args.sessions, args.steps)
    db_file = db_dir / "dbs" / "default" / "data"
    work = Path(tempfile.mkdtemp(prefix="bench-remote-"))
    loads = [os.getloadavg()[0]]
    try:
        with served_copy(db_dir, work) as url:
            server = _server_pid(url)
            py = sys.executable
            flt = ["-m", "synth_cli", "filter", "--mode", "calls", "--quiet"]
            commands = {  # name: (argv, env, cwd, output)
                "local": ([py, *flt, "--db", str(db_file), "-o", str(work / "local.jsonl")], _env(), str(ROOT),
                          work / "local.jsonl"),
                "remote": ([py, *flt, "--db", url, "-o", str(work / "remote.jsonl")], _env(), str(ROOT),
                           work / "remote.jsonl"),
            }
            if args.compare:  # the same remote filter from another checkout (e.g. `git worktree add … main`)
                other = str(Path(args.compare).resolve())
                commands["remote (compare)"] = ([py, *flt, "--db", url, "-o", str(work / "compare.jsonl")],
                                                {**_env(), "PYTHONPATH": other}, other, work / "compare.jsonl")
            log(f"filter: local file vs {url} ({args.runs} runs each, interleaved after a warm-up)")
            names = list(commands)
            for name in names:
                argv, env, cwd, _ = commands[name]
                _timed(argv, env, cwd, server)
            figures: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in names}
            for i in range(args.runs):
                for name in (names if i % 2 == 0 else names[::-1]):
                    argv, env, cwd, _ = commands[name]
                    fig = _timed(argv, env, cwd, server)
                    figures[name].append(fig)
                    loads.append(os.getloadavg()[0])
                    log(f"  run {i + 1} {name}: {fig[0]:.2f}s wall, {fig[1]:.2f}s CPU (+ {fig[2]:.2f}s sqld), "
                        f"{fig[3]:.0f} MB")
        local_bytes = commands["local"][3].read_bytes()
        same = {name: commands[name][3].read_bytes() == local_bytes for name in names if name != "local"}
        examples = local_bytes.count(b"\n")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    def med(name: str, i: int) -> float:
        return round(statistics.median(f[i] for f in figures[name]), 3)

    result = {name: {"median_wall_s": med(name, 0), "min_wall_s": round(min(f[0] for f in figures[name]), 3),
                     "median_cpu_s": med(name, 1), "median_server_cpu_s": med(name, 2),
                     "peak_rss_mb": max(f[3] for f in figures[name])} for name in names}
    local = result["local"]
    for name in names[1:]:
        fig = result[name]
        fig["ratio_wall"] = round(fig["median_wall_s"] / local["median_wall_s"], 2)
        fig["ratio_cpu_client_and_server"] = round((fig["median_cpu_s"] + fig["median_server_cpu_s"])
                                                   / local["median_cpu_s"], 2)
    ratio = result["remote"]["ratio_wall"]
    return {"bench": "filter --mode calls over http:// (sqld on 127.0.0.1) vs the local file",
            "sessions": args.sessions, "steps": args.steps, "examples": examples, "identical_output": same,
            "runs": args.runs, "cpus": os.cpu_count(),
            "load_average": {"min": round(min(loads), 2), "max": round(max(loads), 2)},
            **result, "ratio_remote_to_local": ratio,
            "targets": {"ratio_max": 1.5, "peak_rss_mb_max": 80,
                        "met": ratio <= 1.5 and result["remote"]["peak_rss_mb"] <= 80 and all(same.values())}}


# --------------------------------------------------------------------------- transport


def child_read(variant: str, target: str) -> int:
    """Read every call_records blob (keyset pages of PAGE rows, in id order) and parse it once."""
    import orjson

    n = 0
    if variant == "sqlite3":
        import sqlite3

        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
        for _id, blob in conn.execute(SCAN_SQL + " ORDER BY id"):
            n += len(orjson.loads(blob))
    elif variant in ("synth", "synth-gzip", "synth-prefetch"):
        from synth_cli.store.libsql import LibsqlClient

        client = LibsqlClient(target)
        if variant in ("synth", "synth-gzip"):
            client._loopback = None  # these two measure httpx (pages of JSON)
        if variant == "synth-gzip":
            client._http.headers["accept-encoding"] = "gzip"
        if variant == "synth-prefetch":
            from synth_cli.store.reader import RemoteTraceStore

            store = RemoteTraceStore(target)
            for row in store.scan(SCAN_SQL, key="id", page_size=PAGE):
                n += len(orjson.loads(row[1]))
        else:
            last = 0
            while True:
                rows = client.execute(f"{SCAN_SQL} AND id > ? ORDER BY id LIMIT ?", [last, PAGE]).rows
                for row in rows:
                    n += len(orjson.loads(row[1]))
                if len(rows) < PAGE:
                    break
                last = rows[-1][0]
    elif variant == "libsql-client":
        import libsql_client

        client = libsql_client.create_client_sync(target)
        last = 0
        while True:
            rows = client.execute(f"{SCAN_SQL} AND id > ? ORDER BY id LIMIT ?", [last, PAGE]).rows
            for row in rows:
                n += len(orjson.loads(row[1])) if orjson else 0
            if len(rows) < PAGE:
                break
            last = rows[-1][0]
        client.close()
    elif variant == "libsql":
        import libsql

        conn = libsql.connect(target)
        last = 0
        while True:
            rows = conn.execute(f"{SCAN_SQL} AND id > ? ORDER BY id LIMIT ?", (last, PAGE)).fetchall()
            for row in rows:
                n += len(orjson.loads(row[1]))
            if len(rows) < PAGE:
                break
            last = rows[-1][0]
    else:
        raise SystemExit(f"unknown variant {variant}")
    sys.stderr.write(f"{n} records\n")
    return 0


def _can_import(python: str, module: str) -> bool:
    return subprocess.run([python, "-c", f"import {module}, orjson"], check=False, capture_output=True).returncode == 0


def bench_transport(args) -> dict:
    from filter import ensure_db

    db_dir = ensure_db(args.sessions, args.steps)
    db_file = db_dir / "dbs" / "default" / "data"
    work = Path(tempfile.mkdtemp(prefix="bench-transport-"))
    me = str(Path(__file__).resolve())
    try:
        with served_copy(db_dir, work) as url:
            py = sys.executable
            commands = {"sqlite3 (local file, floor)": [py, me, "--child", "sqlite3", str(db_file)],
                        "httpx+orjson, identity": [py, me, "--child", "synth", url],
                        "httpx+orjson, gzip": [py, me, "--child", "synth-gzip", url],
                        "RemoteTraceStore.scan (http.client, Protobuf, prefetch)": [py, me, "--child", "synth-prefetch", url]}
            for label, python, module, variant in (
                    ("libsql-client 0.3 (aiohttp, gzip)", args.libsql_client_python or py, "libsql_client",
                     "libsql-client"),
                    ("libsql (native)", args.libsql_python, "libsql", "libsql")):
                if python and _can_import(python, module):
                    commands[label] = [python, me, "--child", variant, url]
                else:
                    log(f"  {label}: not importable by {python or '(no --libsql-python)'}, skipped")
            log(f"transport: every call_records blob in pages of {PAGE} ({args.runs} runs each)")
            result = interleaved(commands, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = result["sqlite3 (local file, floor)"]["median_wall_s"]
    for fig in result.values():
        fig["ratio_to_floor"] = round(fig["median_wall_s"] / floor, 2)
    return {"bench": "read every call_records blob + orjson.loads, one process each",
            "sessions": args.sessions, "steps": args.steps, "runs": args.runs, "results": result}


# --------------------------------------------------------------------------- write


def child_floor(source: str, url: str) -> int:
    """The floor: the same rows as the tracer writes, bulk-inserted (500 rows a transaction)."""
    import sqlite3

    from synth_cli.store.libsql import LibsqlClient, stmt
    from synth_cli.store.writers import open_writer

    open_writer(url).close()  # the schema, as the tracer creates it
    client = LibsqlClient(url)
    conn = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    for table in ("experiments", "session_traces", "session_timesteps", "events", "messages"):
        cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
        sql = f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        batch = []
        for row in conn.execute(f"SELECT {', '.join(cols)} FROM {table}"):
            batch.append(stmt(sql, row, want_rows=False))
            if len(batch) == 500:
                client.transaction(batch)
                batch = []
        if batch:
            client.transaction(batch)
    client.close()
    return 0


def bench_write(args) -> dict:
    from tests.helpers.sqld import install_error, running_sqld, sqld_binary

    if sqld_binary() is None:
        raise SystemExit(install_error())
    worker = str(ROOT / "tests" / "helpers" / "trace_worker.py")
    me = str(Path(__file__).resolve())
    sessions, steps, py = args.write_sessions, args.write_steps, sys.executable
    calls = sessions * steps
    work = Path(tempfile.mkdtemp(prefix="bench-write-"))
    env = {**_env(), "SYNTH_TRACES_SPOOL_DIR": str(work / "spool")}
    figures: dict[str, list[float]] = {"floor (bulk inserts)": [], "1 writer": [], "8 writers": []}
    rss: dict[str, float] = {}
    try:
        source = work / "source.db"
        subprocess.run([py, worker, str(source), "0", str(sessions), str(steps)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        for run in range(args.runs):
            for name in figures:
                served = work / f"served-{run}-{name[0]}"
                served.mkdir()
                with running_sqld(served) as url:
                    started = time.perf_counter()
                    if name.startswith("floor"):
                        wall, peak = measured([py, me, "--child-floor", str(source), url], env)
                    elif name == "1 writer":
                        wall, peak = measured([py, worker, url, "0", str(sessions), str(steps)], env)
                    else:
                        procs = [subprocess.Popen([py, worker, url, str(w), str(sessions // 8), str(steps)],
                                                  stdout=subprocess.DEVNULL, env=env) for w in range(8)]
                        for proc in procs:
                            if proc.wait() != 0:
                                raise SystemExit("a writer failed")
                        wall, peak = time.perf_counter() - started, 0.0
                    figures[name].append(calls / wall)
                    rss[name] = max(rss.get(name, 0.0), peak)
                    log(f"  run {run + 1} {name}: {wall:.2f}s, {calls / wall:.0f} call records/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    floor = statistics.median(figures["floor (bulk inserts)"])
    result = {name: {"median_call_records_per_s": round(statistics.median(v)),
                     "ratio_to_floor": round(floor / statistics.median(v), 2),
                     **({"peak_rss_mb": rss[name]} if rss.get(name) else {})} for name, v in figures.items()}
    return {"bench": "call records/s into sqld on 127.0.0.1 (SessionTracer, whole processes)",
            "sessions": sessions, "steps": steps, "call_records": calls, "runs": args.runs,
            "cpus": os.cpu_count(), "results": result,
            "note": "ratio_to_floor = floor records/s / candidate records/s (1.0 = as fast as bulk inserts)"}


# --------------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", nargs="?", choices=("read", "transport", "write"), default="read")
    ap.add_argument("--sessions", type=int, default=1200)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--compare", metavar="CHECKOUT", help="read: also run the remote filter from this checkout")
    ap.add_argument("--libsql-client-python", metavar="PYTHON", help="a Python that can import libsql_client")
    ap.add_argument("--libsql-python", metavar="PYTHON", help="a Python that can import libsql (and orjson)")
    ap.add_argument("--write-sessions", type=int, default=400, help="write: sessions in all (8 writers: /8 each)")
    ap.add_argument("--write-steps", type=int, default=10, help="write: timesteps (call records) per session")
    ap.add_argument("--child", nargs=2, metavar=("VARIANT", "TARGET"), help=argparse.SUPPRESS)
    ap.add_argument("--child-floor", nargs=2, metavar=("SOURCE", "URL"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child_read(*args.child)
    if args.child_floor:
        return child_floor(*args.child_floor)
    if args.what == "read":
        result = bench_read(args)
    elif args.what == "transport":
        result = bench_transport(args)
    else:
        result = bench_write(args)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
