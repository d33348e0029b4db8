"""Rendering a followed fine-tuning job: rich live view, plain log lines, NDJSON, or quiet.

The follow loop itself (HTTP, cursors, status transitions) is `synth_cli.api.follow.JobFollower`;
this module only turns its updates into output and maps the outcome to an exit code. It is
imported inside command functions only (it pulls in rich).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from synth_cli.api.types import Job
from synth_cli.errors import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_OK, SynthError
from synth_cli.output import Output, fmt_duration, fmt_int

#: exit code when --timeout ends the wait (the job itself goes on), as GNU `timeout` does.
EXIT_TIMEOUT = 124

SPARK = "▁▂▃▄▅▆▇█"
STATUS_STYLE = {"succeeded": "bold green", "failed": "bold red", "cancelled": "bold yellow",
                "running": "bold cyan", "queued": "bold", "validating_files": "bold", "paused": "bold magenta"}


def sparkline(values: list[float], width: int = 32) -> str:
    """The whole series in at most `width` cells: longer runs are averaged in equal buckets, so the
    first steps stay on screen and the scale is the run's (a fall from 2.00 to 0.19 shows)."""
    values = [v for v in values if v == v]  # drop NaN
    if len(values) > width:
        edges = [round(i * len(values) / width) for i in range(width + 1)]
        values = [sum(values[a:b]) / (b - a) for a, b in zip(edges, edges[1:]) if b > a]
    if not values:
        return ""
    low, high = min(values), max(values)
    if high - low < 1e-12:
        return SPARK[len(SPARK) // 2] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, int((v - low) / (high - low) * (len(SPARK) - 1) + 0.5))]
                   for v in values)


