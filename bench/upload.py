"""Benchmark: the fine-tuning client against `synth-ai serve` on loopback.

1. Upload: a JSONL file of --size-mb (default 1024 = 1 GB; generated once into bench/.cache/,
   which is gitignored) is uploaded by a child process through `synth_cli.api.files.Files.upload`
   — the code path of `synth-ai sft submit/run` — with a progress callback. Reported: the child's
   peak RSS (from wait4, the kernel's number, not sampled), wall time and throughput.
   The target: peak RSS <= 100 MB whatever the file size.
2. Polling cost: a job is started on a small file with a slow simulated step, and a child follows it
   with `JobFollower` at --interval (default 2 s, the CLI's default) for --poll-seconds.
   Reported: HTTP requests per minute, events received, and how many event requests carried the
   `after` cursor (i.e. nothing was fetched twice).

    python bench/upload.py                 # full run (1 GB)
    python bench/upload.py --size-mb 64    # quicker
Prints a JSON summary on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
DEV_KEY = "sk-synth-local-dev-key"


def log(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def make_jsonl(path: Path, size_bytes: int, seed: int = 0) -> None:
    """Valid chat fine-tuning lines (~1 KB each) until the file reaches `size_bytes`."""
    if path.exists() and path.stat().st_size >= size_bytes:
        return
    rng = random.Random(seed)
    words = ["craft", "wood", "stone", "table", "pickaxe", "sapling", "water", "collect", "move", "north",
             "south", "east", "west", "sleep", "zombie", "skeleton", "iron", "coal", "furnace", "sword"]
    tmp = path.with_suffix(".tmp")
    written = 0
    with open(tmp, "w", encoding="utf-8") as fh:
        while written < size_bytes:
            lines = []
            for _ in range(256):
                user = " ".join(rng.choice(words) for _ in range(80))
                answer = " ".join(rng.choice(words) for _ in range(60))
                lines.append(json.dumps({"messages": [
                    {"role": "system", "content": "You are an agent playing Crafter."},
                    {"role": "user", "content": user}, {"role": "assistant", "content": answer}]}))
            block = "\n".join(lines) + "\n"
            fh.write(block)
            written += len(block.encode())
    os.replace(tmp, path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNTH_")}
    env["SYNTH_DEV_API_KEYS"] = DEV_KEY
    proc = subprocess.Popen([sys.executable, "-m", "synth_cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data_dir), *extra], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"synth-ai serve exited with {proc.returncode}")
        try:
            if httpx.get(base + "/health", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("synth-ai serve did not start")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_child(*args: str) -> tuple[dict, float]:
    """Run this script as a child; return (its JSON result, its peak RSS in MB via wait4)."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, cwd=str(ROOT))
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"child {args[0]} failed with {proc.returncode}")
    return json.loads(out), usage.ru_maxrss / 1024.0  # Linux: KiB


# --------------------------------------------------------------------------- children


def child_upload(base: str, path: str) -> None:
    from synth_cli.api.client import ApiClient
    from synth_cli.api.files import Files

    calls = [0]

    def progress(done: int, total: int) -> None:
        calls[0] += 1

    with ApiClient(base_url=base, api_key=DEV_KEY) as client:
        started = time.perf_counter()
        obj = Files(client).upload(path, progress=progress)
        took = time.perf_counter() - started
    print(json.dumps({"seconds": took, "file": obj, "progress_calls": calls[0]}))


def child_follow(base: str, job_id: str, interval: float, seconds: float) -> None:
    from synth_cli.api.client import ApiClient
    from synth_cli.api.fine_tuning import FineTuning
    from synth_cli.api.follow import JobFollower

    with ApiClient(base_url=base, api_key=DEV_KEY) as client:
        follower = JobFollower(FineTuning(client), job_id, interval=interval, timeout=seconds)
        started = time.perf_counter()
        events = sum(1 for u in follower if u.kind == "event")
        took = time.perf_counter() - started
        print(json.dumps({"seconds": took, "requests": client.request_count, "polls": follower.polls,
                          "events": events, "event_requests": follower.cursor.requests,
                          "status": follower.status}))


# --------------------------------------------------------------------------- main


def bench_upload(size_mb: int, work: Path) -> dict:
    CACHE.mkdir(parents=True, exist_ok=True)
    data = CACHE / f"upload-{size_mb}mb.jsonl"
    log(f"generating {data} ({size_mb} MB) if needed…")
    make_jsonl(data, size_mb * 1024 * 1024)
    size = data.stat().st_size
    proc, base = start_server(work / "serve-upload")
    try:
        log(f"uploading {size / 2**20:.0f} MiB to {base}…")
        result, rss = run_child("--child-upload", base, str(data))
    finally:
        stop(proc)
    assert result["file"]["bytes"] == size, result
    return {"bytes": size, "seconds": round(result["seconds"], 2),
            "throughput_mb_s": round(size / 2**20 / result["seconds"], 1), "client_peak_rss_mb": round(rss, 1),
            "progress_callbacks": result["progress_calls"]}


def bench_polling(interval: float, seconds: float, work: Path) -> dict:
    from synth_cli.api.client import ApiClient
    from synth_cli.api.files import Files
    from synth_cli.api.fine_tuning import FineTuning

    train = work / "poll-train.jsonl"
    make_jsonl(train, 40 * 1024)
    proc, base = start_server(work / "serve-poll", "--step-seconds", "0.5")
    try:
        with ApiClient(base_url=base, api_key=DEV_KEY) as client:
            file_id = Files(client).upload(train)["id"]
            job = FineTuning(client).create_job("gpt-4o-mini", file_id, n_epochs=50, batch_size=1)
        log(f"following {job['id']} for {seconds:.0f}s at --interval {interval}…")
        result, rss = run_child("--child-follow", base, job["id"], str(interval), str(seconds))
    finally:
        stop(proc)
    minutes = result["seconds"] / 60
    return {"interval_s": interval, "followed_s": round(result["seconds"], 1),
            "requests_per_minute": round(result["requests"] / minutes, 1),
            "polls_per_minute": round(result["polls"] / minutes, 1),
            "event_requests": result["event_requests"], "events_received": result["events"],
            "job_status_at_end": result["status"], "client_peak_rss_mb": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--poll-seconds", type=float, default=60.0)
    parser.add_argument("--skip-upload", action="store_true")
    parser.add_argument("--skip-poll", action="store_true")
    parser.add_argument("--child-upload", nargs=2, metavar=("BASE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--child-follow", nargs=4, metavar=("BASE", "JOB", "INTERVAL", "SECONDS"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_upload:
        child_upload(*args.child_upload)
        return
    if args.child_follow:
        base, job, interval, seconds = args.child_follow
        child_follow(base, job, float(interval), float(seconds))
        return
    sys.path.insert(0, str(ROOT))
    work = Path(tempfile.mkdtemp(prefix="synth-bench-"))
    summary: dict = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
    try:
        if not args.skip_upload:
            summary["upload"] = bench_upload(args.size_mb, work)
        if not args.skip_poll:
            summary["polling"] = bench_polling(args.interval, args.poll_seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
