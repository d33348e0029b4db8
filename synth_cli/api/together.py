"""The Together AI provider: files + fine-tunes as `docs/openapi/together-files-fine-tunes.openapi.yaml` says.

Base URL `https://api.together.xyz/v1` (or `synth-ai serve`'s `…/together/v1`); key
`TOGETHER_API_KEY` after the SYNTH_* chain.

Uploads follow the official SDK (`together/lib/resources/files.py`):

1. `POST /files` (multipart form: `purpose`, `file_name`, `file_type`, `checksum`), not followed:
   the answer is a 302 whose `Location` is a presigned URL and whose `X-Together-File-Id`
   names the file;
2. `PUT <Location>` with the bytes (streamed, exact `Content-Length`, no API key: the URL is
   the credential); a 3xx hop is re-PUT to its target;
3. `POST /files/{id}/preprocess` → the File object.

Files above :attr:`TogetherProvider.multipart_threshold` (5 GiB, as the SDK) go through
`POST /files/multipart/initiate` → part URLs → one `PUT` per part (its `ETag` kept) →
`POST /files/multipart/complete` (`/abort` when a part fails).

Jobs are parsed into `synth_cli.api.types`; statuses are mapped to the common vocabulary
(`pending`→`queued`, `compressing`/`uploading`/`cancel_requested`→`running`, `completed`→`succeeded`,
`error`→`failed`). Events carry no ids: they are listed oldest first and numbered by position.
Losses come from `GET /fine-tunes/{id}/metrics`. Nothing here prints.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from synth_cli.api.client import path_segment
from synth_cli.api.errors import ApiError, APIDecodeError, NotFoundError
from synth_cli.api.provider import JobSpec, ParamDoc, ProgressCallback, Provider
from synth_cli.api.types import Checkpoint, FileObject, Job, JobEvent, ModelLimits, PriceEstimate
from synth_cli.errors import UsageError

DEFAULT_BASE_URL = "https://api.together.xyz/v1"
#: Together's documented default learning rate: `--learning-rate-multiplier` scales it
DEFAULT_LEARNING_RATE = 1e-5
STATUS_MAP = {"pending": "queued", "queued": "queued", "running": "running", "compressing": "running",
              "uploading": "running", "cancel_requested": "running", "cancelled": "cancelled", "error": "failed",
              "completed": "succeeded"}
CHUNK = 1024 * 1024
GiB = 1024 ** 3
MIN_PART = 5 * 1024 * 1024
TARGET_PART = 100 * 1024 * 1024
MAX_PARTS = 250
MAX_REDIRECTS = 5


def parse_time(value: Any) -> float | None:
    """An RFC 3339 date-time (`2025-01-31T12:00:03.123Z`) or a unix time → unix seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00").replace("z", "+00:00")
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def job_from_together(obj: Any) -> Job:
    obj = obj if isinstance(obj, dict) else {}
    status = str(obj.get("status") or "unknown")
    hp = {k: obj[k] for k in ("n_epochs", "batch_size", "learning_rate", "n_checkpoints", "warmup_ratio")
          if obj.get(k) is not None}
    training_type = obj.get("training_type")
    if isinstance(training_type, dict) and training_type.get("type"):
        hp["training_type"] = training_type["type"]
        if training_type.get("lora_r") is not None:
            hp["lora_r"] = training_type["lora_r"]
    error = None
    if STATUS_MAP.get(status) == "failed":
        events = obj.get("events") or []
        message = next((e.get("message") for e in reversed(events) if isinstance(e, dict)
                        and (e.get("type") == "job_error" or e.get("level") == "error") and e.get("message")), None)
        error = message or "the job ended in status error"
    created = parse_time(obj.get("created_at"))
    finished = parse_time(obj.get("updated_at")) if STATUS_MAP.get(status) in ("succeeded", "failed", "cancelled") \
        else None
    method = obj.get("training_method")
    return Job(id=str(obj.get("id") or ""), status=STATUS_MAP.get(status, status), model=obj.get("model"),
               fine_tuned_model=obj.get("model_output_name") if status == "completed" else None,
               training_file=obj.get("training_file"), validation_file=obj.get("validation_file"),
               created_at=created, finished_at=finished,
               trained_tokens=obj.get("token_count") if isinstance(obj.get("token_count"), int) else None,
               seed=obj.get("random_seed") if isinstance(obj.get("random_seed"), int) else None,
               method=method.get("method") if isinstance(method, dict) else None, hyperparameters=hp,
               error=error, provider_status=status, raw=obj)


