"""The OpenAI-compatible provider: OpenAI itself, Synth backends, `synth-ai serve` under `/v1`.

Wraps `files.Files` and `fine_tuning.FineTuning` (the endpoint modules) and parses their answers
into `synth_cli.api.types`. OpenAI's fine-tuning access policy refuses job creation with a 403
for some organisations: that becomes one :class:`AccessRefusedError` line with the dates and the
alternatives. `--param` keys: the supervised hyperparameters (`n_epochs`, `batch_size`,
`learning_rate_multiplier`) and `method` (only `supervised`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from synth_cli import config
from synth_cli.api.errors import AccessRefusedError, APIDecodeError, ApiError, APIStatusError, PermissionDeniedError
from synth_cli.api.files import Files
from synth_cli.api.fine_tuning import FineTuning, build_job_request
from synth_cli.api.provider import JobSpec, ParamDoc, ProgressCallback, Provider
from synth_cli.api.types import Checkpoint, FileObject, Job, JobEvent
from synth_cli.errors import UsageError

#: OpenAI's CLI documentation, "Availability" (checked October 2026)
ACCESS_POLICY = ("OpenAI no longer lets every organisation fine-tune: since 2026-05-07 only organisations that "
                 "fine-tuned before may create jobs, since 2026-07-02 only those with fine-tuned inference in the "
                 "last 60 days, and from 2027-01-06 nobody can create new fine-tuning jobs")
ALTERNATIVES = ("train the same dataset elsewhere: `--provider together` (TOGETHER_API_KEY), or a Synth backend / "
                "`synth-ai serve` via --base-url")


class OpenAIProvider(Provider):
    name = "openai"
    label = "the OpenAI-compatible backend"
    key_var = "OPENAI_API_KEY"
    default_base_url = config.DEFAULT_BASE_URL
    params = (
        ParamDoc("n_epochs", "int", "epochs (same as --epochs)"),
        ParamDoc("batch_size", "int", "batch size (same as --batch-size)"),
        ParamDoc("learning_rate_multiplier", "float", "same as --learning-rate-multiplier"),
    )

    def __init__(self, client):
        super().__init__(client)
        self.files = Files(client)
        self.ft = FineTuning(client)

    # -- files
    def upload_file(self, path: Path, *, progress: ProgressCallback | None = None) -> FileObject:
        obj = self.files.upload(path, progress=progress) or {}
        return FileObject(id=str(obj.get("id") or ""), bytes=obj.get("bytes"), filename=obj.get("filename"), raw=obj)

    # -- jobs
    def build_job_request(self, spec: JobSpec) -> dict[str, Any]:
        if spec.learning_rate is not None:
            raise UsageError("--learning-rate is not an OpenAI hyperparameter",
                             hint="use --learning-rate-multiplier (a factor on the backend's default)")
        hp: dict[str, Any] = {}
        for key, value in spec.params.items():
            doc = next((p for p in self.params if p.key == key), None)
            if doc is None:
                raise UsageError(f"--param {key}: not a parameter of {self.label}",
                                 hint="known: " + ", ".join(p.key for p in self.params))
            hp[key] = _typed(key, value, doc.kind)
        metadata = {**spec.recorded, **spec.metadata}
        if len(metadata) > 16:
            raise UsageError(f"--metadata: at most 16 keys in all ({len(spec.recorded)} are used for the dataset)")
        for key, value in metadata.items():
            if len(key) > 64 or len(value) > 512:
                raise UsageError(f"--metadata {key[:70]}: keys are at most 64 characters, values at most 512")
        return build_job_request(
            spec.model, spec.training_file, validation_file=spec.validation_file, suffix=spec.suffix, seed=spec.seed,
            metadata=metadata or None,
            n_epochs=hp.get("n_epochs", spec.epochs), batch_size=hp.get("batch_size", spec.batch_size),
            learning_rate_multiplier=hp.get("learning_rate_multiplier", spec.learning_rate_multiplier))

    def create_job(self, spec: JobSpec) -> Job:
        from synth_cli.api.client import new_idempotency_key

        body = self.build_job_request(spec)
        try:
            obj = self.client.post("fine_tuning/jobs", json=body, idempotency_key=new_idempotency_key())
        except PermissionDeniedError as exc:
            raise self._access_refused(exc) from exc
        return Job.from_openai(obj)

    def _access_refused(self, exc: ApiError) -> ApiError:
        said = f" (the server said: {exc.server_message})" if exc.server_message else ""
        return AccessRefusedError(f"{self.client.base_url} refused to create the job (403){said}. {ACCESS_POLICY}",
                                  status=403, hint=ALTERNATIVES, code=exc.code, server_message=exc.server_message,
                                  method="POST", url=exc.url)

    def retrieve(self, job_id: str) -> Job:
        return Job.from_openai(self.ft.retrieve(job_id))

    def iter_jobs(self, *, limit: int | None = None) -> Iterator[Job]:
        for obj in self.ft.iter_jobs(limit=limit):
            yield Job.from_openai(obj)

    def cancel(self, job_id: str) -> Job:
        return Job.from_openai(self.ft.cancel(job_id))

    def pause(self, job_id: str) -> Job:
        return Job.from_openai(self.ft.pause(job_id))

    def resume(self, job_id: str) -> Job:
        return Job.from_openai(self.ft.resume(job_id))

    def list_events(self, job_id: str, *, after: str | None = None, limit: int | None = None
                    ) -> tuple[list[JobEvent], bool]:
        page = self.ft.list_events(job_id, after=after, limit=limit) or {}
        data = [JobEvent.from_openai(e) for e in (page.get("data") or []) if isinstance(e, dict)]
        return data, bool(page.get("has_more")) and bool(data)

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        return [Checkpoint.from_openai(c) for c in self.ft.iter_checkpoints(job_id) if isinstance(c, dict)]

    def predictions(self, job_id: str, *, epoch: int | None = None, limit: int | None = None,
                    offset: int | None = None) -> dict[str, Any]:
        return self.ft.predictions(job_id, epoch=epoch, limit=limit, offset=offset) or {}

    def prediction_trends(self, job_id: str) -> dict[str, Any]:
        return self.ft.prediction_trends(job_id) or {}

    # -- before a job
    def price_key(self) -> str:
        from urllib.parse import urlsplit

        host = (urlsplit(self.client.base_url).hostname or "").lower()
        if host in ("127.0.0.1", "localhost", "::1") or host.startswith("127."):
            return "synth-ai serve"
        return "openai"

    def balance_usd(self) -> float | None:
        from synth_cli.api import billing

        try:
            return float(billing.current_balance(self.client)["balance_cents"]) / 100
        except (APIStatusError, APIDecodeError):  # no account endpoints (OpenAI): no balance to show
            return None


def _typed(key: str, value: str, kind: str) -> Any:
    if value == "auto":
        return "auto"
    try:
        if kind == "int":
            return int(value)
        if kind == "float":
            number = float(value)
            import math

            if not math.isfinite(number):
                raise ValueError
            return number
    except ValueError:
        raise UsageError(f"--param {key}={value!r}: expected {'an integer' if kind == 'int' else 'a number'} "
                         "or 'auto'") from None
    return value