def utc_stamp(ts: Any = None) -> str:
    """`2025-01-31T12:00:03Z` for a unix time (or now)."""
    try:
        moment = datetime.fromtimestamp(float(ts), tz=timezone.utc) if ts is not None else datetime.now(timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        moment = datetime.now(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def local_clock(ts: Any = None) -> str:
    """The live view's line stamp: `HH:MM:SSZ`, UTC like every time the CLI shows (docs/json.md)."""
    from synth_cli.output import fmt_clock

    return fmt_clock(ts)


def one_line(text: Any) -> str:
    return " ".join(str(text if text is not None else "").split())


def job_wall_time(job: Job, fallback: float) -> float:
    wall = job.wall_seconds
    return wall if wall is not None else fallback


# --------------------------------------------------------------------------- renderers


class PlainRenderer:
    """Not a terminal: timestamped lines, one per status change or event; no ANSI codes."""

    def __init__(self, out: Output, job_id: str):
        self.out = out
        self.job_id = job_id
        self.in_outage = False

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def _line(self, stamp: str, text: str) -> None:
        self.out.line(f"{stamp}  {text}")

    def handle(self, update, follower) -> None:
        kind = update.kind
        if kind == "job":
            job = update.job
            self._line(utc_stamp(), f"following {job.id or self.job_id} (model {job.model}): "
                                    f"status {job.status}")
        elif kind == "event":
            event = update.event
            level = event.level or "info"
            prefix = "" if level == "info" else f"{level.upper()}: "
            self._line(utc_stamp(event.created_at), prefix + one_line(event.message))
        elif kind == "status":
            self._line(utc_stamp(), f"status {update.previous_status} -> {update.job.status}")
        elif kind == "outage" and not self.in_outage:
            self.in_outage = True
            self._line(utc_stamp(), f"backend not answering ({one_line(update.error.message)}); still trying")
        elif kind == "recovered":
            self.in_outage = False
            self._line(utc_stamp(), "backend answering again")


class EventLinesRenderer(PlainRenderer):
    """`sft events --follow`: only the events, as log lines."""

    def handle(self, update, follower) -> None:
        if update.kind in ("event", "outage", "recovered"):
            super().handle(update, follower)


class JsonRenderer:
    """`--json`: NDJSON, one line per event (the final job object is written by the caller)."""

    def __init__(self, out: Output):
        self.out = out

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def handle(self, update, follower) -> None:
        if update.kind == "event":
            from synth_cli.commands import _sft_json as sft_json

            self.out.ndjson(sft_json.event(update.event))


class QuietRenderer(JsonRenderer):
    def handle(self, update, follower) -> None:
        pass


class LiveRenderer:
    """A terminal: rich live view (header, spinner + status + elapsed, step bar, loss sparkline);
    events are printed above it, once each, as they arrive."""

    def __init__(self, out: Output, job_id: str, model: str | None = None):
        from rich.live import Live
        from rich.spinner import Spinner

        self.out = out
        self.job_id = job_id
        self.model = model
        self.follower = None
        self.note: str | None = None
        self.spinner = Spinner("dots", style="cyan")
        self._first_step: tuple[float, int] | None = None  # (monotonic time, step) first seen: for the ETA
        # the sink's console: lines printed through `out` appear above the view
        self.live = Live(self, console=out.console, refresh_per_second=8, transient=True,
                         redirect_stdout=False, redirect_stderr=False)

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        try:
            self.live.stop()
        except Exception:  # noqa: BLE001 - never let cleanup hide the real outcome
            pass

    def __rich__(self):
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        follower = self.follower
        job = follower.job if follower else None
        status = job.status if job else "connecting"
        header = Text.assemble(("fine-tuning ", "dim"), (str((job.id if job else None) or self.job_id), "bold"),
                               ("  ·  ", "dim"), (str((job.model if job else None) or self.model or "?"), "bold"))
        line = Table.grid(padding=(0, 1))
        line.add_column()
        line.add_column()
        line.add_column()
        self.spinner.update(text=Text(status, style=STATUS_STYLE.get(status, "bold")))
        elapsed = fmt_duration(follower.elapsed) if follower else "0.0s"
        line.add_row(self.spinner, Text(f"elapsed {elapsed}", style="dim"),
                     Text(self.note or "", style="yellow"))
        rows: list[Any] = [header, line]
        progress = follower.progress if follower else None
        if progress and progress.total_steps:
            step = min(progress.step or 0, progress.total_steps)
            bar = Table.grid(padding=(0, 1))
            bar.add_column(width=40)
            bar.add_column()
            bar.add_row(ProgressBar(total=progress.total_steps, completed=step, width=40),
                        Text(f"step {fmt_int(step)}/{fmt_int(progress.total_steps)} "
                             f"({100 * step / progress.total_steps:.0f}%)" + self._eta(step, progress.total_steps)))
            rows.append(bar)
        if progress and progress.train_loss is not None:
            loss = Text.assemble(("train loss ", "dim"), (f"{progress.train_loss:.4f} ", "bold"),
                                 (sparkline(list(progress.losses)), "magenta"))
            if len(progress.losses) > 1:
                loss.append(f" from {progress.losses[0]:.4f}", style="dim")
            if progress.valid_loss is not None:
                loss.append("  valid loss ", style="dim")
                loss.append(f"{progress.valid_loss:.4f}", style="bold")
            rows.append(loss)
        return Group(*rows)

    def _eta(self, step: int, total: int) -> str:
        """` · ETA 3m12s` from the pace since the first step this view saw."""
        import time

        now = time.monotonic()
        if self._first_step is None or step < self._first_step[1]:
            self._first_step = (now, step)
            return ""
        started, first = self._first_step
        if step <= first or step >= total or now - started < 1e-3:
            return ""
        return f" · ETA {fmt_duration((now - started) / (step - first) * (total - step))}"

    def handle(self, update, follower) -> None:
        from rich.text import Text

        self.follower = follower
        kind = update.kind
        if kind == "event":
            event = update.event
            level = event.level or "info"
            style = {"warn": "yellow", "warning": "yellow", "error": "red"}.get(level, "")
            self.out.print(Text.assemble((local_clock(event.created_at) + "  ", "dim"),
                                         (one_line(event.message), style)))
        elif kind == "status":
            status = update.job.status
            self.out.print(Text.assemble((local_clock() + "  ", "dim"), ("status ", "dim"),
                                         (str(status), STATUS_STYLE.get(status, "bold"))))
        elif kind == "outage":
            self.note = f"backend not answering ({one_line(update.error.message)[:80]}); still trying"
        elif kind == "recovered":
            self.note = None
        self.live.refresh()


# --------------------------------------------------------------------------- the follow command body


def resume_command(job_id: str, base_flag: str | None, provider_flag: str | None = None) -> str:
    import shlex

    parts = ["synth-ai", "sft", "poll", job_id]
    if provider_flag:
        parts += ["--provider", provider_flag]
    if base_flag:
        parts += ["--base-url", base_flag]
    return " ".join(shlex.quote(p) for p in parts)


def follow_job(provider, job_id: str, out: Output, *, interval: float, timeout: float | None, resume: str,
               model: str | None = None) -> int:
    """Follow `job_id` to its end with the renderer that suits the output; return the exit code.

    0 succeeded · 1 failed/cancelled (the job's error is printed) · 124 --timeout reached ·
    130 interrupted (the job keeps running; the resume command is printed).
    """
    from synth_cli.api.follow import JobFollower

    follower = JobFollower(provider, job_id, interval=interval, timeout=timeout)
    if out.json_mode:
        renderer: Any = JsonRenderer(out)
    elif out.quiet:
        renderer = QuietRenderer(out)
    elif out.is_terminal:
        renderer = LiveRenderer(out, job_id, model)
    else:
        renderer = PlainRenderer(out, job_id)
    started = time.monotonic()
    timed_out = False
    renderer.start()
    try:
        for update in follower:
            renderer.handle(update, follower)
            if update.kind == "done":
                timed_out = update.timed_out
    except KeyboardInterrupt:
        renderer.stop()
        status = follower.status
        state = f" (status {status})" if status else ""
        # the one `error:` line (+ hint) every other Ctrl-C prints, saying what happens to the job
        out.error(f"interrupted: stopped following {job_id}{state}; the job keeps running on the backend",
                  f"resume with `{resume}`")
        return EXIT_INTERRUPTED
    finally:
        renderer.stop()
    job = follower.job or Job(id=job_id, status="unknown", raw={"id": job_id})
    wall = time.monotonic() - started
    from synth_cli.commands import _sft_json as sft_json

    # --json: the last NDJSON line of the stream; --quiet: the fine-tuned model, when there is one
    out.result(sft_json.job(job), lambda: print_summary(out, job, job_wall_time(job, wall)), stream=True,
               essential=[job.fine_tuned_model] if job.succeeded and job.fine_tuned_model else [])
    status = job.status
    if timed_out:
        raise SynthError(f"stopped waiting after {fmt_duration(timeout)}: job {job_id} is still {status} "
                         f"(not cancelled)", hint=f"keep following it with `{resume}`", exit_code=EXIT_TIMEOUT)
    if status == "succeeded":
        return EXIT_OK
    error = job.error_text
    if status == "cancelled":
        raise SynthError(f"job {job_id} was cancelled" + (f": {error}" if error else ""), exit_code=EXIT_FAILURE)
    raise SynthError(f"job {job_id} {status}" + (f": {error}" if error else ""),
                     hint=f"details: `synth-ai sft events {job_id}`", exit_code=EXIT_FAILURE)


def print_summary(out: Output, job: Job, wall: float) -> None:
    pairs = [("status", job.status), ("fine-tuned model", job.fine_tuned_model or "–"),
             ("trained tokens", fmt_int(job.trained_tokens)), ("wall time", fmt_duration(wall))]
    if not out.is_terminal:
        width = max(len(k) for k, _ in pairs)
        for key, value in pairs:
            out.line(f"{key + ':':<{width + 1}} {value}")
        return
    out.print()
    out.kv(pairs)
