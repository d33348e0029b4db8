"""`synth-ai sft submit|poll|run|list|show|events|cancel|checkpoints|predictions|trends`.

Thin commands: parse options, call `synth_cli.api` (HTTP) and `synth_cli.dataset.validate`
(local checks), render. httpx, rich and the API modules are imported inside the functions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import typer

from synth_cli.errors import SynthError, UsageError
from synth_cli.commands import _sft_json as sft_json
from synth_cli.output import Col, fmt_bytes, fmt_duration, fmt_float, fmt_int, fmt_time, get_output, write_line

FILE_ID_RE = re.compile(r"^file-[A-Za-z0-9_\-]+$")
DEFAULT_INTERVAL = 2.0


# --------------------------------------------------------------------------- shared options


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not value > 0:
        raise typer.BadParameter(f"{value} is not > 0")
    return value


def _base_url_option():
    return typer.Option(None, "--base-url", metavar="URL", show_default=False,
                        help="Backend base URL (else SYNTH_BACKEND_BASE_URL, SYNTH_BASE_URL, http://127.0.0.1:8000/v1).")


def _api_key_option():
    return typer.Option(None, "--api-key", metavar="KEY", show_default=False,
                        help="API key (else SYNTH_BACKEND_API_KEY, SYNTH_API_KEY, DEFAULT_DEV_API_KEY).")


def _interval_option():
    return typer.Option(DEFAULT_INTERVAL, "--interval", metavar="SECONDS", callback=_positive,
                        help="Seconds between status checks.")


def _timeout_option():
    return typer.Option(None, "--timeout", metavar="SECONDS", callback=_positive, show_default=False,
                        help="Stop waiting after this many seconds (exit 124); the job is not cancelled.")


class Ctx:
    """One API client per command invocation, and how to tell the user to come back."""

    def __init__(self, base_url: str | None, api_key: str | None):
        from synth_cli import config
        from synth_cli.api.client import ApiClient
        from synth_cli.api.fine_tuning import FineTuning

        self.base_flag = base_url
        base = config.base_url(base_url)
        self.client = ApiClient(base_url=base, api_key=config.api_key(api_key, base=base))
        self.ft = FineTuning(self.client)

    def resume(self, job_id: str) -> str:
        from synth_cli.commands._live import resume_command

        return resume_command(job_id, self.base_url_flag_value())

    def base_url_flag_value(self) -> str | None:
        return self.client.base_url if self.base_flag else None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "Ctx":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _job_id(value: str) -> str:
    value = value.strip()
    if not value:
        raise UsageError("the job id is empty", hint="`synth-ai sft list` shows your jobs")
    return value


def _when(ts: Any, *, table: bool = False) -> str:
    """An API time (epoch seconds) for people: UTC, labelled (in a table the header says `(UTC)`)."""
    if ts is None:
        return "–"
    return fmt_time(ts, seconds=not table, label=not table)


def _short(text: Any, width: int = 48) -> str:
    text = " ".join(str(text if text is not None else "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --------------------------------------------------------------------------- local files


def _file_or_id(value: str, what: str) -> tuple[str, Path | str]:
    """('path', Path) for an existing local file, ('id', 'file-…') for an uploaded file id."""
    path = Path(value).expanduser()
    if path.exists():
        if path.is_dir():
            raise UsageError(f"{what} {value} is a directory, not a JSONL file",
                             hint="pass the .jsonl file written by `synth-ai filter`")
        if not path.is_file():
            raise UsageError(f"{what} {value} is not a regular file")
        return "path", path
    if FILE_ID_RE.match(value):
        return "id", value
    raise UsageError(f"{what} {value}: no such file",
                     hint="pass a JSONL file, or the id of an uploaded file (file-…)")


def _validate(path: Path, what: str, model: str | None = None) -> None:
    """Refuse a file that OpenAI would reject, with the validation report (`sft validate`):
    its lines, its size (at least 10 training examples) and each example's tokens against
    `model`'s limit."""
    from synth_cli.dataset import validate as validation

    target = validation.target_for(model)
    if what != "training file":
        target.min_examples = 1  # the minimum applies to the training file
    report = validation.validate_file(path, target)
    if report.ok:
        return
    for line in report.error_lines(limit=20):
        _stderr(line)
    raise SynthError(f"{what} {path} is not valid fine-tuning data ({report.summary()})",
                     hint=f"see `synth-ai sft validate {path}`; --no-validate skips this check")


