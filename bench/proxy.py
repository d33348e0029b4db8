"""Bench: what `synth-ai proxy` adds over calling the upstream directly, side by side.

    python bench/proxy.py [--rounds 3] [--calls 1500] [--seconds 5] [--clients 16] [--session-calls 20]
                          [--upstream test|serve] [--json]

Starts the upstream (`--upstream test`: the deterministic server of the tests, `tests/helpers/upstream.py`;
`--upstream serve`: `synth-ai serve` and its simulated model), its own process, and
`synth-ai proxy` in front of it (its own process, recording into a fresh trace DB), both on
127.0.0.1, and drives them from this process with a minimal asyncio HTTP/1.1 client
(keep-alive connections, loopback only). Every measurement is bounded by a count and a time.

1. Latency: one connection to the upstream and one to the proxy; a non-streamed Chat
   Completions call (~0.5 KB each way) sent alternately to each, so both see the same machine
   load; --calls per side. Added latency = proxy percentile - direct percentile.
2. Time to first streamed byte: the same, streamed (`stream: true`), timed to the first body
   byte (the first SSE chunk).
3. Throughput: --clients connections to the proxy for --seconds (or 20,000 calls), each
   connection its own sessions of --session-calls calls, each ended with
   `POST /synth/sessions/{id}/end` (so sessions are written while the load runs, as an agent
   that reports its episodes has them written); then SIGTERM, and the trace DB must hold one
   call record for every answered call (the floor: the same load on the upstream directly).
   The latency runs' sessions are ended and written before it. CPU: the proxy's whole process
   tree (every process and thread of it) while loaded, and from the load's start to its exit
   (what recording the load cost in all, backlog and the sessions written at SIGTERM included).
   The recorder's sustained rate: the load's calls per second from its start until the record
   queue was empty (the recording process may lag behind the serving one).

Targets (issue 15): added p50 <= 2 ms, p99 <= 10 ms; first byte within 2 ms of direct;
>= 500 calls/s with every call recorded (served and recorded: both rates). Prints the medians
over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _measure import bench_env, free_port, log

ROOT = Path(__file__).resolve().parents[1]
KEY = "sk-bench-proxy-key-0123456789"
TARGETS = {"added_p50_ms": 2.0, "added_p99_ms": 10.0, "ttfb_added_p50_ms": 2.0, "calls_per_s": 500.0}


def _request(port: int, *, stream: bool, session: str | None = None) -> bytes:
    body = json.dumps({"model": "bench-model", "stream": stream, "messages": [
        {"role": "system", "content": "You are a Crafter agent. Answer with one action."},
        {"role": "user", "content": "Observation: a tree to the north, water to the east, inventory: wood 2, "
                                    "sapling 1. What next?"}]}).encode()
    head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {KEY}\r\nContent-Length: {len(body)}\r\n")
    if session:
        head += f"X-Synth-Session-Id: {session}\r\n"
    return head.encode() + b"\r\n" + body


class _Conn(asyncio.Protocol):
    """One keep-alive connection; `call()` sends the request and returns (first-byte s, total s)."""

    def __init__(self):
        self.buf = bytearray()
        self.transport = None
        self.waiter: asyncio.Future | None = None
        self.sent = self.first = 0.0
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ready.set_result(None)

    async def call(self, request: bytes) -> tuple[float, float, int]:
        self.waiter = asyncio.get_running_loop().create_future()
        self.first = 0.0
        self.sent = time.perf_counter()
        self.transport.write(request)
        return await self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        if not self.first and len(self.buf) > end + 4:
            self.first = time.perf_counter()
        head = bytes(self.buf[:end]).lower()
        match = re.search(rb"content-length: *(\d+)", head)
        if match:
            if len(self.buf) < end + 4 + int(match.group(1)):
                return
        elif not self.buf.endswith(b"0\r\n\r\n"):  # chunked: the last chunk
            return
        status = int(head[9:12])
        self.buf.clear()
        done = time.perf_counter()
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((self.first - self.sent if self.first else done - self.sent, done - self.sent,
                                    status))

    def connection_lost(self, exc) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection lost"))


async def _connect(port: int) -> _Conn:
    _, conn = await asyncio.get_running_loop().create_connection(_Conn, "127.0.0.1", port)
    await conn.ready
    return conn


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


async def side_by_side(direct_port: int, proxy_port: int, calls: int, seconds: float, stream: bool) -> dict:
    direct, proxied = await _connect(direct_port), await _connect(proxy_port)
    d_req = _request(direct_port, stream=stream)
    p_req = _request(proxy_port, stream=stream, session=f"bench-latency-{int(stream)}")
    for _ in range(50):  # warm-up: connections, caches
        await direct.call(d_req)
        await proxied.call(p_req)
    d_first, d_total, p_first, p_total = [], [], [], []
    deadline = time.perf_counter() + seconds
    for i in range(calls):
        if time.perf_counter() > deadline:
            break
        order = ((direct, d_req, d_first, d_total), (proxied, p_req, p_first, p_total))
        for conn, req, firsts, totals in (order if i % 2 else order[::-1]):
            first, total, status = await conn.call(req)
            if status != 200:
                raise SystemExit(f"status {status} from port {conn.transport.get_extra_info('peername')}")
            firsts.append(first)
            totals.append(total)
    direct.transport.close()
    proxied.transport.close()
    out = {"calls": len(d_total)}
    for name, values in (("direct", d_total), ("proxy", p_total), ("direct_first", d_first),
                         ("proxy_first", p_first)):
        out[f"{name}_p50_ms"] = _pct(values, 0.5)
        out[f"{name}_p99_ms"] = _pct(values, 0.99)
    return out


def _end_request(port: int, session: str) -> bytes:
    return (f"POST /synth/sessions/{session}/end HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            "Content-Length: 0\r\n\r\n").encode()


async def throughput(port: int, clients: int, seconds: float, max_calls: int, tag: str,
                     session_calls: int = 0) -> dict:
    """`session_calls` > 0: each connection's session ends (POST /synth/.../end) after that many calls
    and the next one starts (the proxy only; the upstream has no such endpoint)."""
    conns = [await _connect(port) for _ in range(clients)]
    done = 0
    errors = 0
    ended = 0
    stop_at = time.perf_counter() + seconds

    async def worker(i: int) -> None:
        nonlocal done, errors, ended
        n = k = 0
        session = f"bench-{tag}-{i}-{k}"
        req = _request(port, stream=False, session=session)
        while time.perf_counter() < stop_at and done < max_calls:
            _, _, status = await conns[i].call(req)
            done += 1
            n += 1
            errors += status != 200
            if session_calls and n == session_calls:
                _, _, status = await conns[i].call(_end_request(port, session))
                errors += status != 202
                ended += 1
                n, k = 0, k + 1
                session = f"bench-{tag}-{i}-{k}"
                req = _request(port, stream=False, session=session)

    started = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    took = time.perf_counter() - started
    for c in conns:
        c.transport.close()
    return {"calls": done, "errors": errors, "calls_per_s": done / took, "sessions_ended": ended}


class Child:
    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path):
        self.log = log_path
        with open(log_path, "wb") as fh:
            self.proc = subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        """Signal, wait (kill after `timeout`); `self.cpu` is then the CPU seconds of the whole
        process (its threads, and its child processes it waited for), from wait4."""
        self.cpu = None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
                if pid:
                    self.cpu = usage.ru_utime + usage.ru_stime
                    self.proc.returncode = os.waitstatus_to_exitcode(status)
                    break
                if time.monotonic() > deadline:
                    self.proc.kill()
                    self.proc.wait()
                    break
                time.sleep(0.01)
        return self.proc.returncode


def wait_up(url: str, child: Child, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise SystemExit(f"{url}: exited with {child.proc.returncode}: {child.log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise SystemExit(f"{url} did not start")


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                todo += [int(c) for c in Path(f"/proc/{p}/task/{task}/children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and its live descendants, all their threads (Linux /proc;
    None elsewhere)."""
    total = None
    for p in _descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, and the children it already waited for (cutime, cstime)
        total = (total or 0.0) + sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    return total


