"""Benchmark: the fine-tuning client against `synth-ai serve` on loopback.

1. Upload: a JSONL file of --size-mb (default 1024 = 1 GB; generated once into bench/.cache/,
   which is gitignored) is uploaded by a child process through `synth_cli.api.files.Files.upload`
   — the code path of `synth-ai sft submit/run` — with a progress callback. Reported: the child's
   peak RSS (`/usr/bin/time -v`, which cannot include this bench process), wall time and throughput.
   The target: peak RSS <= 100 MB whatever the file size.
   Then the same file through the whole command, `synth-ai sft submit FILE --model M` as a
   process (local validation of every line, the upload, the job creation): once with output to
   a pipe (`--json`) and once on a pseudo-terminal (the rich progress bar redrawn as chunks
   leave). Each upload measurement is repeated --runs times (default 3); medians are reported.
2. Polling cost: a job is started on a small file with a slow simulated step, and a child follows it
   with `JobFollower` at --interval (default 2 s, the CLI's default) for --poll-seconds.
   Reported: HTTP requests per minute, events received, and how many event requests carried the
   `after` cursor (i.e. nothing was fetched twice).

    python bench/upload.py                 # full run (1 GB, 3 runs of each upload, ~6 min)
    python bench/upload.py --size-mb 64 --runs 1 --poll-seconds 20    # quicker
Prints a JSON summary on stdout; progress on stderr. The server is started with a large
--max-upload-bytes (its default, OpenAI's 512 MB per file, would refuse the 1 GB file).
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

from _measure import bench_env, free_port, log

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench" / ".cache"
DEV_KEY = "sk-synth-local-dev-key"


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


def start_server(data_dir: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    env = bench_env(ROOT)
    env["SYNTH_DEV_API_KEYS"] = DEV_KEY
    proc = subprocess.Popen([sys.executable, "-m", "synth_cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--data-dir", str(data_dir), "--max-upload-bytes", str(2**40), *extra], env=env, stdout=subprocess.DEVNULL,
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


def _timed(argv: list[str]):
    """`argv` under /usr/bin/time -v (bench/_measure.py): its peak RSS cannot include this process."""
    sys.dont_write_bytecode = True
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _measure import Timed

    return Timed(argv)


def run_child(*args: str) -> tuple[dict, float]:
    """Run this script as a child; return (its JSON result, its peak RSS in MB by /usr/bin/time -v)."""
    with _timed([sys.executable, __file__, *args]) as timed:
        proc = subprocess.Popen(timed.argv, stdout=subprocess.PIPE, cwd=str(ROOT))
        out = proc.stdout.read()
        proc.wait()
        if proc.returncode != 0:
            raise SystemExit(f"child {args[0]} failed with {proc.returncode}")
        return json.loads(out), timed.rss_mb()


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
    from synth_cli.api.follow import JobFollower
    from synth_cli.api.openai_compat import OpenAIProvider

    with ApiClient(base_url=base, api_key=DEV_KEY) as client:
        follower = JobFollower(OpenAIProvider(client), job_id, interval=interval, timeout=seconds)
        started = time.perf_counter()
        events = sum(1 for u in follower if u.kind == "event")
        took = time.perf_counter() - started
        print(json.dumps({"seconds": took, "requests": client.request_count, "polls": follower.polls,
                          "events": events, "event_requests": follower.cursor.requests,
                          "status": follower.status}))


# --------------------------------------------------------------------------- main


def run_cli_submit(base: str, path: Path, *, tty: bool) -> tuple[float, float, str]:
    """`python -m synth_cli sft submit PATH --model M` as a whole process: (wall s, peak RSS MB, job id).

    With `tty`, stdout and stderr are a pseudo-terminal (drained here), so the CLI draws its
    upload progress bar; otherwise they are pipes and `--json` is used.
    """
    env = bench_env(ROOT)
    env.update({"SYNTH_BACKEND_BASE_URL": base, "SYNTH_BACKEND_API_KEY": DEV_KEY, "TERM": "xterm-256color"})
    timed = _timed([sys.executable, "-m", "synth_cli", "sft", "submit", str(path), "--model", "gpt-4o-mini"])
    args = timed.argv
    started = time.perf_counter()
    if tty:
        import pty
        import select

        master, slave = pty.openpty()
        proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=str(ROOT))
        os.close(slave)
        chunks = []
        while True:  # until EIO: every copy of the terminal's slave side is closed (the child ended)
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(master)
        out = b"".join(chunks).decode("utf-8", "replace")
    else:
        proc = subprocess.Popen(args + ["--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                cwd=str(ROOT))
        out = proc.stdout.read().decode() + proc.stderr.read().decode()  # stderr: a few lines only
    code = proc.wait()
    took = time.perf_counter() - started
    with timed:
        rss = timed.rss_mb() if code == 0 else 0.0
    if code != 0:
        raise SystemExit(f"synth-ai sft submit failed with {code}: {out[-2000:]}")
    job = ""
    for token in out.replace('"', " ").split():
        if token.startswith("ftjob-"):
            job = token
            break
    return took, rss, job


def _median(values: list[float], digits: int = 1) -> float:
    return round(statistics.median(values), digits)


def bench_upload(size_mb: int, work: Path, runs: int = 3, cache: Path = CACHE) -> dict:
    cache.mkdir(parents=True, exist_ok=True)
    data = cache / f"upload-{size_mb}mb.jsonl"
    log(f"generating {data} ({size_mb} MB) if needed…")
    make_jsonl(data, size_mb * 1024 * 1024)
    size = data.stat().st_size
    mib = size / 2**20
    api_runs: list[tuple[float, float, int]] = []
    cli_runs: dict[str, list[tuple[float, float]]] = {"pipe": [], "tty": []}
    for run in range(1, runs + 1):
        # a fresh server (and data dir) per run, so every run stores the file into the same state
        proc, base = start_server(work / f"serve-upload-{run}")
        try:
            log(f"run {run}/{runs}: uploading {mib:.0f} MiB to {base} (API client)…")
            result, rss = run_child("--child-upload", base, str(data))
            assert result["file"]["bytes"] == size, result
            api_runs.append((result["seconds"], rss, result["progress_calls"]))
            for mode in ("pipe", "tty"):
                log(f"run {run}/{runs}: synth-ai sft submit ({mode})…")
                took, cli_rss, job = run_cli_submit(base, data, tty=mode == "tty")
                assert job.startswith("ftjob-"), job
                cli_runs[mode].append((took, cli_rss))
        finally:
            stop(proc)
            shutil.rmtree(work / f"serve-upload-{run}", ignore_errors=True)
    seconds = [r[0] for r in api_runs]
    summary = {"bytes": size, "runs": runs, "seconds": _median(seconds, 2),
               "seconds_all": [round(x, 2) for x in seconds],
               "throughput_mb_s": _median([mib / x for x in seconds]),
               "client_peak_rss_mb": _median([r[1] for r in api_runs]),
               "client_peak_rss_mb_max": round(max(r[1] for r in api_runs), 1),
               "progress_callbacks": api_runs[0][2]}
    for mode, rows in cli_runs.items():
        summary[f"cli_submit_{mode}"] = {
            "seconds": _median([r[0] for r in rows], 2), "seconds_all": [round(r[0], 2) for r in rows],
            "peak_rss_mb": _median([r[1] for r in rows]), "peak_rss_mb_max": round(max(r[1] for r in rows), 1)}
    return summary


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
    return {"interval_s": interval, "followed_s": round(result["seconds"], 1), "requests": result["requests"],
            "polls": result["polls"],
            "requests_per_minute": round(result["requests"] / minutes, 1),
            "polls_per_minute": round(result["polls"] / minutes, 1),
            "event_requests": result["event_requests"], "events_received": result["events"],
            "job_status_at_end": result["status"], "client_peak_rss_mb": round(rss, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--poll-seconds", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each upload measurement (median)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where the generated upload file is kept")
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
            summary["upload"] = bench_upload(args.size_mb, work, max(1, args.runs), args.cache)
        if not args.skip_poll:
            summary["polling"] = bench_polling(args.interval, args.poll_seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
