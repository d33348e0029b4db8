"""`synth-ai sft run` on a terminal (a real pseudo-terminal) against `synth-ai serve`.

What a user sees: the upload progress bar (bytes, rate, ETA), then the live view (job id and model,
a spinner with the status, elapsed time, a step/total bar, the latest training loss with a
sparkline), every job event printed once and in order above it, and the summary; Ctrl-C ends with
one `error:` line and the resume command.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time

import httpx
import pytest

from helpers import FIXTURE_DB, run_cli

from helpers import devserver as _devserver
running_server = _devserver.running_server

MODEL = "Qwen/Qwen3-4B-Instruct-2507"
CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"  # rich's "dots"
SPARK = "▁▂▃▄▅▆▇█"
COLUMNS = 160


@pytest.fixture(scope="module")
def train_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "train.jsonl"
    res = run_cli("filter", "--db", FIXTURE_DB, "--min-reward", "1", "--output", out)
    assert res.exit_code == 0, res.output
    return out


class Terminal:
    """The CLI in a subprocess whose stdin/stdout/stderr are one pseudo-terminal, COLUMNS wide."""

    def __init__(self, *args, env: dict):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, COLUMNS, 0, 0))
        full = {k: v for k, v in os.environ.items()
                if not k.startswith(("SYNTH_", "DEFAULT_DEV")) and k not in ("NO_COLOR", "COLUMNS", "LINES")}
        full.update({"TERM": "xterm-256color", **env})
        self.proc = subprocess.Popen([sys.executable, "-m", "synth_cli", *map(str, args)], stdin=slave,
                                     stdout=slave, stderr=slave, env=full, close_fds=True)
        os.close(slave)
        self.master = master
        self.raw = b""

    def read(self, until: str | None = None, timeout: float = 120) -> str:
        """Read until `until` shows up in the text (ANSI removed), or the process ends."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                self.raw += chunk
                if until and until in self.text:
                    return self.text
            elif self.proc.poll() is not None and not until:
                continue  # drain what is left; EIO comes next
        else:
            raise AssertionError(f"timed out waiting for {until!r}: {self.text[-2000:]}")
        if until:
            raise AssertionError(f"{until!r} never appeared: {self.text[-2000:]}")
        return self.text

    @property
    def text(self) -> str:
        return CSI.sub("", self.raw.decode("utf-8", "replace"))

    def lines(self) -> list[str]:
        return [line for line in re.split(r"[\r\n]", self.text) if line.strip()]

    def close(self) -> int:
        try:
            return self.proc.wait(timeout=30)
        finally:
            self.proc.kill()
            os.close(self.master)


def job_events(srv, job_id: str) -> list[dict]:
    """All events of the job, oldest first (serve lists newest first, as OpenAI does)."""
    r = httpx.get(f"{srv.base_url}/fine_tuning/jobs/{job_id}/events", params={"limit": 1000},
                  headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=10)
    r.raise_for_status()
    return list(reversed(r.json()["data"]))


def test_run_on_a_terminal_shows_the_live_view_and_every_event_once(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.05) as srv:
        term = Terminal("sft", "run", train_file, "--model", MODEL, "--epochs", "2", "--batch-size", "4",
                        "--interval", "0.2", "--base-url", srv.base_url, env={"SYNTH_API_KEY": srv.api_key})
        try:
            term.read()
            code = term.close()
        except BaseException:
            term.proc.kill()
            raise
        text = term.text
        assert code == 0, text
        assert "\x1b[" in term.raw.decode("utf-8", "replace")  # a terminal gets colours and cursor moves
        assert "Traceback" not in text
        job_id = re.search(r"created fine-tuning job (ftjob-\S+)", text).group(1)

        # the upload progress bar: bytes done/total, a rate or "?" before the first sample, an ETA
        assert re.search(rf"uploading {train_file.name} .*\d+(\.\d+)?/\d+(\.\d+)? [kM]?B .*\d:\d\d:\d\d", text), text
        assert f"uploaded {train_file.name} as file-" in text

        # the live view
        assert f"fine-tuning {job_id}  ·  {MODEL}" in text
        assert re.search(rf"[{SPINNER}] (validating_files|queued|running) +elapsed \d", text), text
        steps = [(int(a), int(b)) for a, b in re.findall(r"step (\d+)/(\d+) \(\d+%\)", text)]
        assert steps and steps[-1][0] == steps[-1][1] and all(b == steps[0][1] for _, b in steps)
        assert [a for a, _ in steps] == sorted(a for a, _ in steps)  # the bar only moves forward
        sparks = re.findall(rf"train loss (\d+\.\d{{4}}) ([{SPARK}]+)", text)
        assert sparks and max(len(s) for _, s in sparks) > 1

        # every event printed once, in the order the job emitted them (the live view is redrawn
        # many times; event lines are not part of it, so each appears exactly once in the stream)
        printed = [m.group(1) for line in term.lines() if (m := re.match(r"\d\d:\d\d:\d\dZ  (.+?)\s*$", line))]
        printed = [p for p in printed if not p.startswith("status ")]
        expected = [" ".join(e["message"].split()) for e in job_events(srv, job_id)]
        assert printed == expected

        # the summary, after the live view has gone
        summary = text[text.rindex("status "):]
        assert re.search(r"status +succeeded", summary)
        fine_tuned = f"ft:{MODEL}:synth:{job_id}"
        assert re.search(rf"fine-tuned model +{re.escape(fine_tuned)}", text)
        assert re.search(r"trained tokens +[\d,]+", text) and re.search(r"wall time +\d", text)


def test_ctrl_c_on_a_terminal_is_one_error_line_and_the_resume_command(tmp_path, train_file):
    with running_server(tmp_path, step_seconds=0.05) as srv:
        term = Terminal("sft", "run", train_file, "--model", MODEL, "--epochs", "5", "--batch-size", "1",
                        "--interval", "0.2", "--base-url", srv.base_url, env={"SYNTH_API_KEY": srv.api_key})
        try:
            term.read(until="train loss")
            term.proc.send_signal(signal.SIGINT)
            term.read()
            code = term.close()
        except BaseException:
            term.proc.kill()
            raise
        assert code == 130, term.text
        job_id = re.search(r"created fine-tuning job (ftjob-\S+)", term.text).group(1)
        tail = term.lines()[-2:]
        assert tail[0].startswith(f"error: interrupted: stopped following {job_id}"), tail
        assert "the job keeps running" in tail[0]
        assert tail[1] == f"hint: resume with `synth-ai sft poll {job_id} --base-url {srv.base_url}`"
        assert "Traceback" not in term.text
        r = httpx.get(f"{srv.base_url}/fine_tuning/jobs/{job_id}",
                      headers={"Authorization": f"Bearer {srv.api_key}"}, timeout=10)
        assert r.json()["status"] in ("queued", "running")
