"""Load benchmark: `synth-ai serve` against a bare Starlette app serving the same bytes.

    python bench/serve.py [--rounds 3] [--seconds 2] [--clients 10,50] [--max-requests 20000] [--json]

1. Starts `synth-ai serve` on a free 127.0.0.1 port (fresh data dir), uploads a training file and
   creates --jobs jobs (default 20, one default page), waits until every one has succeeded, and
   keeps the exact response bytes of `GET /v1/fine_tuning/jobs` and of
   `GET /v1/fine_tuning/jobs/{id}/events` (the newest job's first page).
2. Starts the floor: a bare Starlette app under the same uvicorn settings (one process,
   `devserver.run.uvicorn_settings()`: httptools when installed, the asyncio loop,
   no access log) answering those two paths with those bytes (no auth, no SQL, no encoding).
3. Drives both from this process with a minimal asyncio HTTP/1.1 client (N keep-alive
   connections, one request in flight on each, loopback only). For every round, endpoint and
   client count, the floor and `serve` are measured back to back, the order alternating per
   round; each measurement lasts --seconds or --max-requests requests, whichever comes first,
   after a short warm-up. Prints the medians over rounds of requests/s, p50 and p99 latency,
   the floor's figures and the ratio serve/floor.

Both servers run under `/usr/bin/time -v` when it exists, so their peak RSS is the kernel's
figure for each server process alone (never this process's). Each measurement also reads the
server's own CPU time from /proc/PID/stat before and after, so "server CPU per request" (and the
ratio floor/serve of it) is printed too: on a box shared with other work it moves much less
than requests/s and latency do. The target (issue 12): ratio
>= 0.5 for both endpoints at 10 and 50 clients, p99 <= 10 ms at 10 clients.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import bench_env, free_port, log

ROOT = Path(__file__).resolve().parents[1]
DEV_KEY = "sk-synth-bench-key"
RATIO_TARGET = 0.5
P99_TARGET_MS = 10.0


# --------------------------------------------------------------------------- the floor app (a child)


def floor_app(port: int, routes_file: str) -> None:
    """A bare Starlette app: the given paths answer the given bytes, under the same uvicorn settings."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    table = json.loads(Path(routes_file).read_text())

    def endpoint(body: bytes):
        async def handler(request):
            return Response(body, media_type="application/json")
        return handler

    routes = [Route(path, endpoint(Path(body_file).read_bytes()), methods=["GET"]) for path, body_file in table.items()]
    routes.append(Route("/health", endpoint(b'{"status":"healthy"}'), methods=["GET"]))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(2048)
    from synth_cli.devserver.run import uvicorn_settings

    config = uvicorn.Config(Starlette(routes=routes), log_level="warning", access_log=False, lifespan="on",
                            **uvicorn_settings())
    uvicorn.Server(config).run(sockets=[sock])


# --------------------------------------------------------------------------- servers


class Child:
    """A server process, under /usr/bin/time -v when available (its peak RSS, not ours)."""

    def __init__(self, argv: list[str], env: dict[str, str], tmp: Path, name: str):
        self.time_log = tmp / f"{name}.time"
        self.log = tmp / f"{name}.log"
        prefix = ["/usr/bin/time", "-v", "-o", str(self.time_log)] if os.access("/usr/bin/time", os.X_OK) else []
        with open(self.log, "wb") as fh:
            self.proc = subprocess.Popen(prefix + argv, env=env, stdout=fh, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)

    def server_pid(self) -> int:
        """The server's pid (the child of /usr/bin/time when it wraps it)."""
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as fh:
                children = fh.read().split()
            if children and os.path.basename(os.readlink(f"/proc/{self.proc.pid}/exe")) == "time":
                return int(children[0])
        except OSError:
            pass
        return self.proc.pid

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far (/proc/PID/stat), None when unknown."""
        try:
            with open(f"/proc/{self.server_pid()}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None

    def stop(self) -> float | None:
        """SIGINT to the process group (the server; `time` ignores it and reports); peak RSS in MB."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.time_log.exists():
            match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", self.time_log.read_text())
            if match:
                return int(match.group(1)) / 1024.0
        return None