def event_from_together(obj: dict[str, Any], index: int) -> JobEvent:
    data = {}
    for key in ("step", "total_steps", "token_count"):
        value = obj.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and (value > 0 or key == "step" and
                                                                      obj.get("total_steps")):
            data[key] = value
    level = str(obj.get("level") or "info")
    level = {"warning": "warning", "error": "error", "legacy_iwarning": "warning", "legacy_ierror": "error"}.get(
        level, "info")
    return JobEvent(id=f"ev-{index}", created_at=parse_time(obj.get("created_at")) or 0.0,
                    message=str(obj.get("message") or ""), level=level, type=obj.get("type"), data=data, raw=obj)


def _bool(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"--param {key}={value!r}: expected true or false")


def _number(key: str, value: str, kind: str) -> int | float:
    try:
        number: int | float = int(value) if kind == "int" else float(value)
    except ValueError:
        raise UsageError(f"--param {key}={value!r}: expected {'an integer' if kind == 'int' else 'a number'}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise UsageError(f"--param {key}={value!r}: expected a finite number")
    return number


class TogetherProvider(Provider):
    name = "together"
    label = "Together AI"
    key_var = "TOGETHER_API_KEY"
    default_base_url = DEFAULT_BASE_URL
    event_order = "asc"
    multipart_threshold = 5 * GiB
    min_part = MIN_PART
    target_part = TARGET_PART
    params = (
        ParamDoc("lora", "bool", "LoRA (true, the default) or full fine-tuning (false)"),
        ParamDoc("lora_r", "int", "LoRA rank (default: the model's maximum rank)"),
        ParamDoc("lora_alpha", "int", "LoRA alpha (default: 2 × rank)"),
        ParamDoc("lora_dropout", "float", "LoRA dropout (default 0)"),
        ParamDoc("lora_trainable_modules", "str", "LoRA target modules (default all-linear)"),
        ParamDoc("n_checkpoints", "int", "intermediate checkpoints to save (default 1)"),
        ParamDoc("n_evals", "int", "evaluations on the validation file during training (default 0)"),
        ParamDoc("warmup_ratio", "float", "share of steps with a linear learning-rate warm-up (0-1)"),
        ParamDoc("train_on_inputs", "choice", "also train on user/system messages", ("true", "false", "auto")),
        ParamDoc("lr_scheduler", "choice", "learning-rate schedule", ("linear", "cosine")),
        ParamDoc("min_lr_ratio", "float", "final/peak learning-rate ratio of the schedule"),
        ParamDoc("max_grad_norm", "float", "gradient clipping (0 disables)"),
        ParamDoc("weight_decay", "float", "weight decay"),
        ParamDoc("packing", "bool", "sequence packing (default true)"),
        ParamDoc("max_seq_length", "int", "maximum sequence length"),
        ParamDoc("from_checkpoint", "str", "continue from a job/checkpoint (JOB_ID[:STEP])"),
        ParamDoc("wandb_project_name", "str", "Weights & Biases project"),
        ParamDoc("wandb_name", "str", "Weights & Biases run name"),
    )

    def __init__(self, client):
        super().__init__(client)
        self._limits: dict[str, ModelLimits | None] = {}
        threshold = os.environ.get("SYNTH_TOGETHER_MULTIPART_BYTES", "").strip()
        if threshold.isdigit() and int(threshold) > 0:
            self.multipart_threshold = int(threshold)

    # -- files ------------------------------------------------------------------------
    def upload_file(self, path: Path, *, progress: ProgressCallback | None = None) -> FileObject:
        path = Path(path)
        if path.is_dir():
            raise UsageError(f"{path} is a directory, not a file")
        if not path.is_file():
            raise UsageError(f"{path}: no such file")
        suffix = path.suffix.lower().lstrip(".")
        if suffix not in ("jsonl", "parquet", "csv"):
            raise UsageError(f"{path}: Together accepts .jsonl, .parquet and .csv files (got .{suffix or '?'})")
        checksum = _sha256(path)
        size = path.stat().st_size
        if size > self.multipart_threshold:
            obj = self._multipart(path, checksum, size, suffix, progress)
        else:
            obj = self._single(path, checksum, suffix, progress)
        if not isinstance(obj, dict) or not obj.get("id"):
            raise APIDecodeError(f"{self.client.base_url}: the upload of {path.name} returned no file id")
        return FileObject(id=str(obj["id"]), bytes=obj.get("bytes"), filename=obj.get("filename"), raw=obj)

    def _single(self, path: Path, checksum: str, file_type: str, progress: ProgressCallback | None) -> Any:
        from synth_cli.api.files import MultipartUpload

        form = MultipartUpload.fields_only({"purpose": "fine-tune", "file_name": path.name, "file_type": file_type,
                                            "checksum": checksum})
        response = self.client.request("POST", "files", content=form.body,
                                       headers={"Content-Type": form.content_type}, expect_redirect=True,
                                       idempotency_key=True)
        location = response.headers.get("location")
        file_id = response.headers.get("x-together-file-id")
        if response.status_code < 300 or not location or not file_id:
            raise APIDecodeError(
                f"POST {self.client.base_url}/files answered {response.status_code} without the presigned upload URL "
                "(Location) and file id (X-Together-File-Id) of Together's upload flow",
                hint="is --base-url pointing at Together's API (https://api.together.xyz/v1 or serve's /together/v1)?")
        url = str(response.url.join(location))
        self._put(url, path, 0, path.stat().st_size, {}, progress)
        return self.client.post(f"files/{path_segment(file_id)}/preprocess")

    def _put(self, url: str, path: Path, offset: int, length: int, headers: dict[str, str],
             progress: ProgressCallback | None, total: int | None = None, done_before: int = 0):
        """PUT bytes [offset, offset+length) of `path` to a presigned URL (no API key), following 3xx hops."""
        import httpx

        total = length if total is None else total
        for _hop in range(MAX_REDIRECTS + 1):
            def body() -> Iterator[bytes]:
                sent = 0
                with open(path, "rb") as fh:
                    fh.seek(offset)
                    while sent < length:
                        chunk = fh.read(min(CHUNK, length - sent))
                        if not chunk:
                            break
                        sent += len(chunk)
                        yield chunk
                        if progress:
                            progress(done_before + sent, total)
                if sent != length:
                    raise UsageError(f"{path} changed size while it was being uploaded")

            request = self.client._http.build_request(
                "PUT", url, content=body(), headers={"Content-Length": str(length), **headers},
                timeout=httpx.Timeout(600.0, connect=self.client.timeout.connect))
            request.headers.pop("Authorization", None)  # a presigned URL is its own credential
            self.client.request_count += 1
            try:
                response = self.client._http.send(request)
            except httpx.TransportError as exc:
                raise self.client._transport_error(exc, "PUT", url, 1) from exc
            if response.status_code in (301, 302, 303, 307, 308) and response.headers.get("location"):
                url = str(response.url.join(response.headers["location"]))
                response.close()
                continue
            if response.status_code >= 300:
                raise self.client._http_error(response, "PUT", url, 1, None)
            return response
        raise ApiError(f"the upload to {url} was redirected more than {MAX_REDIRECTS} times")

    def _multipart(self, path: Path, checksum: str, size: int, file_type: str,
                   progress: ProgressCallback | None) -> Any:
        part_size = max(self.min_part, min(self.target_part, size))
        if math.ceil(size / part_size) > MAX_PARTS:
            part_size = math.ceil(size / MAX_PARTS)
        parts_wanted = math.ceil(size / part_size)
        info = self.client.post("files/multipart/initiate", json={
            "file_name": path.name, "file_size": size, "num_parts": parts_wanted, "purpose": "fine-tune",
            "file_type": file_type, "checksum": checksum})
        if not isinstance(info, dict) or not info.get("upload_id") or not info.get("file_id") \
                or not isinstance(info.get("parts"), list):
            raise APIDecodeError(f"{self.client.base_url}/files/multipart/initiate: no upload_id/file_id/parts")
        upload_id, file_id = str(info["upload_id"]), str(info["file_id"])
        done = []
        try:
            sent = 0
            for part in sorted(info["parts"], key=lambda p: int(p.get("PartNumber", p.get("part_number", 1)))):
                number = int(part.get("PartNumber", part.get("part_number", 1)))
                start = (number - 1) * part_size
                length = max(0, min(part_size, size - start))
                url = part.get("URL") or part.get("UploadURL")
                if not url:
                    raise APIDecodeError(f"multipart part {number} has no upload URL")
                response = self._put(str(url), path, start, length, dict(part.get("Headers") or {}), progress,
                                     total=size, done_before=sent)
                sent += length
                etag = str(response.headers.get("etag", "")).strip('"')
                if not etag:
                    raise APIDecodeError(f"the upload of part {number} returned no ETag")
                done.append({"part_number": number, "etag": etag})
            answer = self.client.post("files/multipart/complete",
                                      json={"upload_id": upload_id, "file_id": file_id, "parts": done})
        except BaseException:
            try:
                self.client.post("files/multipart/abort", json={"upload_id": upload_id, "file_id": file_id})
            except ApiError:
                pass
            raise
        return (answer or {}).get("file", answer) if isinstance(answer, dict) else answer

    def prepare_file(self, path: Path, model: str, workdir: Path, what: str = "training file"
                     ) -> tuple[Path, list[str]]:
        from synth_cli.dataset.together import CompileRefused, compile_file

        limits = self._cached_limits(model)
        dst = Path(workdir) / f"{what.split()[0]}-{path.stem}.together.jsonl"
        report = compile_file(path, dst, tools_ok=limits.supports_tools if limits else None,
                              vision=limits.supports_vision if limits else None,
                              context_length=limits.context_length if limits else None)
        if not report.ok:
            raise CompileRefused(report, what)
        notes = [f"{what} {path.name}: {change} in {count} example(s) for Together's format"
                 for change, count in report.conversions.items()]
        return dst, notes

    def dataset_report(self, path, model):
        """Together's rules for a local file; with a model (and `self` an opened provider), its limits too."""
        from synth_cli.dataset.together import compile_file

        limits = self._cached_limits(model) if model and isinstance(self, TogetherProvider) else None
        return compile_file(path, None, tools_ok=limits.supports_tools if limits else None,
                            vision=limits.supports_vision if limits else None,
                            context_length=limits.context_length if limits else None)

    # -- jobs -------------------------------------------------------------------------
    def build_job_request(self, spec: JobSpec) -> dict[str, Any]:
        body: dict[str, Any] = {"model": spec.model, "training_file": spec.training_file}
        if spec.validation_file:
            body["validation_file"] = spec.validation_file
        if spec.suffix:
            body["suffix"] = spec.suffix
        if spec.seed is not None:
            body["random_seed"] = int(spec.seed)
        if spec.epochs is not None:
            body["n_epochs"] = int(spec.epochs)
        if spec.batch_size is not None:
            body["batch_size"] = int(spec.batch_size)
        if spec.learning_rate is not None and spec.learning_rate_multiplier is not None:
            raise UsageError("pass --learning-rate or --learning-rate-multiplier, not both")
        if spec.learning_rate is not None:
            body["learning_rate"] = float(spec.learning_rate)
        elif spec.learning_rate_multiplier is not None:
            body["learning_rate"] = DEFAULT_LEARNING_RATE * float(spec.learning_rate_multiplier)
        if spec.metadata:
            raise UsageError("Together's fine-tuning API has no job metadata (--metadata)",
                             hint="use --suffix, or --param wandb_name=… to label the run")
        docs = {p.key: p for p in self.params}
        lora = True
        lora_fields: dict[str, Any] = {}
        method: dict[str, Any] = {"method": "sft", "train_on_inputs": "auto"}
        scheduler: dict[str, Any] = {}
        for key, value in spec.params.items():
            doc = docs.get(key)
            if doc is None:
                raise UsageError(f"--param {key}: not a Together fine-tuning parameter",
                                 hint="known: " + ", ".join(docs))
            if doc.kind == "choice" and value.strip().lower() not in doc.choices:
                raise UsageError(f"--param {key}={value!r}: expected one of {', '.join(doc.choices)}")
            if key == "lora":
                lora = _bool(key, value)
            elif key.startswith("lora_"):
                lora_fields[key] = value if doc.kind == "str" else _number(key, value, doc.kind)
            elif key == "train_on_inputs":
                low = value.strip().lower()
                method["train_on_inputs"] = "auto" if low == "auto" else low == "true"
            elif key == "lr_scheduler":
                scheduler["lr_scheduler_type"] = value.strip().lower()
            elif key == "min_lr_ratio":
                scheduler.setdefault("lr_scheduler_args", {})["min_lr_ratio"] = _number(key, value, "float")
            elif key == "packing":
                body["packing"] = _bool(key, value)
            elif doc.kind in ("int", "float"):
                body[key] = _number(key, value, doc.kind)
            else:
                body[key] = value
        if "warmup_ratio" in body and not 0 <= body["warmup_ratio"] <= 1:
            raise UsageError(f"--param warmup_ratio={body['warmup_ratio']}: must be between 0 and 1")
        if lora_fields and not lora:
            raise UsageError("--param lora=false (full fine-tuning) takes no lora_* parameters")
        if lora:
            limits = self._cached_limits(spec.model)
            rank = int(lora_fields.get("lora_r") or (limits.max_lora_rank if limits and limits.max_lora_rank else 8))
            body["training_type"] = {"type": "Lora", "lora_r": rank,
                                     "lora_alpha": int(lora_fields.get("lora_alpha") or rank * 2),
                                     **{k: v for k, v in lora_fields.items() if k not in ("lora_r", "lora_alpha")}}
        else:
            body["training_type"] = {"type": "Full"}
        body["training_method"] = method
        if scheduler:
            scheduler.setdefault("lr_scheduler_type", "linear")
            body["lr_scheduler"] = scheduler
        return body

    def create_job(self, spec: JobSpec) -> Job:
        return job_from_together(self.client.post("fine-tunes", json=self.build_job_request(spec),
                                                  idempotency_key=True))

    def retrieve(self, job_id: str) -> Job:
        return job_from_together(self.client.get(f"fine-tunes/{path_segment(job_id)}"))

    def iter_jobs(self, *, limit: int | None = None) -> Iterator[Job]:
        data = [j for j in (self.client.get("fine-tunes") or {}).get("data") or [] if isinstance(j, dict)]
        jobs = sorted((job_from_together(j) for j in data), key=lambda j: j.created_at or 0.0, reverse=True)
        yield from jobs[:limit] if limit is not None else jobs

    def cancel(self, job_id: str) -> Job:
        return job_from_together(self.client.post(f"fine-tunes/{path_segment(job_id)}/cancel", idempotency_key=True))

    def list_events(self, job_id: str, *, after: str | None = None, limit: int | None = None
                    ) -> tuple[list[JobEvent], bool]:
        data = [e for e in (self.client.get(f"fine-tunes/{path_segment(job_id)}/events") or {}).get("data") or []
                if isinstance(e, dict)]
        events = [event_from_together(e, i) for i, e in enumerate(data)]
        if after and after.startswith("ev-") and after[3:].isdigit():
            events = events[int(after[3:]) + 1:]
        if limit is not None and len(events) > limit:
            return events[:limit], True
        return events, False

    def training_metrics(self, job_id: str) -> list[dict[str, float]] | None:
        try:
            body = self.client.get(f"fine-tunes/{path_segment(job_id)}/metrics")
        except NotFoundError:
            return None
        points = []
        for item in (body or {}).get("metrics") or []:
            if not isinstance(item, dict):
                continue
            point: dict[str, float] = {}
            step = item.get("train/global_step", item.get("global_step"))
            loss = item.get("train/loss", item.get("loss"))
            if isinstance(step, (int, float)):
                point["step"] = int(step)
            if isinstance(loss, (int, float)):
                point["train_loss"] = float(loss)
            valid = item.get("eval/loss")
            if isinstance(valid, (int, float)):
                point["valid_loss"] = float(valid)
            if point:
                points.append(point)
        return points

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        data = (self.client.get(f"fine-tunes/{path_segment(job_id)}/checkpoints") or {}).get("data") or []
        out = []
        for item in data:
            if isinstance(item, dict):
                step = item.get("step")
                out.append(Checkpoint(id=f"{job_id}:{step}", step=step if isinstance(step, int) else None,
                                      model=item.get("path"), created_at=parse_time(item.get("created_at")),
                                      raw=item))
        return out

    # -- before a job -----------------------------------------------------------------
    def estimate_price(self, spec: JobSpec) -> PriceEstimate | None:
        body: dict[str, Any] = {"training_file": spec.training_file, "model": spec.model}
        if spec.validation_file:
            body["validation_file"] = spec.validation_file
        if spec.epochs is not None:
            body["n_epochs"] = int(spec.epochs)
        full = spec.params.get("lora", "true").strip().lower() in ("0", "false", "no", "off")
        body["training_type"] = {"type": "Full"} if full else {"type": "Lora", "lora_r": 8, "lora_alpha": 16}
        body["training_method"] = {"method": "sft", "train_on_inputs": "auto"}
        answer = self.client.post("fine-tunes/estimate-price", json=body) or {}
        price = answer.get("estimated_total_price")
        tokens = answer.get("estimated_train_token_count")
        limit = answer.get("user_limit")
        return PriceEstimate(usd=float(price) if isinstance(price, (int, float)) else None, source="provider",
                             train_tokens=int(tokens) if isinstance(tokens, (int, float)) else None,
                             allowed=answer.get("allowed_to_proceed") if isinstance(
                                 answer.get("allowed_to_proceed"), bool) else None,
                             user_limit_usd=float(limit) if isinstance(limit, (int, float)) else None)

    def _cached_limits(self, model: str) -> ModelLimits | None:
        if model not in self._limits:
            try:
                self._limits[model] = self.model_limits(model)
            except NotFoundError:
                self._limits[model] = None
        return self._limits[model]

    def model_limits(self, model: str) -> ModelLimits | None:
        try:
            body = self.client.get("fine-tunes/models/limits", params={"model_name": model}) or {}
        except NotFoundError as exc:
            raise UsageError(f"Together does not fine-tune {model!r} ({exc.server_message or '404'})",
                             hint="`synth-ai sft models --provider together` lists the models it does") from exc
        lora = body.get("lora_training") if isinstance(body.get("lora_training"), dict) else {}
        full = body.get("full_training") if isinstance(body.get("full_training"), dict) else {}
        bounds = lora or full
        limits = ModelLimits(
            model=str(body.get("model_name") or model), max_epochs=body.get("max_num_epochs"),
            min_batch_size=bounds.get("min_batch_size"), max_batch_size=bounds.get("max_batch_size"),
            max_learning_rate=body.get("max_learning_rate"), min_learning_rate=body.get("min_learning_rate"),
            context_length=body.get("max_seq_length_sft") or body.get("max_seq_length"),
            max_lora_rank=lora.get("max_rank"), supports_tools=body.get("supports_tools"),
            supports_vision=body.get("supports_vision"), raw=body)
        self._limits[model] = limits
        return limits

    def supported_models(self) -> list[str]:
        return [str(m) for m in (self.client.get("fine-tunes/models/supported") or {}).get("models") or []]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
