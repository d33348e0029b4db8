"""`synth-ai proxy`: a recording proxy for OpenAI Chat Completions and Anthropic Messages."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from synth_cli import config
from synth_cli.commands._index import SUMMARIES
from synth_cli.errors import EXIT_FAILURE, SynthError, UsageError
from synth_cli.output import get_output

UPSTREAM_VARS = ("SYNTH_PROXY_UPSTREAM",)
SPOOL_VARS = ("SYNTH_PROXY_SPOOL",)


def default_spool() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir("synth-ai", appauthor=False)) / "proxy-spool.jsonl"


def _check_upstream(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--upstream {url}: not an http(s):// URL",
                         hint="e.g. --upstream https://api.openai.com/v1 or --upstream http://127.0.0.1:8000/v1")
    if parts.username or parts.password:
        raise UsageError("--upstream: credentials in the URL are not supported (the client's auth headers are "
                         "passed through)")
    if parts.query or parts.fragment:
        raise UsageError(f"--upstream {url}: a base URL has no query or fragment")
    return url.rstrip("/")


def proxy(
    upstream: Optional[str] = typer.Option(None, "--upstream", "-u", metavar="URL",
                                           help="Where calls go, e.g. https://api.openai.com/v1 or "
                                                "https://api.anthropic.com (env SYNTH_PROXY_UPSTREAM)."),
    db: Optional[str] = typer.Option(None, "--db", metavar="TARGET",
                                     help="Trace DB to record into: a file, a sqld-layout dir or sqlite:/// URL "
                                          "(env SYNTH_TRACES_DB; default ./synth_ai.db)."),
    port: int = typer.Option(8100, "--port", "-p", min=0, max=65535, help="TCP port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all interfaces)."),
    idle_timeout: float = typer.Option(300.0, "--idle-timeout", min=1.0, max=7 * 86400, metavar="SECONDS",
                                       help="A session with no call for this long is written; a client's default "
                                            "session then starts anew."),
    queue_size: int = typer.Option(10_000, "--queue-size", min=1, max=10_000_000,
                                   help="Calls waiting to be recorded; beyond it calls pass through unrecorded "
                                        "(counted)."),
    spool: Optional[Path] = typer.Option(None, "--spool", metavar="PATH",
                                         help="Where sessions the DB refuses are kept (env SYNTH_PROXY_SPOOL; "
                                              "default: the user data dir)."),
    timeout: float = typer.Option(600.0, "--timeout", min=1.0, max=86400, metavar="SECONDS",
                                  help="Seconds to wait for the upstream between bytes."),
) -> None:
    """Record every LLM call an agent makes, with no change to the agent: a proxy.

    Point the agent's SDK at it (OpenAI: base_url http://127.0.0.1:8100/v1; Anthropic:
    base_url http://127.0.0.1:8100). POST /v1/chat/completions and /v1/messages, streamed
    or not, go to --upstream unchanged, come back unchanged, and are recorded in --db as
    LLM call records; other paths are forwarded without recording.

    Sessions: header X-Synth-Session-Id (plus X-Synth-Experiment-Id, X-Synth-Metadata as a
    JSON object) or path prefix /s/SESSION_ID/v1/...; otherwise one session per client
    address, renewed after --idle-timeout. Rewards: POST /synth/sessions/ID/events with
    {"reward": 1.0}; POST /synth/sessions/ID/end ends a session; GET /synth/status counts.

    Ctrl-C or SIGTERM writes every open session before exit; sessions the DB refuses are
    kept in the spool file and written at the next start.
    """
    out = get_output()
    up = config.resolve(UPSTREAM_VARS, upstream, "--upstream")
    if up is None:
        raise UsageError("no upstream: pass --upstream URL (or set SYNTH_PROXY_UPSTREAM)",
                         hint="e.g. --upstream https://api.openai.com/v1")
    upstream_url = _check_upstream(up.value)
    db_setting = config.resolve(("SYNTH_TRACES_DB",), db, "--db")
    spool_setting = config.resolve(SPOOL_VARS, str(spool) if spool else None, "--spool")
    spool_path = Path(spool_setting.value).expanduser() if spool_setting else default_spool()

    import warnings

    from synth_cli.devserver.run import bind
    from synth_cli.proxy.run import build, serve
    from synth_cli.tracing.tracer import TraceWriteWarning

    # the tracer's warnings reach out.warn through notify; Python's own display would repeat them
    warnings.simplefilter("ignore", TraceWriteWarning)

    proxy_ = build(upstream_url, db_setting.value if db_setting else None, str(spool_path),
                   idle_timeout=idle_timeout, queue_size=queue_size, timeout=timeout, notify=out.warn)
    try:
        sock = bind(host, port)
    except OSError as exc:
        proxy_.sink.close()
        if exc.errno in (98, 48, 10048):
            raise SynthError(f"port {port} on {host} is already in use (stop the other server or pass another "
                             "--port)") from None
        raise SynthError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = sock.getsockname()[1]
    shown_host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    if ":" in shown_host:
        shown_host = f"[{shown_host}]"
    base = f"http://{shown_host}:{bound}"
    _announce(out, base, host, upstream_url, proxy_, spool_path, idle_timeout)
    try:
        started = serve(proxy_, sock)
    except KeyboardInterrupt:
        started = True
    _summary(out, proxy_, spool_path)
    if not started:
        raise SynthError("the proxy could not start (see the messages above)")
    if proxy_.stats.calls_lost:
        raise SynthError(f"{proxy_.stats.calls_lost} recorded calls were lost (the DB and the spool file refused "
                         "them)", exit_code=EXIT_FAILURE)


def _announce(out, base: str, host: str, upstream: str, proxy_, spool_path: Path, idle_timeout: float) -> None:
    db = proxy_.sink.location
    if host not in ("127.0.0.1", "localhost", "::1"):
        out.warn(f"listening on {host}: anyone who can reach this port can send calls through the proxy (with their "
                 "own key) and into the trace DB")
    if out.json_mode:
        out.ndjson({"event": "listening", "url": base, "openai_base_url": base + "/v1", "anthropic_base_url": base,
                    "upstream": upstream, "db": db, "spool": str(spool_path), "idle_timeout": idle_timeout,
                    "replayed_from_spool": proxy_.replayed, "still_spooled": proxy_.still_spooled})
        return
    out.line(f"synth-ai proxy: recording LLM calls into {db}")
    out.line(f"  listening:  {base}  (OpenAI SDK base_url={base}/v1, Anthropic SDK base_url={base})")
    out.line(f"  upstream:   {upstream}")
    out.line(f"  sessions:   X-Synth-Session-Id header or {base}/s/<id>/v1; otherwise one per client address, "
             f"new after {idle_timeout:g} s idle")
    out.line(f"  status:     {base}/synth/status")
    if proxy_.replayed:
        out.status(f"wrote {proxy_.replayed} spooled session(s) from {spool_path}")
    if proxy_.still_spooled:
        out.warn(f"{proxy_.still_spooled} spooled session(s) for this DB still cannot be written; they stay in "
                 f"{spool_path}")
    if not out.quiet:
        out.line("Press Ctrl-C to stop (open sessions are written first).")


def _summary(out, proxy_, spool_path: Path) -> None:
    s = proxy_.stats
    if out.json_mode:
        out.ndjson({"event": "stopped", "calls_recorded": s.calls_recorded, "sessions_written": s.sessions_written,
                    "calls_dropped_queue_full": s.calls_dropped, "events_dropped_queue_full": s.events_dropped,
                    "calls_spooled": s.calls_spooled, "sessions_spooled": s.sessions_spooled,
                    "sessions_spooled_by_tracer": s.sessions_tracer_spooled,
                    "calls_lost": s.calls_lost, "calls_unrecordable": s.calls_unrecordable,
                    "spool": str(spool_path), "db": proxy_.sink.location})
        return
    out.status(f"synth-ai proxy stopped: {s.calls_recorded} call(s) recorded in {s.sessions_written} session(s) "
               f"into {proxy_.sink.location}")
    if s.calls_dropped or s.events_dropped:
        out.warn(f"{s.calls_dropped} call(s) and {s.events_dropped} event(s) were not recorded: the record queue "
                 "was full (raise --queue-size)")
    ours, our_calls = s.sessions_spooled - s.sessions_tracer_spooled, s.calls_spooled - s.calls_tracer_spooled
    if ours:
        out.warn(f"{ours} session(s) ({our_calls} calls) could not be written to the DB and are in the spool file "
                 f"{spool_path}; the next `synth-ai proxy` on this DB writes them")
    if s.sessions_tracer_spooled:
        out.warn(f"{s.sessions_tracer_spooled} session(s) ({s.calls_tracer_spooled} calls) found the DB busy and are "
                 "in the tracer's spool next to it; the next tracer or proxy opening the DB writes them")
    if s.calls_unrecordable:
        out.warn(f"{s.calls_unrecordable} call(s) passed through but could not be read as their API's JSON "
                 f"(last: {s.last_error})")


def register(app: typer.Typer) -> None:
    app.command("proxy", short_help=SUMMARIES["proxy"])(proxy)


#: Examples for the manual (`synth-ai man`, man/): (command line, what it does), per command path.
EXAMPLES: dict[str, list[tuple[str, str]]] = {
    'proxy': [
        ('synth-ai proxy --upstream https://api.openai.com/v1 --db traces.db',
         "Record an agent's OpenAI calls: run it with OPENAI_BASE_URL=http://127.0.0.1:8100/v1."),
        ('synth-ai proxy --upstream https://api.anthropic.com --db traces.db --port 8200',
         "The same for Anthropic's SDK: ANTHROPIC_BASE_URL=http://127.0.0.1:8200."),
        ('curl -X POST http://127.0.0.1:8100/synth/sessions/run-1/end -d \'{"reward": 1.0}\'',
         'Give the session run-1 (header X-Synth-Session-Id: run-1) its reward and write it.'),
    ],
}
