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
    demos = [Demo(BUILTIN, "built-in offline pipeline: agent → proxy → traces → filter → sft run → balance")]
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
    for stale in ("traces.db", "traces.db-wal", "traces.db-shm", "train.jsonl", "train.val.jsonl", "backend.log",
                  "proxy.log", "proxy-spool.jsonl", "train.jsonl.manifest.json", "train.val.jsonl.manifest.json"):
        path = directory / stale
        if path.exists():
            path.unlink()
    if (directory / "backend").is_dir():
        import shutil

        shutil.rmtree(directory / "backend")


def run_pipeline(directory: Path, *, sessions: int, steps: int, seed: int, announce: Callable[[str, str], None],
                 child_stdout=None, quiet: bool = False, provider: str = "openai") -> PipelineResult:
    """Run the steps; `announce(title, command)` is called before each.

    `provider`: which of serve's training APIs `sft run` uses, `openai` (/v1) or `together`
    (/together/v1, with `--provider together`). `quiet`: the steps run with --quiet and their
    stdout is dropped (their errors still show)."""
    from synth_cli.config import DEFAULT_DEV_KEY
    from synth_cli.demo.agent import AgentError, run_agent
    from synth_cli.errors import SynthError

    started = time.monotonic()
    prepare_directory(directory)
    db = directory / "traces.db"
    train = directory / "train.jsonl"
    val = directory / "train.val.jsonl"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SYNTH_BACKEND_", "SYNTH_BASE_URL", "SYNTH_API_KEY", "DEFAULT_DEV_API_KEY",
                                "SYNTH_PROVIDER", "SYNTH_TRACES_DB", "SYNTH_PROXY_", "TOGETHER_API_KEY",
                                "OPENAI_API_KEY"))}
    env["SYNTH_DEV_API_KEYS"] = DEFAULT_DEV_KEY

    def run(title: str, *args: str) -> None:
        announce(title, "synth-ai " + " ".join(shlex.quote(str(a)) for a in args))
        flags = ["--quiet"] if quiet else []
        proc = subprocess.run([sys.executable, "-m", "synth_cli", *flags, *map(str, args)], env=env,
                              stdout=subprocess.DEVNULL if quiet else child_stdout, stderr=None)
        if proc.returncode != 0:
            raise StepFailed(title, proc.returncode)

    port = free_port()
    root = f"http://127.0.0.1:{port}"
    base_url = root + "/v1"
    announce("1. Start the local backend (a simulated model and a training simulator) in the background",
             f"synth-ai serve --port {port} --data-dir {directory / 'backend'} &")
    log_path = directory / "backend.log"
    server = _spawn(["serve", "--host", "127.0.0.1", "--port", str(port), "--data-dir", str(directory / "backend"),
                     "--step-seconds", "0.1", "--seed", str(seed)], env, log_path)
    try:
        _wait_for(base_url + "/health", server, log_path, "the local backend")
        proxy_port = free_port()
        proxy_url = f"http://127.0.0.1:{proxy_port}"
        spool = directory / "proxy-spool.jsonl"
        proxy_log = directory / "proxy.log"
        proxy_args = ["proxy", "--upstream", base_url, "--db", str(db), "--port", str(proxy_port),
                      "--spool", str(spool)]
        announce("2. Start the recording proxy in front of the model: it writes the trace DB",
                 "synth-ai " + " ".join(shlex.quote(a) for a in proxy_args) + " &")
        proxy = _spawn(proxy_args, env, proxy_log)
        try:
            _wait_for(proxy_url + "/synth/status", proxy, proxy_log, "the recording proxy")
            announce("3. A scripted agent plays Crafter-lite, calling the model through the proxy (no tracer code)",
                     f"(in-process) POST {proxy_url}/v1/chat/completions  (X-Synth-Session-Id header; rewards to "
                     f"{proxy_url}/synth/sessions/ID/events)")
            try:
                run_agent(proxy_url, DEFAULT_DEV_KEY, sessions=sessions, steps=steps, seed=seed)
            except AgentError as exc:
                raise SynthError(f"the demo agent failed: {exc}", hint=f"see {log_path} and {proxy_log}") from None
        finally:
            code = _stop(proxy)  # SIGTERM: the proxy writes every open session, then exits
        if code not in (0, None) or not db.exists():
            raise SynthError(f"the recording proxy exited with code {code}", hint=f"see {proxy_log}")
        run("4. What is in the trace DB the proxy wrote", "traces", "--db", db)
        run("5. Keep the good runs as fine-tuning data", "filter", "--db", db, "--min-reward", "1",
            "--output", train, "--val-fraction", "0.2", "--seed", str(seed))
        if provider == "together":
            common = ["--provider", "together", "--base-url", root + "/together/v1", "--api-key", DEFAULT_DEV_KEY]
        else:
            common = ["--base-url", base_url, "--api-key", DEFAULT_DEV_KEY]
        run("6. Fine-tune on it, following the job live", "sft", "run", train, "--model", DEMO_MODEL,
            "--validation-file", val, "--suffix", "demo", "--epochs", "2", "--batch-size", "8", "--interval", "0.3",
            *common)
        run("7. What it cost", "balance", "--usage", "--base-url", base_url, "--api-key", DEFAULT_DEV_KEY)
        fine_tuned = _latest_fine_tuned_model(base_url, DEFAULT_DEV_KEY)
    finally:
        _stop(server)
    files = [p for p in (db, train, val, directory / "train.jsonl.manifest.json", log_path, directory / "proxy.log",
                         directory / "backend") if p.exists()]
    return PipelineResult(directory, db, train, val if val.exists() else None, base_url, fine_tuned, files,
                          time.monotonic() - started)


def _spawn(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """A `synth-ai` server in the background, in its own session (a Ctrl-C reaches the demo, which stops it)."""
    with open(log_path, "wb") as log:
        return subprocess.Popen([sys.executable, "-m", "synth_cli", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for(url: str, server: subprocess.Popen, log_path: Path, what: str, timeout: float = 20.0) -> None:
    import httpx

    from synth_cli.errors import SynthError

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            tail = log_path.read_text(errors="replace").strip().splitlines()[-1:] if log_path.exists() else []
            raise SynthError(f"{what} exited (code {server.returncode}) {' '.join(tail)}".strip(),
                             hint=f"see {log_path}")
        try:
            if httpx.get(url, timeout=1.0, trust_env=False).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SynthError(f"{what} did not answer on {url} within {timeout:.0f}s", hint=f"see {log_path}")


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


def _stop(proc: subprocess.Popen) -> int | None:
    """SIGTERM, then SIGKILL after 15 s; the exit code."""
    if proc.poll() is not None:
        return proc.returncode
    proc.terminate()
    try:
        return proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(timeout=5)


def run_script(script: Path, cwd: Path) -> int:
    """Run an example's `run_demo.sh` with bash; returns its exit code."""
    return subprocess.run(["bash", str(script)], cwd=str(cwd)).returncode