def _stderr(text: str) -> None:
    from synth_cli.output import write_line

    write_line(text, stderr=True)


def _upload(ctx: Ctx, path: Path) -> dict[str, Any]:
    import sys
    import time

    from synth_cli.api.files import Files

    out = get_output()
    size = path.stat().st_size
    files = Files(ctx.client)
    started = time.monotonic()
    show_bar = not out.json_mode and not out.quiet and sys.stderr.isatty()
    if show_bar:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        columns = (TextColumn("uploading [bold]{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=out.err_console, transient=True) as progress:
            task = progress.add_task(path.name, total=size)
            obj = files.upload(path, progress=lambda done, total: progress.update(task, completed=done))
    else:
        out.status(f"uploading {path} ({fmt_bytes(size)})")
        obj = files.upload(path)
    took = time.monotonic() - started
    rate = f", {fmt_bytes(size / took)}/s" if took > 0.05 else ""
    out.status(f"uploaded {path.name} as {obj.get('id')} ({fmt_bytes(size)} in {fmt_duration(took)}{rate})")
    if not obj.get("id"):
        raise SynthError(f"the backend accepted {path.name} but returned no file id")
    return obj


def _resolve_file(ctx: Ctx, value: str, what: str) -> str:
    kind, target = _file_or_id(value, what)
    if kind == "id":
        return str(target)
    assert isinstance(target, Path)
    return str(_upload(ctx, target)["id"])


def _create(ctx: Ctx, file: str, model: str, *, validation_file: Optional[str], suffix: Optional[str],
            epochs: Optional[int], batch_size: Optional[int], lr: Optional[float], seed: Optional[int],
            validate: bool) -> dict[str, Any]:
    if not model.strip():
        raise UsageError("--model is empty")
    if suffix is not None and not 1 <= len(suffix) <= 64:
        raise UsageError(f"--suffix must be 1 to 64 characters (got {len(suffix)})")
    # check every local file (path, then contents) before uploading anything: a bad validation
    # file must not leave the training file orphaned on the server
    files = [(file, "training file")] + ([(validation_file, "validation file")] if validation_file else [])
    local = [(_file_or_id(value, what), what) for value, what in files]
    if validate:
        for (kind, target), what in local:
            if kind == "path":
                _validate(target, what, model)  # type: ignore[arg-type]
    training_id = _resolve_file(ctx, file, "training file")
    validation_id = _resolve_file(ctx, validation_file, "validation file") if validation_file else None
    return ctx.ft.create_job(model, training_id, validation_file=validation_id, suffix=suffix, seed=seed,
                             n_epochs=epochs, batch_size=batch_size, learning_rate_multiplier=lr)


# --------------------------------------------------------------------------- submit / poll / run


def submit(
    file: str = typer.Argument(..., metavar="FILE_OR_FILE_ID", help="Training data (.jsonl) or an uploaded file id (file-…)."),
    model: str = typer.Option(..., "--model", "-m", help="Base model to fine-tune."),
    validation_file: Optional[str] = typer.Option(None, "--validation-file", metavar="FILE_OR_FILE_ID", help="Validation data (.jsonl) or file id."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Up to 64 characters added to the fine-tuned model's name."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, max=50, help="Epochs (1-50; default: the backend's choice)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=256, help="Batch size (1-256)."),
    learning_rate_multiplier: Optional[float] = typer.Option(None, "--learning-rate-multiplier", callback=_positive, help="Learning-rate multiplier (> 0)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for reproducible training."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the local validation of the files."),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Validate and upload the data, create a fine-tuning job, print its id.

    The file is checked locally first (as `synth-ai sft validate` does) and
    refused with the report when OpenAI would reject it; a `file-…` id skips
    the check and the upload. Follow the job with `synth-ai sft poll JOB_ID`.
    """
    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        job = _create(ctx, file, model, validation_file=validation_file, suffix=suffix, epochs=epochs,
                      batch_size=batch_size, lr=learning_rate_multiplier, seed=seed, validate=not no_validate)
        job_id = str(job.get("id"))
        if out.json_mode:
            out.json(sft_json.job(job))
        elif out.quiet:
            write_line(str(job_id))
        else:
            out.line(f"created fine-tuning job {job_id} (model {job.get('model') or model}, "
                     f"status {job.get('status')})")
            out.line(f"follow it with: {ctx.resume(job_id)}")


def poll(
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="The fine-tuning job to follow."),
    interval: float = _interval_option(),
    timeout: Optional[float] = _timeout_option(),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Follow a job until it ends: live status, every event, a summary.

    On a terminal: a live view (status, step bar, loss sparkline) with each
    event printed once; otherwise timestamped lines; --json: NDJSON events,
    then the job. Exit 0 when it succeeded, 1 when it failed or was cancelled,
    124 when --timeout ran out, 130 on Ctrl-C (the job keeps running; poll
    again to resume).
    """
    from synth_cli.commands._live import follow_job

    out = get_output()
    job_id = _job_id(job_id)
    with Ctx(base_url, api_key) as ctx:
        code = follow_job(ctx.ft, job_id, out, interval=interval, timeout=timeout, resume=ctx.resume(job_id))
    if code:
        raise typer.Exit(code)


def run(
    file: str = typer.Argument(..., metavar="FILE", help="Training data (.jsonl) or an uploaded file id (file-…)."),
    model: str = typer.Option(..., "--model", "-m", help="Base model to fine-tune."),
    validation_file: Optional[str] = typer.Option(None, "--validation-file", metavar="FILE_OR_FILE_ID", help="Validation data (.jsonl) or file id."),
    suffix: Optional[str] = typer.Option(None, "--suffix", help="Up to 64 characters added to the fine-tuned model's name."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, max=50, help="Epochs (1-50; default: the backend's choice)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, max=256, help="Batch size (1-256)."),
    learning_rate_multiplier: Optional[float] = typer.Option(None, "--learning-rate-multiplier", callback=_positive, help="Learning-rate multiplier (> 0)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed for reproducible training."),
    no_validate: bool = typer.Option(False, "--no-validate", help="Skip the local validation of the files."),
    interval: float = _interval_option(),
    timeout: Optional[float] = _timeout_option(),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Validate, upload, start a fine-tuning job and follow it to the end.

    `sft validate` + `sft submit` + `sft poll` in one go. Exit 0 when the job
    succeeded, 1 when it failed or was cancelled, 124 when --timeout ran out,
    130 on Ctrl-C (the job keeps running; `synth-ai sft poll JOB_ID` resumes).
    """
    from synth_cli.commands._live import follow_job

    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        job = _create(ctx, file, model, validation_file=validation_file, suffix=suffix, epochs=epochs,
                      batch_size=batch_size, lr=learning_rate_multiplier, seed=seed, validate=not no_validate)
        job_id = str(job.get("id"))
        out.status(f"created fine-tuning job {job_id}")
        code = follow_job(ctx.ft, job_id, out, interval=interval, timeout=timeout, resume=ctx.resume(job_id),
                          model=job.get("model") or model)
    if code:
        raise typer.Exit(code)


# --------------------------------------------------------------------------- list / show / cancel


def list_jobs(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10000, help="How many jobs (newest first)."),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """List fine-tuning jobs, newest first."""
    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        jobs = list(ctx.ft.iter_jobs(limit=limit + 1))
    more = len(jobs) > limit
    jobs = jobs[:limit]

    def human() -> None:
        if not jobs:
            out.line("no fine-tuning jobs yet; start one with `synth-ai sft run FILE --model M`")
            return
        rows = [(j.get("id"), j.get("status"), j.get("model"), j.get("fine_tuned_model") or "–",
                 _when(j.get("created_at"), table=True), fmt_int(j.get("trained_tokens"))) for j in jobs]
        caption = f"first {len(jobs)}; more with --limit" if more else None
        out.table(["id", "status", Col("model", drop=2), "fine-tuned model", Col("created (UTC)", drop=1),
                   Col("tokens", "right", drop=3)], rows, caption=caption)

    out.result(sft_json.job_list(jobs, has_more=more), human, essential=[j.get("id") for j in jobs])


def _hyper_text(job: dict[str, Any]) -> str:
    from synth_cli.api.fine_tuning import job_hyperparameters

    hp = job_hyperparameters(job)
    return ", ".join(f"{k}={v}" for k, v in hp.items()) or "–"


def show(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Show one fine-tuning job."""
    from synth_cli.commands._live import job_error_text

    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        job = ctx.ft.retrieve(_job_id(job_id))

    def human() -> None:
        pairs = [("id", job.get("id")), ("status", job.get("status")), ("model", job.get("model")),
                 ("fine-tuned model", job.get("fine_tuned_model") or "–"),
                 ("training file", job.get("training_file")), ("validation file", job.get("validation_file") or "–"),
                 ("method", (job.get("method") or {}).get("type") if isinstance(job.get("method"), dict) else "–"),
                 ("hyperparameters", _hyper_text(job)), ("seed", job.get("seed")),
                 ("trained tokens", fmt_int(job.get("trained_tokens"))),
                 ("result files", ", ".join(map(str, job.get("result_files") or [])) or "–"),
                 ("created", _when(job.get("created_at"))),
                 ("finished", _when(job.get("finished_at")))]
        if job.get("estimated_finish"):
            pairs.append(("estimated finish", _when(job.get("estimated_finish"))))
        error = job_error_text(job)
        if error:
            pairs.append(("error", error))
        out.kv(pairs)

    out.result(sft_json.job(job), human)


def cancel(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Cancel a fine-tuning job."""
    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        job = ctx.ft.cancel(_job_id(job_id))
    out.result(sft_json.job(job), lambda: out.line(f"cancelled {job.get('id', job_id)} (status {job.get('status')})"),
               essential=[job.get("id", job_id)])


# --------------------------------------------------------------------------- events


def events(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until the job ends."),
    interval: float = _interval_option(),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Print a job's events, oldest first (--follow: as they happen, until the job ends)."""
    from synth_cli.api.follow import EventCursor, JobFollower
    from synth_cli.commands._live import EventLinesRenderer, JsonRenderer, one_line, utc_stamp
    from synth_cli.errors import EXIT_INTERRUPTED

    out = get_output()
    job_id = _job_id(job_id)
    with Ctx(base_url, api_key) as ctx:
        if not follow:
            ctx.ft.retrieve(job_id)  # a clear 404 for an unknown job
            # one look: nothing later can tell the order of a page whose timestamps all tie (a
            # fresh job), so it is read in the contract's order (newest first) rather than held back
            items = EventCursor(ctx.ft, job_id).poll(final=True)

            def human() -> None:
                if not items:
                    out.line(f"no events yet for {job_id}")
                for event in items:
                    level = str(event.get("level") or "info")
                    prefix = "" if level == "info" else f"{level.upper()}: "
                    out.line(f"{utc_stamp(event.get('created_at'))}  {prefix}{one_line(event.get('message'))}")

            out.result(sft_json.event_list(job_id, items), human,
                       essential=[e.get("id") for e in items if e.get("id") is not None])
            return
        renderer = JsonRenderer(out) if out.json_mode else EventLinesRenderer(out, job_id)
        try:
            for update in JobFollower(ctx.ft, job_id, interval=interval):
                renderer.handle(update, None)
        except KeyboardInterrupt:
            out.error(f"interrupted: stopped following the events of {job_id}",
                      f"the job keeps running; follow it again with `synth-ai sft events {job_id} --follow`")
            raise typer.Exit(EXIT_INTERRUPTED) from None


# --------------------------------------------------------------------------- checkpoints / predictions / trends


def checkpoints(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """List a job's checkpoints (one per epoch on most backends)."""
    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        items = list(ctx.ft.iter_checkpoints(_job_id(job_id)))
    items.sort(key=lambda c: (c.get("step_number") or 0))

    def human() -> None:
        if not items:
            out.line(f"no checkpoints yet for {job_id}")
            return
        rows = []
        for c in items:
            metrics = c.get("metrics") or {}
            rows.append((c.get("id"), fmt_int(c.get("step_number")), fmt_float(metrics.get("train_loss"), 4),
                         fmt_float(metrics.get("valid_loss"), 4) if metrics.get("valid_loss") is not None else "–",
                         c.get("fine_tuned_model_checkpoint"), _when(c.get("created_at"), table=True)))
        out.table(["checkpoint", ("step", "right"), ("train loss", "right"), Col("valid loss", "right", drop=1),
                   "model checkpoint", Col("created (UTC)", drop=2)], rows)

    out.result(sft_json.checkpoint_list(job_id, items), human, essential=[c.get("id") for c in items])


def predictions(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    epoch: Optional[int] = typer.Option(None, "--epoch", min=0, help="Only this epoch."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="Rows per page."),
    offset: int = typer.Option(0, "--offset", min=0, help="Rows to skip."),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """Predictions the backend recorded on training prompts, with their quality metrics."""
    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        data = ctx.ft.predictions(_job_id(job_id), epoch=epoch, limit=limit, offset=offset) or {}
    rows_in = list(data.get("predictions") or [])

    def human() -> None:
        if not rows_in:
            where = f" in epoch {epoch}" if epoch is not None else ""
            total = data.get("total_count")
            if offset and isinstance(total, int) and total > 0:
                out.line(f"no predictions past --offset {offset}: {job_id} has {fmt_int(total)}{where}")
            else:
                out.line(f"no predictions recorded for {job_id}{where}")
            return
        rows = [(p.get("epoch"), fmt_int(p.get("step")), p.get("sample_index"),
                 "yes" if p.get("exact_match") else "no", fmt_float(p.get("char_error_rate"), 3),
                 fmt_float(p.get("word_overlap"), 3), _short(p.get("prompt"), 40), _short(p.get("prediction"), 40),
                 _short(p.get("ground_truth"), 40)) for p in rows_in]
        total = data.get("total_count")
        caption = f"rows {offset + 1}-{offset + len(rows_in)} of {fmt_int(total)}" if total is not None else None
        if data.get("epoch_count") is not None:
            caption = (caption + "; " if caption else "") + f"{data['epoch_count']} epochs"
        if total is not None and offset + len(rows_in) < int(total):
            caption += f"; next page: --offset {offset + len(rows_in)}"
        out.table([("epoch", "right"), ("step", "right"), Col("sample", "right", drop=3), "exact",
                   Col("CER", "right", drop=2), Col("overlap", "right", drop=1), Col("prompt", wrap=True, drop=4),
                   Col("prediction", wrap=True), Col("ground truth", wrap=True)], rows, caption=caption)

    out.result(sft_json.predictions(job_id, data, offset=offset, limit=limit), human,
               essential=[p.get("id") for p in rows_in if p.get("id") is not None])


def trends(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    base_url: Optional[str] = _base_url_option(),
    api_key: Optional[str] = _api_key_option(),
) -> None:
    """A chart of prediction quality per epoch (word overlap, exact match, character error rate)."""
    out = get_output()
    with Ctx(base_url, api_key) as ctx:
        data = ctx.ft.prediction_trends(_job_id(job_id)) or {}
    items = sorted(data.get("trends") or [], key=lambda t: (t.get("epoch") or 0, t.get("step") or 0))

    def human() -> None:
        if not items:
            out.line(f"no predictions recorded yet for {job_id}")
            return
        for line in trend_chart(items):
            out.line(line)
        improvement = data.get("overall_improvement")
        if isinstance(improvement, (int, float)):
            out.line(f"overall improvement: {improvement:+.3f}")
        elif isinstance(improvement, dict):
            out.line("overall improvement: " + ", ".join(
                f"{k} {v:+.3f}" if isinstance(v, (int, float)) else f"{k} {v}" for k, v in improvement.items()))

    out.result(sft_json.trends(job_id, data, items), human)


def trend_chart(items: list[dict[str, Any]], width: int = 30) -> list[str]:
    """One line per epoch: a bar of average word overlap (0-1) and the other averages."""

    def num(value: Any) -> float | None:
        return float(value) if isinstance(value, (int, float)) else None

    lines = [f"{'epoch':>5}  {'word overlap (0-1)':<{width + 6}}  {'exact':>6}  {'CER':>6}  {'len ratio':>9}  {'n':>4}"]
    for t in items:
        overlap = num(t.get("avg_word_overlap"))
        filled = 0 if overlap is None else max(0, min(width, round(overlap * width)))
        bar = "█" * filled + "·" * (width - filled)
        exact = num(t.get("avg_exact_match"))
        cer = num(t.get("avg_char_error_rate"))
        ratio = num(t.get("avg_length_ratio"))
        lines.append(f"{str(t.get('epoch')):>5}  {bar} {('–' if overlap is None else f'{overlap:.3f}'):>5}  "
                     f"{('–' if exact is None else f'{exact * 100:.0f}%'):>6}  "
                     f"{('–' if cer is None else f'{cer:.3f}'):>6}  {('–' if ratio is None else f'{ratio:.2f}'):>9}  "
                     f"{fmt_int(t.get('sample_count')):>4}")
    return lines


def register(sft_app: typer.Typer) -> None:
    sft_app.command("submit")(submit)
    sft_app.command("poll")(poll)
    sft_app.command("run")(run)
    sft_app.command("list")(list_jobs)
    sft_app.command("show")(show)
    sft_app.command("events")(events)
    sft_app.command("cancel")(cancel)
    sft_app.command("checkpoints")(checkpoints)
    sft_app.command("predictions")(predictions)
    sft_app.command("trends")(trends)