def _end_and_settle(port: int, sessions: list[str], timeout: float = 120) -> None:
    import httpx

    for sid in sessions:
        httpx.post(f"http://127.0.0.1:{port}/synth/sessions/{sid}/end", timeout=30).raise_for_status()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = httpx.get(f"http://127.0.0.1:{port}/synth/status", timeout=30).json()
        if status["queue"]["size"] == 0 and status["sessions"]["open"] == 0:
            return
        time.sleep(0.05)
    raise SystemExit("the proxy did not write the latency sessions within 120 s")


def _wait_drained(port: int, timeout: float) -> float:
    """perf_counter() when the record queue was first seen empty."""
    deadline = time.monotonic() + timeout
    while _backlog(port) and time.monotonic() < deadline:
        time.sleep(0.02)
    return time.perf_counter()


def _backlog(port: int) -> int:
    import httpx

    return httpx.get(f"http://127.0.0.1:{port}/synth/status", timeout=30).json()["queue"]["size"]


def count_records(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COALESCE(SUM(json_array_length(call_records)), 0) FROM events "
                            "WHERE event_type = 'cais'").fetchone()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1500, help="calls per side per latency measurement")
    parser.add_argument("--seconds", type=float, default=5.0, help="cap of each measurement")
    parser.add_argument("--clients", type=int, default=16, help="connections in the throughput run")
    parser.add_argument("--session-calls", type=int, default=20,
                        help="calls per session in the throughput run, each session then ended (0: never ended, "
                             "all written at SIGTERM)")
    parser.add_argument("--upstream", choices=("test", "serve"), default="test",
                        help="the tests' echo server, or synth-ai serve's simulated model")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not (1 <= args.rounds <= 20 and 10 <= args.calls <= 50_000 and 0.5 <= args.seconds <= 60
            and 1 <= args.clients <= 256 and 0 <= args.session_calls <= 100_000):
        raise SystemExit("error: --rounds 1..20, --calls 10..50000, --seconds 0.5..60, --clients 1..256, "
                         "--session-calls 0..100000")
    env = bench_env(ROOT)  # this checkout first, what the caller had on PYTHONPATH after it
    rounds: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-proxy-") as tmp_name:
        tmp = Path(tmp_name)
        up_port = free_port()
        if args.upstream == "serve":
            upstream = Child([sys.executable, "-m", "synth_cli", "serve", "--port", str(up_port), "--data-dir",
                              str(tmp / "serve-data")], {**env, "SYNTH_DEV_API_KEYS": KEY}, tmp / "upstream.log")
            probe = f"http://127.0.0.1:{up_port}/health"
        else:
            upstream = Child([sys.executable, str(ROOT / "tests" / "helpers" / "upstream.py"), "--port", str(up_port)], env,
                             tmp / "upstream.log")
            probe = f"http://127.0.0.1:{up_port}/v1/models"
        try:
            wait_up(probe, upstream)
            for rnd in range(args.rounds):
                db = tmp / f"traces-{rnd}.db"
                px_port = free_port()
                proxy = Child([sys.executable, "-m", "synth_cli", "proxy", "--upstream", f"http://127.0.0.1:{up_port}",
                               "--db", str(db), "--port", str(px_port), "--spool", str(tmp / "spool.jsonl")], env,
                              tmp / f"proxy-{rnd}.log")
                try:
                    wait_up(f"http://127.0.0.1:{px_port}/synth/status", proxy)
                    lat = asyncio.run(side_by_side(up_port, px_port, args.calls, args.seconds, stream=False))
                    ttfb = asyncio.run(side_by_side(up_port, px_port, args.calls, args.seconds, stream=True))
                    _end_and_settle(px_port, ["bench-latency-0", "bench-latency-1"])  # written before the load
                    up_cpu0 = cpu_seconds(upstream.proc.pid)
                    floor = asyncio.run(throughput(up_port, args.clients, args.seconds, 20_000, f"direct{rnd}"))
                    up_cpu1 = cpu_seconds(upstream.proc.pid)
                    px_cpu0, wall0 = cpu_seconds(proxy.proc.pid), time.perf_counter()
                    load = asyncio.run(throughput(px_port, args.clients, args.seconds, 20_000, f"proxy{rnd}",
                                                  args.session_calls))
                    px_cpu1, wall1 = cpu_seconds(proxy.proc.pid), time.perf_counter()
                    backlog = _backlog(px_port)
                    # until the recorder has taken every call of the load: the rate it sustains
                    drained = _wait_drained(px_port, 120)
                    px_cpu_end = cpu_seconds(proxy.proc.pid)
                    load_avg = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
                finally:
                    code = proxy.stop()
                if code != 0:
                    raise SystemExit(f"the proxy exited with {code}: {proxy.log.read_text()[-2000:]}")
                recorded = count_records(db)
                expected = (50 + lat["calls"]) + (50 + ttfb["calls"]) + load["calls"]
                row = {
                    "latency_calls": lat["calls"], "direct_p50_ms": lat["direct_p50_ms"],
                    "proxy_p50_ms": lat["proxy_p50_ms"], "direct_p99_ms": lat["direct_p99_ms"],
                    "proxy_p99_ms": lat["proxy_p99_ms"],
                    "added_p50_ms": lat["proxy_p50_ms"] - lat["direct_p50_ms"],
                    "added_p99_ms": lat["proxy_p99_ms"] - lat["direct_p99_ms"],
                    "direct_ttfb_p50_ms": ttfb["direct_first_p50_ms"], "proxy_ttfb_p50_ms": ttfb["proxy_first_p50_ms"],
                    "ttfb_added_p50_ms": ttfb["proxy_first_p50_ms"] - ttfb["direct_first_p50_ms"],
                    "ttfb_added_p99_ms": ttfb["proxy_first_p99_ms"] - ttfb["direct_first_p99_ms"],
                    "direct_calls_per_s": floor["calls_per_s"], "calls_per_s": load["calls_per_s"],
                    "throughput_calls": load["calls"], "errors": load["errors"] + floor["errors"],
                    "recorded": recorded, "expected_recorded": expected,
                    # CPU the proxy process (event loop + writer thread) spent per call, and the share of
                    # one core it got: the machine's other load shows here, not in the per-call figure
                    "proxy_cpu_ms_per_call": (px_cpu1 - px_cpu0) * 1000 / max(1, load["calls"])
                    if px_cpu0 is not None else float("nan"),
                    "proxy_cpu_share": (px_cpu1 - px_cpu0) / (wall1 - wall0) if px_cpu0 is not None else float("nan"),
                    # calls of the load per second until the recorder had taken the last of them
                    "recorded_calls_per_s": load["calls"] / (drained - wall0),
                    # everything the proxy spent from the start of the load to its exit (serving, building,
                    # writing, the backlog, the sessions written at SIGTERM), per call of the load
                    "proxy_total_cpu_ms_per_call": (proxy.cpu - px_cpu0) * 1000 / max(1, load["calls"])
                    if proxy.cpu is not None and px_cpu0 is not None else float("nan"),
                    # after SIGTERM: writing the sessions still open (all of them with --session-calls 0)
                    "proxy_exit_cpu_ms": (proxy.cpu - px_cpu_end) * 1000
                    if proxy.cpu is not None and px_cpu_end is not None else float("nan"),
                    "sessions_ended": load["sessions_ended"],
                    # items queued for the recorder when the load stopped (it kept up when small)
                    "backlog_at_end": backlog,
                    "upstream_cpu_ms_per_call": (up_cpu1 - up_cpu0) * 1000 / max(1, floor["calls"])
                    if up_cpu0 is not None else float("nan"),
                    "load_average": load_avg,
                }
                rounds.append(row)
                log(f"round {rnd + 1}: added p50 {row['added_p50_ms']:.2f} ms p99 {row['added_p99_ms']:.2f} ms "
                    f"(direct p50 {row['direct_p50_ms']:.2f} / p99 {row['direct_p99_ms']:.2f} ms); first byte +"
                    f"{row['ttfb_added_p50_ms']:.2f} ms; {row['calls_per_s']:.0f} calls/s through the proxy "
                    f"(direct {row['direct_calls_per_s']:.0f}), recorder sustained {row['recorded_calls_per_s']:.0f}/s; "
                    f"recorded {recorded}/{expected}; proxy CPU "
                    f"{row['proxy_cpu_ms_per_call']:.2f} ms/call at {row['proxy_cpu_share']:.0%} of a core, "
                    f"{row['proxy_total_cpu_ms_per_call']:.2f} ms/call to exit, backlog {backlog}; "
                    f"load average {load_avg:.1f}")
        finally:
            upstream.stop()
    summary = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    summary["all_recorded"] = all(r["recorded"] == r["expected_recorded"] for r in rounds)
    summary["rounds"] = len(rounds)
    summary["upstream"] = args.upstream
    import importlib.util

    # what the proxy's run.http_implementation() picks (this process has the children's sys.path)
    summary["proxy_http"] = "httptools" if importlib.util.find_spec("httptools") else "h11"
    summary["met"] = {
        "added_p50": summary["added_p50_ms"] <= TARGETS["added_p50_ms"],
        "added_p99": summary["added_p99_ms"] <= TARGETS["added_p99_ms"],
        "ttfb": summary["ttfb_added_p50_ms"] <= TARGETS["ttfb_added_p50_ms"],
        "throughput": min(summary["calls_per_s"], summary["recorded_calls_per_s"]) >= TARGETS["calls_per_s"]
        and summary["all_recorded"],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    print(f"upstream: {args.upstream}; proxy HTTP parser {summary['proxy_http']}; medians of {len(rounds)} rounds, {summary['latency_calls']:.0f} calls per side "
          "per latency run")
    print(f"latency   direct p50 {summary['direct_p50_ms']:.2f} ms p99 {summary['direct_p99_ms']:.2f} ms | proxy p50 "
          f"{summary['proxy_p50_ms']:.2f} ms p99 {summary['proxy_p99_ms']:.2f} ms | added p50 "
          f"{summary['added_p50_ms']:.2f} ms p99 {summary['added_p99_ms']:.2f} ms")
    print(f"stream    first byte direct p50 {summary['direct_ttfb_p50_ms']:.2f} ms | proxy "
          f"{summary['proxy_ttfb_p50_ms']:.2f} ms | added p50 {summary['ttfb_added_p50_ms']:.2f} ms "
          f"p99 {summary['ttfb_added_p99_ms']:.2f} ms")
    print(f"load      {args.clients} connections: direct {summary['direct_calls_per_s']:.0f} calls/s | proxy "
          f"{summary['calls_per_s']:.0f} calls/s ({summary['calls_per_s'] / summary['direct_calls_per_s']:.2f}x); "
          f"recorder sustained {summary['recorded_calls_per_s']:.0f} calls/s (load start to its queue empty); "
          f"every call recorded: {summary['all_recorded']}")
    print(f"sessions  {args.session_calls or 'unlimited'} calls each, {summary['sessions_ended']:.0f} ended and written "
          f"during the load, {summary['backlog_at_end']:.0f} items still queued when it stopped; after SIGTERM the proxy "
          f"spent {summary['proxy_exit_cpu_ms']:.0f} ms of CPU writing the rest")
    print(f"cpu       proxy {summary['proxy_cpu_ms_per_call']:.2f} ms per recorded call (all its processes) at "
          f"{summary['proxy_cpu_share']:.0%} of a core ({1000 / summary['proxy_cpu_ms_per_call']:.0f} "
          f"calls/s per core-second); {summary['proxy_total_cpu_ms_per_call']:.2f} ms per call from the load's start to "
          f"exit; upstream {summary['upstream_cpu_ms_per_call']:.2f} ms per call; load average "
          f"{summary['load_average']:.1f}")
    print("targets   " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in summary["met"].items()))


if __name__ == "__main__":
    main()
