"""`synth-ai sft submit|poll|run|list|show|events|cancel|checkpoints|predictions|trends`.

Thin commands: parse options, call `synth_cli.api` (HTTP) and `synth_cli.dataset.validate`
(local checks), render. httpx, rich and the API modules are imported inside the functions.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Optional

import typer

from synth_cli.commands._options import api_key_option, base_url_option, provider_option

from synth_cli.errors import DatasetError, SynthError, UsageError
from synth_cli.commands import _sft_json as sft_json
from synth_cli.output import Col, fmt_bytes, fmt_duration, fmt_float, fmt_int, fmt_time, get_output

FILE_ID_RE = re.compile(r"^file-[A-Za-z0-9_\-]+$")
DEFAULT_INTERVAL = 2.0


# --------------------------------------------------------------------------- shared options


def _positive(value: Optional[float]) -> Optional[float]:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise typer.BadParameter(f"{value} is not a finite number > 0")
    return value


def _non_negative(value: Optional[float]) -> Optional[float]:
    if value is not None and not (value >= 0 and math.isfinite(value)):
        raise typer.BadParameter(f"{value} is not a finite number >= 0")
    return value


def _interval_option():
    return typer.Option(DEFAULT_INTERVAL, "--interval", metavar="SECONDS", callback=_positive,
                        help="Seconds between status checks.")


def _timeout_option():
    return typer.Option(None, "--timeout", metavar="SECONDS", callback=_positive, show_default=False,
                        help="Stop waiting after this many seconds (exit 124); the job is not cancelled.")


class Ctx:
    """One provider (one HTTP client, one connection pool) per command invocation."""

    def __init__(self, provider: str | None, base_url: str | None, api_key: str | None):
        from synth_cli.api.providers import open_provider

        self.provider_flag = provider
        self.base_flag = base_url
        self.provider = open_provider(provider, base_url, api_key)

    def resume(self, job_id: str) -> str:
        from synth_cli.commands._live import resume_command

        return resume_command(job_id, self.provider.base_url if self.base_flag else None,
                              self.provider.name if self.provider_flag else None)

    def close(self) -> None:
        self.provider.close()

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


def _pairs(values: Optional[list[str]], flag: str) -> dict[str, str]:
    """`KEY=VALUE` options (repeatable) → a dict; a bad one is a usage error naming it."""
    out: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        if key in out:
            raise UsageError(f"{flag} {key} is given twice")
        out[key] = value
    return out


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


def _upload(ctx: Ctx, path: Path, shown: Path | None = None):
    import sys
    import time

    out = get_output()
    shown = shown or path
    size = path.stat().st_size
    started = time.monotonic()
    show_bar = not out.json_mode and not out.quiet and sys.stderr.isatty()
    if show_bar:
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        columns = (TextColumn("uploading [bold]{task.description}"), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, console=out.err_console, transient=True) as progress:
            task = progress.add_task(shown.name, total=size)
            obj = ctx.provider.upload_file(path, progress=lambda done, total: progress.update(task, completed=done))
    else:
        out.status(f"uploading {shown} ({fmt_bytes(size)})")
        obj = ctx.provider.upload_file(path)
    took = time.monotonic() - started
    rate = f", {fmt_bytes(size / took)}/s" if took > 0.05 else ""
    if not obj.id:
        raise SynthError(f"the backend accepted {shown.name} but returned no file id")
    out.status(f"uploaded {shown.name} as {obj.id} ({fmt_bytes(size)} in {fmt_duration(took)}{rate})")
    return obj


class _Files:
    """The training/validation inputs of a job: checked and prepared before anything is uploaded."""

    def __init__(self, ctx: Ctx, model: str, file: str, validation_file: Optional[str], validate: bool,
                 workdir: Path):
        self.items: list[tuple[str, str, Path | str]] = []  # (what, kind, path-to-upload or id)
        self.sources: dict[str, Path] = {}
        kinds = [("training file", file)] + ([("validation file", validation_file)] if validation_file else [])
        for what, value in kinds:
            _file_or_id(value, what)  # every local path is checked before anything else
        for what, value in kinds:
            kind, target = _file_or_id(value, what)
            if kind == "path":
                assert isinstance(target, Path)
                if validate:
                    _validate(target, what, model)
                self.sources[what] = target
                try:
                    target, notes = ctx.provider.prepare_file(target, model, workdir, what)
                except DatasetError as exc:
                    for item in getattr(getattr(exc, "report", None), "reasons", lambda: [])()[:20]:
                        more = "…" if item["count"] > len(item["lines"]) else ""
                        _stderr(f"  {item['reason']}: {item['count']} line(s): "
                                f"{', '.join(map(str, item['lines']))}{more}")
                    raise
                for note in notes:
                    get_output().status(note)
            self.items.append((what, kind, target))

    def local(self, what: str) -> Path | None:
        for name, kind, target in self.items:
            if name == what and kind == "path":
                assert isinstance(target, Path)
                return target
        return None

    def upload(self, ctx: Ctx) -> dict[str, str]:
        ids: dict[str, str] = {}
        for what, kind, target in self.items:
            if kind == "id":
                ids[what] = str(target)
            else:
                assert isinstance(target, Path)
                ids[what] = _upload(ctx, target, self.sources.get(what)).id
        return ids


def _dataset_metadata(path: Path | None) -> dict[str, str]:
    """What traces a job back to its data: the training file's name and sha256, and, when the
    manifest `filter` wrote next to it lists that sha256, the filter settings, sources and counts."""
    if path is None:
        return {}
    from synth_cli.dataset import manifest

    sha256 = manifest.sha256_of(path)
    recorded = {"dataset": path.name[:512], "dataset_sha256": sha256}
    doc = manifest.find(path, sha256)
    if doc is not None:
        recorded.update(manifest.job_metadata(doc))
    return recorded


def _create(ctx: Ctx, opts: dict[str, Any]):
    """Check everything, show the cost, then upload and create the job. Returns the Job."""
    import tempfile

    from synth_cli.api.provider import JobSpec
    from synth_cli.commands import _preflight

    model = opts["model"]
    if not model.strip():
        raise UsageError("--model is empty")
    suffix = opts.get("suffix")
    if suffix is not None and not 1 <= len(suffix) <= 64:
        raise UsageError(f"--suffix must be 1 to 64 characters (got {len(suffix)})")
    metadata = _pairs(opts.get("metadata"), "--metadata")
    params = _pairs(opts.get("param"), "--param")
    spec = JobSpec(model=model, suffix=suffix, seed=opts.get("seed"), epochs=opts.get("epochs"),
                   batch_size=opts.get("batch_size"), learning_rate=opts.get("learning_rate"),
                   learning_rate_multiplier=opts.get("learning_rate_multiplier"), metadata=metadata, params=params)
    ctx.provider.build_job_request(spec)  # every flag and --param checked before anything is uploaded
    with tempfile.TemporaryDirectory(prefix="synth-sft-") as workdir:
        files = _Files(ctx, model, opts["file"], opts.get("validation_file"), opts["validate"], Path(workdir))
        check = _preflight.run(ctx.provider, spec, files.local("training file"))
        _preflight.render(check)
        _preflight.enforce(check, max_cost=opts.get("max_cost"), yes=opts.get("yes", False))
        spec.recorded = _dataset_metadata(files.sources.get("training file"))
        ids = files.upload(ctx)
    spec.training_file = ids["training file"]
    spec.validation_file = ids.get("validation file")
    _preflight.after_upload(ctx.provider, spec, check, max_cost=opts.get("max_cost"))
    return ctx.provider.create_job(spec)


def _job_options(func):
    """The options `sft submit` and `sft run` share, declared once."""
    import functools
    import inspect

    shared = [
        ("model", str, typer.Option(..., "--model", "-m", help="Base model to fine-tune.")),
        ("validation_file", Optional[str], typer.Option(None, "--validation-file", metavar="FILE_OR_FILE_ID",
                                                        help="Validation data (.jsonl) or file id.")),
        ("suffix", Optional[str], typer.Option(None, "--suffix",
                                               help="Up to 64 characters added to the fine-tuned model's name.")),
        ("epochs", Optional[int], typer.Option(None, "--epochs", min=1, max=50,
                                               help="Epochs (1-50; default: the backend's choice).")),
        ("batch_size", Optional[int], typer.Option(None, "--batch-size", min=1, max=1024, help="Batch size.")),
        ("learning_rate_multiplier", Optional[float], typer.Option(
            None, "--learning-rate-multiplier", callback=_positive,
            help="Learning-rate multiplier (> 0); for together: × its default rate 1e-5.")),
        ("learning_rate", Optional[float], typer.Option(None, "--learning-rate", callback=_positive,
                                                        help="Learning rate (together; openai takes the multiplier).")),
        ("seed", Optional[int], typer.Option(None, "--seed", min=0, max=2_147_483_647,
                                             help="Seed for reproducible training.")),
        ("param", Optional[list[str]], typer.Option(None, "--param", metavar="KEY=VALUE",
                                                    help="A provider's own hyperparameter (repeatable); see "
                                                         "`synth-ai sft params --provider NAME`.")),
        ("metadata", Optional[list[str]], typer.Option(None, "--metadata", metavar="KEY=VALUE",
                                                       help="Job metadata (repeatable, openai); the dataset's name "
                                                            "and sha256 are recorded too, and the filter settings "
                                                            "from its manifest (FILE.manifest.json).")),
        ("max_cost", Optional[float], typer.Option(None, "--max-cost", metavar="USD", callback=_non_negative,
                                                   help="Refuse (nothing uploaded) when the estimate is above this.")),
        ("yes", bool, typer.Option(False, "--yes", "-y",
                                   help="Do not ask before a job above SYNTH_CONFIRM_ABOVE_USD (default $5).")),
        ("no_validate", bool, typer.Option(False, "--no-validate", help="Skip the local validation of the files.")),
        ("provider", Optional[str], provider_option()),
        ("base_url", Optional[str], base_url_option()),
        ("api_key", Optional[str], api_key_option()),
    ]
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
             for name, annotation, default in shared]
    names = {name for name, _, _ in shared}

    @functools.wraps(func)
    def wrapper(**kwargs: Any) -> Any:
        opts = {name: kwargs.pop(name) for name in list(kwargs) if name in names}
        return func(**kwargs, opts=opts)

    kept = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params if p.name != "opts"]
    wrapper.__signature__ = sig.replace(parameters=[*kept[:1], *extra, *kept[1:]])  # type: ignore[attr-defined]
    return wrapper


# --------------------------------------------------------------------------- submit / poll / run


@_job_options
def submit(
    file: str = typer.Argument(..., metavar="FILE_OR_FILE_ID", help="Training data (.jsonl) or an uploaded file id (file-…)."),
    *, opts: dict[str, Any],
) -> None:
    """Validate and upload the data, create a fine-tuning job, print its id.

    The file is checked locally first (as `synth-ai sft validate` does) and
    refused with the report when the provider would reject it; a `file-…` id
    skips the check and the upload. Before anything is uploaded the trained
    tokens, the estimated price, the balance and the base model's limits are
    shown; --max-cost refuses a job estimated above it, and on a terminal a job
    above SYNTH_CONFIRM_ABOVE_USD asks first (-y skips). Follow the job with
    `synth-ai sft poll JOB_ID`.
    """
    out = get_output()
    with Ctx(opts.pop("provider"), opts.pop("base_url"), opts.pop("api_key")) as ctx:
        job = _create(ctx, {**opts, "file": file, "validate": not opts["no_validate"]})

        def human() -> None:
            out.line(f"created fine-tuning job {job.id} (model {job.model or opts['model']}, status {job.status})")
            out.line(f"follow it with: {ctx.resume(job.id)}")

        out.result(sft_json.job(job), human, essential=[job.id])  # --quiet: the id, for $(...)


def poll(
    job_id: str = typer.Argument(..., metavar="JOB_ID", help="The fine-tuning job to follow."),
    interval: float = _interval_option(),
    timeout: Optional[float] = _timeout_option(),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
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
    with Ctx(provider, base_url, api_key) as ctx:
        code = follow_job(ctx.provider, job_id, out, interval=interval, timeout=timeout, resume=ctx.resume(job_id))
    if code:
        raise typer.Exit(code)


@_job_options
def run(
    file: str = typer.Argument(..., metavar="FILE", help="Training data (.jsonl) or an uploaded file id (file-…)."),
    interval: float = _interval_option(),
    timeout: Optional[float] = _timeout_option(),
    *, opts: dict[str, Any],
) -> None:
    """Validate, upload, start a fine-tuning job and follow it to the end.

    `sft validate` + `sft submit` + `sft poll` in one go, with the same cost
    check as `sft submit` before anything is uploaded. Exit 0 when the job
    succeeded, 1 when it failed or was cancelled, 124 when --timeout ran out,
    130 on Ctrl-C (the job keeps running; `synth-ai sft poll JOB_ID` resumes).
    """
    from synth_cli.commands._live import follow_job

    out = get_output()
    with Ctx(opts.pop("provider"), opts.pop("base_url"), opts.pop("api_key")) as ctx:
        job = _create(ctx, {**opts, "file": file, "validate": not opts["no_validate"]})
        out.status(f"created fine-tuning job {job.id}")
        code = follow_job(ctx.provider, job.id, out, interval=interval, timeout=timeout, resume=ctx.resume(job.id),
                          model=job.model or opts["model"])
    if code:
        raise typer.Exit(code)


# --------------------------------------------------------------------------- list / show / cancel / pause / resume


def list_jobs(
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=10000, help="How many jobs (newest first)."),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """List fine-tuning jobs, newest first."""
    out = get_output()
    with Ctx(provider, base_url, api_key) as ctx:
        jobs = list(ctx.provider.iter_jobs(limit=limit + 1))
    more = len(jobs) > limit
    jobs = jobs[:limit]

    def human() -> None:
        if not jobs:
            out.line("no fine-tuning jobs yet; start one with `synth-ai sft run FILE --model M`")
            return
        rows = [(j.id, j.status, j.model, j.fine_tuned_model or "–", _when(j.created_at, table=True),
                 fmt_int(j.trained_tokens)) for j in jobs]
        caption = f"first {len(jobs)}; more with --limit" if more else None
        out.table(["id", "status", Col("model", drop=2), "fine-tuned model", Col("created (UTC)", drop=1),
                   Col("tokens", "right", drop=3)], rows, caption=caption)

    out.result(sft_json.job_list(jobs, has_more=more), human, essential=[j.id for j in jobs])


def _hyper_text(job) -> str:
    return ", ".join(f"{k}={v}" for k, v in job.hyperparameters.items()) or "–"


def show(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """Show one fine-tuning job."""
    out = get_output()
    with Ctx(provider, base_url, api_key) as ctx:
        job = ctx.provider.retrieve(_job_id(job_id))

    def human() -> None:
        pairs = [("id", job.id), ("status", job.status if job.status == job.provider_status
                                   else f"{job.status} ({job.provider_status})"), ("model", job.model),
                 ("fine-tuned model", job.fine_tuned_model or "–"),
                 ("training file", job.training_file), ("validation file", job.validation_file or "–"),
                 ("method", job.method or "–"),
                 ("hyperparameters", _hyper_text(job)), ("seed", job.seed),
                 ("trained tokens", fmt_int(job.trained_tokens)),
                 ("result files", ", ".join(job.result_files) or "–"),
                 ("created", _when(job.created_at)),
                 ("finished", _when(job.finished_at))]
        if job.metadata:
            pairs.append(("metadata", ", ".join(f"{k}={v}" for k, v in job.metadata.items())))
        if job.estimated_finish:
            pairs.append(("estimated finish", _when(job.estimated_finish)))
        if job.error_text:
            pairs.append(("error", job.error_text))
        out.kv(pairs)

    out.result(sft_json.job(job), human)


def _action(verb: str, past: str, job_id: str, provider: Optional[str], base_url: Optional[str],
            api_key: Optional[str]) -> None:
    out = get_output()
    with Ctx(provider, base_url, api_key) as ctx:
        job = getattr(ctx.provider, verb)(_job_id(job_id))
    out.result(sft_json.job(job), lambda: out.line(f"{past} {job.id or job_id} (status {job.status})"),
               essential=[job.id or job_id])


def cancel(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """Cancel a fine-tuning job."""
    _action("cancel", "cancelled", job_id, provider, base_url, api_key)


def pause(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """Pause a running fine-tuning job (OpenAI's /pause; resume it with `sft resume`)."""
    _action("pause", "paused", job_id, provider, base_url, api_key)


def resume(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """Resume a paused fine-tuning job (OpenAI's /resume)."""
    _action("resume", "resumed", job_id, provider, base_url, api_key)


# --------------------------------------------------------------------------- events


def events(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new events until the job ends."),
    interval: float = _interval_option(),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """Print a job's events, oldest first (--follow: as they happen, until the job ends)."""
    from synth_cli.api.follow import EventCursor, JobFollower
    from synth_cli.commands._live import EventLinesRenderer, JsonRenderer, one_line, utc_stamp
    from synth_cli.errors import EXIT_INTERRUPTED

    out = get_output()
    job_id = _job_id(job_id)
    with Ctx(provider, base_url, api_key) as ctx:
        if not follow:
            ctx.provider.retrieve(job_id)  # a clear 404 for an unknown job
            # one look: nothing later can tell the order of a page whose timestamps all tie (a
            # fresh job), so it is read in the contract's order (newest first) rather than held back
            items = EventCursor(ctx.provider, job_id).poll(final=True)

            def human() -> None:
                if not items:
                    out.line(f"no events yet for {job_id}")
                for event in items:
                    level = event.level or "info"
                    prefix = "" if level == "info" else f"{level.upper()}: "
                    out.line(f"{utc_stamp(event.created_at)}  {prefix}{one_line(event.message)}")

            out.result(sft_json.event_list(job_id, items), human, essential=[e.id for e in items])
            return
        renderer = JsonRenderer(out) if out.json_mode else EventLinesRenderer(out, job_id)
        try:
            for update in JobFollower(ctx.provider, job_id, interval=interval):
                renderer.handle(update, None)
        except KeyboardInterrupt:
            out.error(f"interrupted: stopped following the events of {job_id}",
                      f"the job keeps running; follow it again with `synth-ai sft events {job_id} --follow`")
            raise typer.Exit(EXIT_INTERRUPTED) from None


# --------------------------------------------------------------------------- checkpoints / predictions / trends


def checkpoints(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """List a job's checkpoints (one per epoch on most backends)."""
    out = get_output()
    with Ctx(provider, base_url, api_key) as ctx:
        items = ctx.provider.checkpoints(_job_id(job_id))
    items.sort(key=lambda c: c.step or 0)

    def human() -> None:
        if not items:
            out.line(f"no checkpoints yet for {job_id}")
            return
        rows = [(c.id, fmt_int(c.step), fmt_float(c.train_loss, 4) if c.train_loss is not None else "–",
                 fmt_float(c.valid_loss, 4) if c.valid_loss is not None else "–", c.model,
                 _when(c.created_at, table=True)) for c in items]
        out.table(["checkpoint", ("step", "right"), ("train loss", "right"), Col("valid loss", "right", drop=1),
                   "model checkpoint", Col("created (UTC)", drop=2)], rows)

    out.result(sft_json.checkpoint_list(job_id, items), human, essential=[c.id for c in items])


def predictions(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    epoch: Optional[int] = typer.Option(None, "--epoch", min=0, help="Only this epoch."),
    limit: int = typer.Option(20, "--limit", "-n", min=1, max=1000, help="Rows per page."),
    offset: int = typer.Option(0, "--offset", min=0, help="Rows to skip."),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """Predictions the backend recorded on training prompts, with their quality metrics."""
    out = get_output()
    with Ctx(provider, base_url, api_key) as ctx:
        data = ctx.provider.predictions(_job_id(job_id), epoch=epoch, limit=limit, offset=offset) or {}
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
               essential=[p.get("id") for p in rows_in if isinstance(p, dict) and p.get("id") is not None])


def trends(
    job_id: str = typer.Argument(..., metavar="JOB_ID"),
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
    api_key: Optional[str] = api_key_option(),
) -> None:
    """A chart of prediction quality per epoch (word overlap, exact match, character error rate)."""
    out = get_output()
    with Ctx(provider, base_url, api_key) as ctx:
        data = ctx.provider.prediction_trends(_job_id(job_id)) or {}
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


def params(
    provider: Optional[str] = provider_option(),
    base_url: Optional[str] = base_url_option(),
) -> None:
    """The `--param KEY=VALUE` hyperparameters a provider takes (sft submit/run)."""
    from synth_cli.api.providers import choose_provider, provider_class

    out = get_output()
    name, _source = choose_provider(provider, base_url)
    cls = provider_class(name)
    rows = [(p.key, "|".join(p.choices) if p.choices else p.kind, p.help) for p in cls.params]
    out.result({"provider": name, "params": [{"key": p.key, "type": p.kind, "choices": list(p.choices), "help": p.help}
                                             for p in cls.params]},
               lambda: out.table(["--param KEY", "value", Col("meaning", wrap=True)], rows,
                                 title=f"{name}: --param KEY=VALUE"),
               essential=[p.key for p in cls.params])


def register(sft_app: typer.Typer) -> None:
    sft_app.command("submit")(submit)
    sft_app.command("poll")(poll)
    sft_app.command("run")(run)
    sft_app.command("list")(list_jobs)
    sft_app.command("show")(show)
    sft_app.command("events")(events)
    sft_app.command("cancel")(cancel)
    sft_app.command("pause")(pause)
    sft_app.command("resume")(resume)
    sft_app.command("checkpoints")(checkpoints)
    sft_app.command("predictions")(predictions)
    sft_app.command("trends")(trends)
    sft_app.command("params")(params)
