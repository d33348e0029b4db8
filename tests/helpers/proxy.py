"""Start `synth-ai proxy` for a test (or the bench): a real subprocess on a free 127.0.0.1 port.

    with running_proxy(tmp_path, upstream.base_url, db) as px:
        OpenAI(base_url=px.openai_url, api_key="sk-...")
        px.status()                                  # GET /synth/status
        code = px.stop()                             # SIGTERM, waits for the drain; the exit code

Output (stdout and stderr) goes to `<tmp_path>/proxy-<port>.log` (`px.log()`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from .devserver import free_port

_CLI_ENV_PREFIXES = ("SYNTH_", "DEFAULT_DEV_API_KEY")


@dataclass
class ProxyHandle:
    url: str
    proc: subprocess.Popen
    log_path: Path

    @property
    def openai_url(self) -> str:
        return self.url + "/v1"

    def status(self) -> dict[str, Any]:
        return httpx.get(self.url + "/synth/status", timeout=10).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise RuntimeError(f"synth-ai proxy did not stop within {timeout:.0f}s:\n{self.log()[-2000:]}") from None
        return self.proc.returncode

    def wait_idle(self, timeout: float = 30) -> dict[str, Any]:
        """The status once the recording process has taken every call sent so far and reported what
        it made of them. It records off the request path and counts an item as taken before it
        handles it, so the first report with an empty queue may not hold that item's outcome yet:
        wait for two reports in a row that agree."""
        deadline = time.monotonic() + timeout
        previous = None
        while True:
            status = self.status()
            if status["queue"]["size"] == 0:
                sessions = {k: v for k, v in status["sessions"].items() if k != "open_list"}
                opened = [(x["session_id"], x["calls"]) for x in status["sessions"].get("open_list", [])]
                figures = (status["calls"], sessions, opened)
                if figures == previous:
                    return status
                previous = figures
            if time.monotonic() > deadline:
                return status
            time.sleep(0.06)


def spawn_proxy(upstream: str, db: str | os.PathLike, log_path: Path, *extra: str,
                port: int | None = None, env: dict[str, str] | None = None) -> ProxyHandle:
    port = port or free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(_CLI_ENV_PREFIXES)}
    full_env["PYTHONUNBUFFERED"] = "1"
    full_env.update(env or {})
    if "--spool" not in extra and "SYNTH_PROXY_SPOOL" not in full_env:
        extra = (*extra, "--spool", str(log_path.parent / "proxy-spool.jsonl"))
    args = [sys.executable, "-m", "synth_cli", "proxy", "--upstream", upstream, "--db", str(db),
            "--host", "127.0.0.1", "--port", str(port), *extra]
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()
    handle = ProxyHandle(f"http://127.0.0.1:{port}", proc, log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"synth-ai proxy exited with {proc.returncode}:\n{handle.log()[-2000:]}")
        try:
            if httpx.get(handle.url + "/synth/status", timeout=1.0).status_code == 200:
                return handle
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"synth-ai proxy did not answer within 30s:\n{handle.log()[-2000:]}")


@contextmanager
def running_proxy(tmp_path: Path, upstream: str, db: str | os.PathLike, *extra: str,
                  env: dict[str, str] | None = None) -> Iterator[ProxyHandle]:
    port = free_port()
    handle = spawn_proxy(upstream, db, Path(tmp_path) / f"proxy-{port}.log", *extra, port=port, env=env)
    try:
        yield handle
    finally:
        if handle.proc.poll() is None:
            handle.stop()
