"""The offline pipeline behind `synth-ai demo`, and the discovery of example demos.

Each step is the real CLI run as a child process (`python -m synth_cli …`), so what
the demo prints is exactly what a user gets from the commands it shows. The local
backend runs in the background on a free port and is stopped in every case.
"""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BUILTIN = "pipeline"
MARKER = ".synth-demo"
DEMO_MODEL = "Qwen/Qwen3-4B-Instruct-2507"


@dataclass
class Demo:
    name: str
    description: str
    script: Path | None = None  # None: the built-in pipeline


def discover(cwd: Path) -> list[Demo]:
    """The built-in demo plus every `examples/**/run_demo.sh` under `cwd`."""
    demos = [Demo(BUILTIN, "built-in offline pipeline: agent → traces → filter → sft run → balance")]
    examples = cwd / "examples"
    if examples.is_dir():
        for script in sorted(examples.rglob("run_demo.sh")):
            name = script.parent.relative_to(examples).as_posix()
            demos.append(Demo(name, _first_comment(script) or f"{script.relative_to(cwd)}", script))
    return demos


def _first_comment(script: Path) -> str:
    try:
        with open(script, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if line.startswith("#!") or not line.startswith("#"):
                    continue
                text = line.lstrip("#").strip()
                if text:
                    return text
    except OSError:
        pass
    return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PipelineResult:
    directory: Path
    db: Path
    train: Path
    val: Path | None
    base_url: str
    fine_tuned_model: str | None
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0


class StepFailed(Exception):
    def __init__(self, title: str, code: int):
        super().__init__(f"step '{title}' failed (exit {code})")
        self.title = title
        self.code = code


def prepare_directory(directory: Path) -> None:
    """Create the demo directory, or reuse one an earlier demo made; never clobber anything else."""
    from synth_cli.errors import UsageError

    if directory.exists():
        if not directory.is_dir():
            raise UsageError(f"--dir {directory}: exists and is not a directory")
        if any(directory.iterdir()) and not (directory / MARKER).exists():
            raise UsageError(f"--dir {directory}: exists and was not made by `synth-ai demo`",
                             hint="name an empty or new directory with --dir")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--dir {directory}: cannot create the directory ({exc.strerror or exc})") from None
    try:
        (directory / MARKER).write_text("made by `synth-ai demo`; safe to delete\n", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"--dir {directory}: cannot write in the directory ({exc.strerror or exc})") from None
    # start over: an earlier demo's files and its backend's jobs, files and spend go
    for stale in ("traces.db", "train.jsonl", "train.val.jsonl", "backend.log"):
        path = directory / stale
        if path.exists():
            path.unlink()
    if (directory / "backend").is_dir():
        import shutil

        shutil.rmtree(directory / "backend")


def run_pipeline(directory: Path, *, sessions: int, steps: int, seed: int, announce: Callable[[str, str], None],
                 child_stdout=None, quiet: bool = False) -> PipelineResult:
    """Run the seven steps; `announce(title, command)` is called before each.

    `quiet`: the steps run with --quiet and their stdout is dropped (their errors still show)."""
    from synth_cli.config import DEFAULT_DEV_KEY
    from synth_cli.demo.agent import run_agent

    started = time.monotonic()
    prepare_directory(directory)
    db = directory / "traces.db"
    train = directory / "train.jsonl"
    val = directory / "train.val.jsonl"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SYNTH_BACKEND_", "SYNTH_BASE_URL", "SYNTH_API_KEY", "DEFAULT_DEV_API_KEY"))}
    env["SYNTH_DEV_API_KEYS"] = DEFAULT_DEV_KEY

    def run(title: str, *args: str) -> None:
        announce(title, "synth-ai " + " ".join(shlex.quote(str(a)) for a in args))
        flags = ["--quiet"] if quiet else []
        proc = subprocess.run([sys.executable, "-m", "synth_cli", *flags, *map(str, args)], env=env,
                              stdout=subprocess.DEVNULL if quiet else child_stdout, stderr=None)
        if proc.returncode != 0:
            raise StepFailed(title, proc.returncode)

    announce("1. A scripted agent plays Crafter-lite and writes traces with SessionTracer",
             f"(in-process) SessionTracer → {db}")
    run_agent(db, sessions=sessions, steps=steps, seed=seed)
    run("2. What is in the trace DB", "traces", "--db", db)
    run("3. Keep the good runs as fine-tuning data", "filter", "--db", db, "--min-reward", "1",
        "--output", train, "--val-fraction", "0.2", "--seed", str(seed))

    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    announce("4. Start the local backend (a training simulator) in the background",
             f"synth-ai serve --port {port} --data-dir {directory / 'backend'} &")
    log_path = directory / "backend.log"
    with open(log_path, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "synth_cli", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--data-dir", str(directory / "backend"), "--step-seconds", "0.1", "--seed", str(seed)],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_health(base_url, server, log_path)
        common = ["--base-url", base_url, "--api-key", DEFAULT_DEV_KEY]
        run("5. Fine-tune on it, following the job live", "sft", "run", train, "--model", DEMO_MODEL,
            "--validation-file", val, "--suffix", "demo", "--epochs", "2", "--batch-size", "8", "--interval", "0.3", *common)
        run("6. What it cost", "balance", "--usage", *common)
        fine_tuned = _latest_fine_tuned_model(base_url, DEFAULT_DEV_KEY)
    finally:
        _stop(server)
    files = [p for p in (db, train, val, log_path, directory / "backend") if p.exists()]
    return PipelineResult(directory, db, train, val if val.exists() else None, base_url, fine_tuned, files,
                          time.monotonic() - started)


def _wait_for_health(base_url: str, server: subprocess.Popen, log_path: Path, timeout: float = 20.0) -> None:
    import httpx

    from synth_cli.errors import SynthError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            raise SynthError(f"the local backend exited (code {server.returncode}) {' '.join(tail)}".strip(),
                             hint=f"see {log_path}")
        try:
            if httpx.get(base_url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SynthError(f"the local backend did not answer on {base_url} within {timeout:.0f}s", hint=f"see {log_path}")


def _latest_fine_tuned_model(base_url: str, key: str) -> str | None:
    from synth_cli.api.client import ApiClient
    from synth_cli.api.fine_tuning import FineTuning

    try:
        with ApiClient(base_url=base_url, api_key=key) as client:
            jobs = FineTuning(client).list_jobs(limit=1)
    except Exception:  # noqa: BLE001 - the summary is best effort; the steps already reported
        return None
    data = jobs.get("data") if isinstance(jobs, dict) else None
    return (data[0].get("fine_tuned_model") if data else None)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def run_script(script: Path, cwd: Path) -> int:
    """Run an example's `run_demo.sh` with bash; returns its exit code."""
    return subprocess.run(["bash", str(script)], cwd=str(cwd)).returncode
