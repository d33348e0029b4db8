"""`/fine_tuning/jobs` and the training-predictions endpoints of the Synth/FineTune-Lab backends."""

from __future__ import annotations

from typing import Any, Iterator, Mapping

from synth_cli.api.client import ApiClient, new_idempotency_key, path_segment

from synth_cli.api.types import TERMINAL_STATUSES  # noqa: F401 - re-exported for older imports
HYPERPARAMETERS = ("n_epochs", "batch_size", "learning_rate_multiplier")


def build_job_request(model: str, training_file: str, *, validation_file: str | None = None,
                      suffix: str | None = None, seed: int | None = None, metadata: Mapping[str, str] | None = None,
                      n_epochs: int | str | None = None, batch_size: int | str | None = None,
                      learning_rate_multiplier: float | str | None = None,
                      hyperparameters: Mapping[str, Any] | None = None,
                      method: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of `POST /fine_tuning/jobs`.

    Individual hyperparameters go in the current form, `method: {type: supervised, supervised:
    {hyperparameters}}`. A `hyperparameters` mapping is sent in the older top-level form (still
    accepted by OpenAI, required by some compatible backends); `method` is passed through as given.
    """
    given = {k: v for k, v in (("n_epochs", n_epochs), ("batch_size", batch_size),
                                ("learning_rate_multiplier", learning_rate_multiplier)) if v is not None}
    if hyperparameters is not None and (given or method is not None):
        raise ValueError("pass hyperparameters either as a top-level mapping or individually, not both")
    body: dict[str, Any] = {"model": model, "training_file": training_file}
    if validation_file:
        body["validation_file"] = validation_file
    if suffix:
        body["suffix"] = suffix
    if seed is not None:
        body["seed"] = int(seed)
    if metadata:
        body["metadata"] = {str(k): str(v) for k, v in metadata.items()}
    if hyperparameters is not None:
        body["hyperparameters"] = dict(hyperparameters)
    elif method is not None:
        body["method"] = dict(method)
        if given:
            kind = body["method"].get("type", "supervised")
            section = dict(body["method"].get(kind) or {})
            section["hyperparameters"] = {**(section.get("hyperparameters") or {}), **given}
            body["method"][kind] = section
    else:
        body["method"] = {"type": "supervised", "supervised": {"hyperparameters": given} if given else {}}
    return body


def job_hyperparameters(job: Mapping[str, Any]) -> dict[str, Any]:
    """The hyperparameters of a job object, whichever form the backend reports."""
    method = job.get("method") or {}
    if isinstance(method, dict):
        section = method.get(method.get("type") or "supervised") or {}
        if isinstance(section, dict) and isinstance(section.get("hyperparameters"), dict):
            return dict(section["hyperparameters"])
    hp = job.get("hyperparameters")
    return dict(hp) if isinstance(hp, dict) else {}


class FineTuning:
    """The fine-tuning jobs API."""

    def __init__(self, client: ApiClient):
        self.client = client

    # -- jobs -----------------------------------------------------------------------
    def create_job(self, model: str, training_file: str, *, idempotency_key: str | None = None,
                   **options: Any) -> dict[str, Any]:
        """Create a job; options are those of :func:`build_job_request`.

        One `Idempotency-Key` per call: retries after a 5xx/429/lost connection replay the same
        creation instead of starting a second job.
        """
        body = build_job_request(model, training_file, **options)
        return self.client.post("fine_tuning/jobs", json=body, idempotency_key=idempotency_key or new_idempotency_key())

    def list_jobs(self, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self.client.get("fine_tuning/jobs", params={"after": after, "limit": limit})

    def iter_jobs(self, *, limit: int | None = None, page_size: int = 100) -> Iterator[dict[str, Any]]:
        """Newest first, following `after` until `limit` jobs or the end."""
        after = None
        count = 0
        while True:
            want = page_size if limit is None else min(page_size, limit - count)
            if want <= 0:
                return
            page = self.list_jobs(after=after, limit=want)
            data = list((page or {}).get("data") or [])
            for job in data:
                yield job
                count += 1
                if limit is not None and count >= limit:
                    return
            if not data or not page.get("has_more"):
                return
            after = data[-1].get("id")

    def retrieve(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"fine_tuning/jobs/{path_segment(job_id)}")

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self.client.post(f"fine_tuning/jobs/{path_segment(job_id)}/cancel",
                                idempotency_key=new_idempotency_key())

    def pause(self, job_id: str) -> dict[str, Any]:
        return self.client.post(f"fine_tuning/jobs/{path_segment(job_id)}/pause",
                                idempotency_key=new_idempotency_key())

    def resume(self, job_id: str) -> dict[str, Any]:
        return self.client.post(f"fine_tuning/jobs/{path_segment(job_id)}/resume",
                                idempotency_key=new_idempotency_key())

    def list_events(self, job_id: str, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self.client.get(f"fine_tuning/jobs/{path_segment(job_id)}/events",
                               params={"after": after, "limit": limit})

    def checkpoints(self, job_id: str, *, after: str | None = None, limit: int | None = None) -> dict[str, Any]:
        return self.client.get(f"fine_tuning/jobs/{path_segment(job_id)}/checkpoints",
                               params={"after": after, "limit": limit})

    def iter_checkpoints(self, job_id: str, *, page_size: int = 100) -> Iterator[dict[str, Any]]:
        after = None
        while True:
            page = self.checkpoints(job_id, after=after, limit=page_size)
            data = list((page or {}).get("data") or [])
            yield from data
            if not data or not page.get("has_more"):
                return
            after = data[-1].get("id")

    # -- training predictions (Synth / FineTune-Lab) ----------------------------------
    def predictions(self, job_id: str, *, epoch: int | None = None, limit: int | None = None,
                    offset: int | None = None) -> dict[str, Any]:
        return self.client.get(f"fine_tuning/jobs/{path_segment(job_id)}/predictions",
                               params={"epoch": epoch, "limit": limit, "offset": offset})

    def prediction_trends(self, job_id: str) -> dict[str, Any]:
        return self.client.get(f"fine_tuning/jobs/{path_segment(job_id)}/predictions/trends")
