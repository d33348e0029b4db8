"""`synth-ai serve`: run the local OpenAI-compatible fine-tuning backend (a training simulator)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from synth_cli import config
from synth_cli.commands._index import SUMMARIES
from synth_cli.errors import SynthError, UsageError
from synth_cli.output import fmt_usd, get_output

DATA_DIR_VARS = ("SYNTH_DATA_DIR",)


def default_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("synth-ai", appauthor=False)) / "serve"


def accepted_keys() -> tuple[list[str], str]:
    """(keys, where they come from): SYNTH_DEV_API_KEYS (comma-separated) or the default dev key."""
    raw = os.environ.get("SYNTH_DEV_API_KEYS", "")
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    if keys:
        for key in keys:
            config.register_secret(key)
        return list(dict.fromkeys(keys)), "SYNTH_DEV_API_KEYS"
    return [config.DEFAULT_DEV_KEY], "default"


def is_loopback(host: str) -> bool:
    """True only for names that cannot be reached from another machine (localhost, 127.0.0.0/8, ::1)."""
    import ipaddress

    name = host.strip().strip("[]")
    if name.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _shown_key(key: str) -> str:
    return key if key == config.DEFAULT_DEV_KEY else config.mask_key(key)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all interfaces)."),
    port: int = typer.Option(8000, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", metavar="DIR",
                                            help="State directory (env SYNTH_DATA_DIR; default: the user data dir)."),
    step_seconds: float = typer.Option(0.2, "--step-seconds", min=0.001, max=3600,
                                       help="Simulated seconds per training step (and per status change)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for jobs without one and for injected faults."),
    fail_rate: float = typer.Option(0.0, "--fail-rate", min=0.0, max=1.0,
                                    help="Answer this share of API requests with a 5xx (fault injection)."),
    rate_limit: float = typer.Option(0.0, "--rate-limit", min=0.0,
                                     help="Requests per second per key before 429 + Retry-After (0: no limit)."),
    latency_ms: float = typer.Option(0.0, "--latency-ms", min=0.0, max=600_000, help="Added delay per API request."),
    credit_usd: float = typer.Option(100.0, "--credit-usd", min=0.0, help="Starting credit of every API key."),
    max_json_bytes: int = typer.Option(1024 * 1024, "--max-json-bytes", min=1024, max=2**40, metavar="BYTES",
                                       help="Largest JSON request body (413 beyond it)."),
    max_upload_bytes: int = typer.Option(512 * 1024 * 1024, "--max-upload-bytes", min=1, max=2**50, metavar="BYTES",
                                         help="Largest uploaded file (default: OpenAI's 512 MB; 413 beyond it)."),
    max_form_fields: int = typer.Option(16, "--max-form-fields", min=1, max=10_000, metavar="N",
                                        help="Most text fields in an upload besides the file (400 beyond it)."),
    max_chat_bytes: int = typer.Option(32 * 1024 * 1024, "--max-chat-bytes", min=1024, max=2**40, metavar="BYTES",
                                       help="Largest request to the simulated model (/v1/chat/completions, "
                                            "/v1/messages; 413 beyond it)."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request on stderr."),
) -> None:
    """Run a local OpenAI-compatible fine-tuning backend: a training SIMULATOR.

    Implements OpenAI's files + fine-tuning API (plus training predictions and account
    balance), so `sft run`, `balance` and the `openai` SDK work offline. Jobs go through
    validating_files → queued → running → succeeded with simulated losses, checkpoints and
    predictions; nothing is trained. State lives in SQLite under --data-dir and survives
    restarts. Keys: SYNTH_DEV_API_KEYS (comma-separated), else the public dev key it prints;
    listening beyond loopback (e.g. --host 0.0.0.0) requires SYNTH_DEV_API_KEYS.
    """
    out = get_output()
    setting = config.resolve(DATA_DIR_VARS, str(data_dir) if data_dir else None, "--data-dir")
    directory = Path(setting.value).expanduser() if setting else default_data_dir()
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--data-dir {directory}: not a directory")
    keys, key_source = accepted_keys()
    if key_source == "default" and not is_loopback(host):
        raise SynthError(f"refusing to listen on {host or 'all interfaces'} with the public default dev key: anyone who "
                         "can reach the port could use this server",
                         hint="set SYNTH_DEV_API_KEYS to your own key(s), or listen on 127.0.0.1")

    from synth_cli.devserver.run import Stopped, bind, run
    from synth_cli.devserver.server import ServerConfig
    from synth_cli.devserver.store import Store, StoreLocked

    import sqlite3

    try:
        store = Store(directory)
        store.lock()
    except StoreLocked as exc:
        raise SynthError(f"{exc} (stop it first, or pass another --data-dir)") from None
    except sqlite3.DatabaseError as exc:
        raise SynthError(f"cannot use data dir {directory}: state.db is not usable ({exc})",
                         hint="pass another --data-dir, or move the directory away to start afresh") from None
    except OSError as exc:
        raise SynthError(f"cannot use data dir {directory}: {exc.strerror or exc}") from None
    try:
        sock = bind(host, port)
    except OSError as exc:
        store.close()
        if exc.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise SynthError(f"port {port} on {host} is already in use (stop the other server or pass another "
                             "--port)") from None
        raise SynthError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound_port = sock.getsockname()[1]
    shown_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown_host and not shown_host.startswith("["):
        shown_host = f"[{shown_host}]"
    base_url = f"http://{shown_host}:{bound_port}/v1"
    server_config = ServerConfig(data_dir=directory, api_keys=tuple(keys), step_seconds=step_seconds, seed=seed,
                                 fail_rate=fail_rate, rate_limit=rate_limit, latency_ms=latency_ms,
                                 credit_usd=credit_usd, max_json_bytes=max_json_bytes,
                                 max_upload_bytes=max_upload_bytes, max_form_fields=max_form_fields,
                                 max_chat_bytes=max_chat_bytes)
    _announce(out, base_url, host, keys, key_source, directory, server_config)
    try:
        started = run(server_config, store, sock, access_log=access_log)
    except (Stopped, KeyboardInterrupt):
        out.status("synth-ai serve stopped")
        return
    if not started:
        raise SynthError("the server could not start (see the messages above)")


def _announce(out, base_url: str, host: str, keys: list[str], key_source: str, directory: Path,
              cfg) -> None:
    import sys

    shown = [_shown_key(k) for k in keys]
    faults = []
    if cfg.fail_rate:
        faults.append(f"fail-rate {cfg.fail_rate:g}")
    if cfg.rate_limit:
        faults.append(f"rate-limit {cfg.rate_limit:g}/s")
    if cfg.latency_ms:
        faults.append(f"latency {cfg.latency_ms:g} ms")
    if out.json_mode:
        out.ndjson({"base_url": base_url, "api_keys": shown, "api_key_source": key_source, "data_dir": str(directory),
                  "simulator": True, "step_seconds": cfg.step_seconds, "seed": cfg.seed, "fail_rate": cfg.fail_rate,
                  "rate_limit": cfg.rate_limit, "latency_ms": cfg.latency_ms, "credit_usd": cfg.credit_usd})
    else:
        key_note = ("the public default dev key; set SYNTH_DEV_API_KEYS to choose your own" if key_source == "default"
                    else "from SYNTH_DEV_API_KEYS")
        out.line("synth-ai serve: a local training simulator (OpenAI-compatible fine-tuning API; no model is trained)")
        out.line(f"  base URL:   {base_url}")
        out.line(f"  API key:    {', '.join(shown)}  ({key_note})")
        out.line(f"  data dir:   {directory}")
        out.line(f"  simulation: {cfg.step_seconds:g} s per step" + (f", seed {cfg.seed}" if cfg.seed is not None else "")
                 + f"; credit {fmt_usd(cfg.credit_usd)} per key" + (f"; faults: {', '.join(faults)}" if faults else ""))
        if not out.quiet:
            example_key = keys[0] if key_source == "default" else "<your key>"
            out.line(f"  try:        SYNTH_BASE_URL={base_url} SYNTH_API_KEY={example_key} "
                     "synth-ai sft run train.jsonl --model gpt-4o-mini")
            out.line("Press Ctrl-C to stop.")
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("serve", short_help=SUMMARIES["serve"])(serve)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'serve': [
        ('synth-ai serve',
         'A local OpenAI-compatible fine-tuning backend on http://127.0.0.1:8000/v1.'),
    ],
}