def wait_healthy(url: str, child: Child, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise SystemExit(f"server exited with {child.proc.returncode}: {child.log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"server at {url} did not start")


def seed_serve(base: str, jobs: int, tmp: Path) -> dict[str, bytes]:
    """Jobs and events in the server; returns {path: the exact response body}."""
    import httpx

    headers = {"Authorization": f"Bearer {DEV_KEY}"}
    train = tmp / "train.jsonl"
    with train.open("w") as fh:
        for i in range(12):
            fh.write(json.dumps({"messages": [{"role": "user", "content": f"Step {i}: a tree to the north?"},
                                              {"role": "assistant", "content": f"Move north, collect wood {i}."}]})
                     + "\n")
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        with train.open("rb") as fh:
            file_id = http.post("/files", files={"file": ("train.jsonl", fh)}, data={"purpose": "fine-tune"}).json()["id"]
        ids = []
        for i in range(jobs):
            r = http.post("/fine_tuning/jobs", json={"model": "gpt-4o-mini", "training_file": file_id, "seed": i,
                                                      "suffix": f"bench{i}", "metadata": {"run": str(i)}})
            r.raise_for_status()
            ids.append(r.json()["id"])
        deadline = time.monotonic() + 120
        while True:
            page = http.get("/fine_tuning/jobs", params={"limit": jobs}).json()["data"]
            if all(j["status"] == "succeeded" for j in page):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the bench jobs did not finish")
            time.sleep(0.1)
        paths = {"/v1/fine_tuning/jobs": b"", f"/v1/fine_tuning/jobs/{ids[-1]}/events": b""}
        for path in paths:
            r = http.get(path.removeprefix("/v1"))
            r.raise_for_status()
            paths[path] = r.content
    return paths


# --------------------------------------------------------------------------- the client


class _Conn(asyncio.Protocol):
    """One keep-alive connection sending the same request again as soon as the answer is complete."""

    def __init__(self, request: bytes, run: _Run):
        self.request = request
        self.run = run
        self.buf = bytearray()
        self.need = -1
        self.sent = 0.0
        self.transport: asyncio.Transport | None = None
        self.closed = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._send()

    def _send(self) -> None:
        if not self.run.more():
            self.transport.close()
            return
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            if self.need < 0:
                end = self.buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                head = bytes(self.buf[:end]).lower()
                if not head.startswith(b"http/1.1 200"):
                    self.run.errors += 1
                match = re.search(rb"content-length: *(\d+)", head)
                self.need = end + 4 + int(match.group(1)) if match else end + 4
            if len(self.buf) < self.need:
                return
            del self.buf[:self.need]
            self.need = -1
            self.run.record(self.sent, time.perf_counter())
            self._send()
            return

    def connection_lost(self, exc) -> None:
        if not self.closed.done():
            self.closed.set_result(None)


class _Run:
    def __init__(self, seconds: float, max_requests: int):
        self.seconds, self.max_requests = seconds, max_requests
        self.latencies: list[float] = []
        self.answered = 0
        self.errors = 0
        self.measuring = self.ended = 0.0

    def more(self) -> bool:
        now = time.perf_counter()
        if now < self.measuring:
            return True
        return now < self.measuring + self.seconds and len(self.latencies) < self.max_requests

    def record(self, sent: float, answered: float) -> None:
        """Only requests sent after the warm-up count (`answered` counts all, for CPU per request)."""
        self.answered += 1
        if sent >= self.measuring:
            self.latencies.append(answered - sent)
            self.ended = answered


async def _load(port: int, path: str, clients: int, seconds: float, max_requests: int, warmup: float,
                auth: bool, child: Child) -> dict:
    request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               + (f"Authorization: Bearer {DEV_KEY}\r\n" if auth else "") + "\r\n").encode()
    run = _Run(seconds, max_requests)
    loop = asyncio.get_running_loop()
    run.measuring = time.perf_counter() + warmup
    cpu_before = child.cpu_seconds()
    conns = []
    for _ in range(clients):
        _, proto = await loop.create_connection(lambda: _Conn(request, run), "127.0.0.1", port)
        conns.append(proto)
    await asyncio.gather(*(c.closed for c in conns))
    cpu_after = child.cpu_seconds()
    lat = sorted(run.latencies)
    took = max(1e-9, run.ended - run.measuring)
    if not lat:
        raise SystemExit(f"no answers from 127.0.0.1:{port}{path}")
    cpu_us = ((cpu_after - cpu_before) / run.answered * 1e6 if cpu_before is not None and cpu_after is not None
              else float("nan"))
    return {"requests": len(lat), "rps": len(lat) / took, "p50_ms": lat[len(lat) // 2] * 1000,
            "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000, "errors": run.errors,
            "cpu_us": cpu_us}


def load(port: int, path: str, clients: int, seconds: float, max_requests: int, auth: bool, child: Child) -> dict:
    return asyncio.run(_load(port, path, clients, seconds, max_requests, 0.35, auth, child))


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement (after 0.35 s of warm-up)")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per measurement")
    parser.add_argument("--clients", default="10,50")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--floor-app", nargs=2, metavar=("PORT", "ROUTES_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_app:
        floor_app(int(args.floor_app[0]), args.floor_app[1])
        return
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    if not 1 <= args.rounds <= 50 or not 0.1 <= args.seconds <= 60 or not all(1 <= c <= 500 for c in clients):
        raise SystemExit("error: --rounds 1..50, --seconds 0.1..60, --clients 1..500 each")

    env = bench_env(ROOT)
    env["SYNTH_DEV_API_KEYS"] = DEV_KEY
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp_name:
        tmp = Path(tmp_name)
        serve_port, floor_port = free_port(), free_port()
        serve_argv = [sys.executable, "-m", "synth_cli", "serve", "--host", "127.0.0.1", "--port", str(serve_port),
                      "--data-dir", str(tmp / "data")]
        serve = Child([*serve_argv, "--step-seconds", "0.001", "--seed", "7"], env, tmp, "seed")
        floor = None
        try:
            wait_healthy(f"http://127.0.0.1:{serve_port}/health", serve)
            log(f"seeding {args.jobs} jobs ...")
            bodies = seed_serve(f"http://127.0.0.1:{serve_port}/v1", args.jobs, tmp)
            serve.stop()  # again with the default settings (the seeding ran with 1 ms steps)
            serve = Child(serve_argv, env, tmp, "serve")
            wait_healthy(f"http://127.0.0.1:{serve_port}/health", serve)
            table = {}
            for i, (path, body) in enumerate(bodies.items()):
                (tmp / f"body{i}").write_bytes(body)
                table[path] = str(tmp / f"body{i}")
            (tmp / "routes.json").write_text(json.dumps(table))
            floor = Child([sys.executable, str(Path(__file__).resolve()), "--floor-app", str(floor_port),
                           str(tmp / "routes.json")], env, tmp, "floor")
            wait_healthy(f"http://127.0.0.1:{floor_port}/health", floor)
            names = {"/v1/fine_tuning/jobs": "jobs list"}
            for path in bodies:
                names.setdefault(path, "job events")
            samples: dict[tuple[str, int, str], list[dict]] = {}
            for rnd in range(args.rounds):
                order = [("floor", floor_port, False, floor), ("serve", serve_port, True, serve)]
                if rnd % 2:
                    order.reverse()
                for path in bodies:
                    for n in clients:
                        for who, port, auth, child in order:
                            result = load(port, path, n, args.seconds, args.max_requests, auth, child)
                            if result["errors"]:
                                raise SystemExit(f"{who} answered {result['errors']} non-200 responses on {path}")
                            samples.setdefault((names[path], n, who), []).append(result)
                            log(f"round {rnd + 1} {names[path]:10} {n:3} clients {who:5}: {result['rps']:8.0f} req/s "
                                f"p50 {result['p50_ms']:.2f} ms p99 {result['p99_ms']:.2f} ms "
                                f"server CPU {result['cpu_us']:.0f} us/request")
        finally:
            serve_rss = serve.stop()
            floor_rss = floor.stop() if floor else None
    rows = []
    for name, n, who in list(samples):
        if who != "serve":
            continue
        med = {k: statistics.median(r[k] for r in samples[(name, n, "serve")]) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        fl = {k: statistics.median(r[k] for r in samples[(name, n, "floor")]) for k in ("rps", "p50_ms", "p99_ms", "cpu_us")}
        rows.append({"endpoint": name, "clients": n, "serve": med, "floor": fl, "ratio": med["rps"] / fl["rps"],
                     "body_bytes": len(bodies[next(p for p in bodies if names[p] == name)])})
    met = all(r["ratio"] >= RATIO_TARGET for r in rows) and all(
        r["serve"]["p99_ms"] <= P99_TARGET_MS for r in rows if r["clients"] == 10)
    sys.path.insert(0, str(ROOT))
    from synth_cli.devserver.run import uvicorn_settings

    uv = uvicorn_settings()
    summary = {"rounds": args.rounds, "seconds": args.seconds, "uvicorn": uv, "rows": rows, "serve_peak_rss_mb": serve_rss,
               "floor_peak_rss_mb": floor_rss, "target_met": met}
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"medians of {args.rounds} rounds, {args.seconds:g} s each (floor: bare Starlette, same bytes, same uvicorn: "
          f"http={uv['http']}, loop={uv['loop']})")
    print(f"{'endpoint':12} {'clients':>7} {'serve req/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'floor req/s':>12} "
          f"{'p50 ms':>7} {'p99 ms':>7} {'ratio':>6}   server CPU us/request: serve floor ratio")
    for r in rows:
        s, f = r["serve"], r["floor"]
        print(f"{r['endpoint']:12} {r['clients']:>7} {s['rps']:>12.0f} {s['p50_ms']:>7.2f} {s['p99_ms']:>7.2f} "
              f"{f['rps']:>12.0f} {f['p50_ms']:>7.2f} {f['p99_ms']:>7.2f} {r['ratio']:>6.2f}   "
              f"{s['cpu_us']:>27.0f} {f['cpu_us']:>5.0f} {f['cpu_us'] / s['cpu_us']:>5.2f}")
    def rss(v: float | None) -> str:
        return f"{v:.1f} MB" if v is not None else "n/a (no /usr/bin/time)"

    print(f"peak RSS (/usr/bin/time -v): serve {rss(serve_rss)}, floor {rss(floor_rss)}")
    print(f"target (ratio >= {RATIO_TARGET} everywhere, p99 <= {P99_TARGET_MS:g} ms at 10 clients): "
          + ("met" if met else "NOT met"))


if __name__ == "__main__":
    main()
