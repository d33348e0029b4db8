"""Start `synth-ai serve` for a test: a real subprocess on a free 127.0.0.1 port.

    from helpers.devserver import running_server      # tests/ is on sys.path (pytest, conftest.py)

    with running_server(tmp_path, step_seconds=0.01) as srv:
        httpx.get(srv.base_url + "/fine_tuning/jobs", headers={"Authorization": f"Bearer {srv.api_key}"})
        srv.restart()                                 # same data dir, same port

Keyword flags map to `serve` options (`step_seconds=0.01` → `--step-seconds 0.01`; `True` → a bare
flag). Extra keywords: `api_keys=[...]` (sets SYNTH_DEV_API_KEYS; `.api_key` is the first),
`env={...}` (more environment), `data_dir=PATH` (default `tmp_path / "serve-data"`, so two
`running_server(tmp_path)` in one test share their state). The server is always stopped (SIGINT,
then SIGKILL after 10 s); its output goes to `<data_dir>.log`, whose tail is in any start error.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx

DEFAULT_DEV_KEY = "sk-synth-local-dev-key"
#: a base model the local backend fine-tunes (any name works; this one is in its price table).
BASE_MODEL = "Qwen/Qwen3-4B-Instruct-2507"
START_TIMEOUT = 30.0
_CLI_ENV_PREFIXES = ("SYNTH_", "DEFAULT_DEV_API_KEY")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class ServerHandle:
    base_url: str
    api_key: str
    proc: subprocess.Popen
    port: int
    data_dir: Path
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None

    @property
    def root_url(self) -> str:
        return self.base_url[: -len("/v1")]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}

    def stop(self) -> int | None:
        """SIGINT (a clean Ctrl-C), SIGKILL if it does not end in 10 s; returns the exit code."""
        proc = self.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        return proc.returncode

    def restart(self) -> "ServerHandle":
        """Stop and start again on the same port with the same data dir and flags."""
        self.stop()
        self.proc = _spawn(self.args, self.env, self.log_path)
        _wait_healthy(self)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""


def _flag_args(flags: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in flags.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        args += [flag] if value is True else [flag, str(value)]
    return args


def _spawn(args: list[str], env: dict[str, str], log_path: Path | None) -> subprocess.Popen:
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        return subprocess.Popen([sys.executable, "-m", "synth_cli", "serve", *args], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        if log is not subprocess.DEVNULL:
            log.close()


def _wait_healthy(handle: ServerHandle, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if handle.proc.poll() is not None:
            raise RuntimeError(f"synth-ai serve exited with {handle.proc.returncode}:\n{handle.log()[-2000:]}")
        try:
            if httpx.get(handle.root_url + "/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    handle.stop()
    raise RuntimeError(f"synth-ai serve did not answer /health within {timeout:.0f}s:\n{handle.log()[-2000:]}")


@contextmanager
def running_server(tmp_path: Path, **serve_flags: Any) -> Iterator[ServerHandle]:
    """`synth-ai serve --port <free> --data-dir <tmp_path>/serve-data [flags]`, stopped on exit."""
    api_keys = serve_flags.pop("api_keys", None)
    extra_env = serve_flags.pop("env", None) or {}
    data_dir = Path(serve_flags.pop("data_dir", None) or Path(tmp_path) / "serve-data")
    port = int(serve_flags.pop("port", None) or free_port())
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CLI_ENV_PREFIXES)}
    env["PYTHONUNBUFFERED"] = "1"
    if api_keys:
        env["SYNTH_DEV_API_KEYS"] = ",".join(api_keys)
    env.update(extra_env)
    args = ["--host", "127.0.0.1", "--port", str(port), "--data-dir", str(data_dir), *_flag_args(serve_flags)]
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    log_path = data_dir.parent / (data_dir.name + ".log")
    handle = ServerHandle(base_url=f"http://127.0.0.1:{port}/v1", api_key=(api_keys or [DEFAULT_DEV_KEY])[0],
                          proc=_spawn(args, env, log_path), port=port, data_dir=data_dir, args=args, env=env,
                          log_path=log_path)
    try:
        _wait_healthy(handle)
        yield handle
    finally:
        handle.stop()
