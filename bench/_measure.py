"""Peak RSS of a child process that cannot include the bench process's own pages.

On Linux a child's `ru_maxrss` (what `os.wait4` returns) starts from the size of the process
it was forked from: a 300 MB parent makes `/bin/true` read ~300 MB. So every bench runs what
it measures under `/usr/bin/time -v`, a small process that forks the command itself, and
reads "Maximum resident set size" from its report. For a command with worker processes the
figure is that of the largest process of its tree.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time

TIME = "/usr/bin/time"


def bench_env(root: "os.PathLike[str] | str", drop: tuple[str, ...] = ("SYNTH_",)) -> dict[str, str]:
    """The environment of a measured command: `root`'s code first on PYTHONPATH, no variables
    starting with `drop`, and compiled bytecode kept (in $TMPDIR/synth-bench-pycache) as an installed
    package has it. With PYTHONDONTWRITEBYTECODE set (as in some sandboxes) every run would compile
    the CLI's modules again: tens of milliseconds a process that no installed synth-ai pays (pip compiles at
    install) and the floors, which import C modules, do not pay either. Warm-up rounds fill the cache."""
    root = os.fspath(root)
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and os.path.realpath(p) != os.path.realpath(root)]
    env["PYTHONPATH"] = os.pathsep.join([root, *rest])
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    # outside the repository (a bench writes nothing into it); shared by runs, keyed by source path
    env["PYTHONPYCACHEPREFIX"] = os.path.join(tempfile.gettempdir(), "synth-bench-pycache")
    return env


def log(msg: str) -> None:
    """Progress on stderr (the benches print their JSON summary on stdout)."""
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the benches talk to loopback only)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(report: str) -> float:
    """User + system seconds of the whole process tree in a `/usr/bin/time -v` report."""
    return sum(float(line.rsplit(":", 1)[1]) for line in report.splitlines()
               if "User time (seconds)" in line or "System time (seconds)" in line)


def max_rss_bytes(report: str) -> int:
    """Bytes of "Maximum resident set size (kbytes)" in a `/usr/bin/time -v` report."""
    for line in report.splitlines():
        if "Maximum resident set size" in line:
            return int(line.rsplit(":", 1)[1]) * 1024
    raise SystemExit(f"no peak RSS in the /usr/bin/time report: {report[-500:]!r}")


class Timed:
    """`with Timed(argv) as t: proc = subprocess.Popen(t.argv, …); … proc.wait()`, then `t.rss_bytes()`."""

    def __init__(self, argv: list[str]):
        fd, self.report = tempfile.mkstemp(prefix="bench-time-", suffix=".txt")
        os.close(fd)
        self.argv = [TIME, "-v", "-o", self.report, *argv]

    def __enter__(self) -> "Timed":
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.unlink(self.report)
        except OSError:
            pass

    def text(self) -> str:
        with open(self.report) as fh:
            return fh.read()

    def rss_bytes(self) -> int:
        return max_rss_bytes(self.text())

    def cpu_s(self) -> float:
        return cpu_seconds(self.text())

    def rss_mb(self) -> float:
        return self.rss_bytes() / 2**20


def run(argv: list[str], **popen) -> tuple[float, int, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS bytes, completed process) of one command under /usr/bin/time -v."""
    with Timed(argv) as t:
        started = time.perf_counter()
        proc = subprocess.run(t.argv, **popen)
        wall = time.perf_counter() - started
        return wall, (t.rss_bytes() if proc.returncode == 0 else 0), proc
