"""`synth-ai serve` speaking Together AI's files + fine-tunes API, under `/together/v1`.

The contract is `docs/openapi/together-files-fine-tunes.openapi.yaml`. Together's `/files` has
other shapes than OpenAI's `/files`, so it lives under its own prefix rather than being guessed
per request. It is an adapter: every operation is translated into the OpenAI route of the same
app (an in-process ASGI call that keeps the authenticated owner), so both APIs share one
simulator, one store, one idempotency table and one set of checks; the answers are translated
back into Together's shapes (`FileResponse`, `FinetuneResponse`, `FineTuneEvent`, …).

The upload flow is the official SDK's (`together/lib/resources/files.py`), played on loopback:

* `POST /files` (form fields `purpose`, `file_name`, `file_type`, `checksum`) → `302` with a
  presigned `Location` (`/together/v1/_uploads/{file_id}?sig=…`, an HMAC of this server's
  secret, valid 1 h) and `X-Together-File-Id`;
* `PUT <Location>` with the bytes (no API key: the signature is the credential; `ETag` answered);
* `POST /files/{id}/preprocess` → the file is stored (through `POST /v1/files`) → `FileResponse`;
* large files: `POST /files/multipart/initiate` → part URLs; `PUT` each; `POST …/complete`
  (parts in order, ETags checked) or `…/abort`;
* `POST /files/upload` (the document's one-request multipart upload) works too.

Also: `GET /files`, `/files/{id}`, `/files/{id}/content`, `DELETE /files/{id}`; `POST/GET
/fine-tunes`, `GET /fine-tunes/{id}`, `…/events`, `…/checkpoints`, `…/metrics`, `POST …/cancel`;
`POST /fine-tunes/estimate-price`; `GET /fine-tunes/models/supported`, `…/models/limits`.
`DELETE /fine-tunes/{id}` and `GET /finetune/download` answer 501 (no weights in a simulator).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from synth_cli.devserver.errors import APIError, bad_request, not_found

PREFIX = "/together/v1"
UPLOAD_PATH = PREFIX + "/_uploads/"
PURPOSES = ("fine-tune", "eval", "eval-sample", "eval-output", "eval-summary", "batch-generated", "batch-api")
FILE_TYPES = ("jsonl", "csv", "parquet")
URL_TTL = 3600
DEFAULT_MAX_UPLOAD = 512 * 1024 * 1024
#: Together's documented default learning rate; a multiplier of 1 for the simulator
DEFAULT_LEARNING_RATE = 1e-5
STATUS = {"validating_files": "pending", "queued": "queued", "running": "running", "paused": "queued",
          "succeeded": "completed", "failed": "error", "cancelled": "cancelled"}
#: base models the simulator "fine-tunes" on Together's surface: (context length, max LoRA rank)
MODELS = {
    "Qwen/Qwen3-4B-Instruct-2507": (32768, 64),
    "Qwen/Qwen3-8B": (32768, 64),
    "Qwen/Qwen3-0.6B": (32768, 64),
    "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference": (131072, 64),
    "meta-llama/Llama-3.3-70B-Instruct-Reference": (131072, 64),
}
JOB_FIELDS = frozenset({
    "training_file", "validation_file", "packing", "max_seq_length", "model", "n_epochs", "n_checkpoints", "n_evals",
    "batch_size", "learning_rate", "lr_scheduler", "warmup_ratio", "max_grad_norm", "weight_decay", "random_seed",
    "suffix", "wandb_api_key", "wandb_base_url", "wandb_project_name", "wandb_name", "wandb_entity",
    "train_on_inputs", "training_method", "training_type", "multimodal_params", "from_checkpoint", "from_hf_model",
    "hf_model_revision", "hf_api_token", "hf_output_repo_name",
    # sent by the official SDK (3.x) although the published document does not list them yet
    "gradient_accumulation_steps", "wandb_key", "early_stopping_enabled", "early_stopping_patience",
    "early_stopping_min_delta", "early_stopping_warmup_evals"})


def is_presigned(scope: dict) -> bool:
    """The Gate lets these through without an API key: the URL's signature is checked here."""
    return scope.get("path", "").startswith(UPLOAD_PATH)


# --------------------------------------------------------------------------- plumbing


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, (int, float)):
        return None
    return datetime.fromtimestamp(float(ts), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _state(request: Request) -> dict[str, Any]:
    state = getattr(request.app.state, "together", None)
    if state is None:
        state = {"secret": secrets.token_bytes(32), "pending": {}, "multipart": {}}
        request.app.state.together = state
    return state


def _sign(request: Request, file_id: str, part: int, expires: int) -> str:
    message = f"{file_id}:{part}:{expires}".encode()
    return hmac.new(_state(request)["secret"], message, hashlib.sha256).hexdigest()


def _presigned_url(request: Request, file_id: str, part: int = 0) -> str:
    expires = int(time.time()) + URL_TTL
    query = urlencode({"part": part, "expires": expires, "sig": _sign(request, file_id, part, expires)})
    return str(request.base_url).rstrip("/") + f"{UPLOAD_PATH}{file_id}?{query}"


async def _call(request: Request, method: str, path: str, *, body: bytes = b"", content_type: str | None = None,
                query: dict[str, Any] | None = None, stream=None) -> tuple[int, dict[str, str], bytes]:
    """The OpenAI route of this same app, in process, as the same (already authenticated) owner."""
    headers = [(k, v) for k, v in request.scope["headers"]
               if k.lower() not in (b"content-type", b"content-length", b"transfer-encoding")]
    if content_type:
        headers.append((b"content-type", content_type.encode("latin-1")))
    if stream is None:
        headers.append((b"content-length", str(len(body)).encode()))
    scope = {**request.scope, "method": method, "path": path, "raw_path": path.encode(), "root_path": "",
             "query_string": urlencode({k: v for k, v in (query or {}).items() if v is not None}).encode(),
             "headers": headers}
    chunks = stream if stream is not None else iter([body])
    sent: dict[str, Any] = {"status": 500, "headers": {}, "body": [], "request_done": False}
    finished = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if sent["request_done"]:
            await finished.wait()  # like a server: nothing more until the client goes away
            return {"type": "http.disconnect"}
        try:
            chunk = next(chunks)
        except StopIteration:
            sent["request_done"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            sent["status"] = message["status"]
            sent["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            sent["body"].append(message.get("body", b""))
            if not message.get("more_body"):
                finished.set()

    await request.app(scope, receive, send)
    finished.set()
    return sent["status"], sent["headers"], b"".join(sent["body"])


async def _openai(request: Request, method: str, path: str, **kwargs: Any) -> Any:
    """Call the OpenAI route; its errors pass through unchanged (the error shape is the same)."""
    status, headers, body = await _call(request, method, "/v1/" + path.lstrip("/"), **kwargs)
    if status >= 400:
        try:
            error = json.loads(body).get("error") or {}
        except (ValueError, AttributeError):
            error = {}
        raise APIError(status, str(error.get("message") or body[:200].decode("utf-8", "replace")),
                       type=error.get("type") or "invalid_request_error", param=error.get("param"),
                       code=error.get("code"),
                       headers={k: v for k, v in headers.items() if k in ("retry-after", "retry-after-ms")})
    return json.loads(body) if body else None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise bad_request("We could not parse the JSON body of your request: expected a JSON object.") from None
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    return body


def _max_upload(request: Request) -> int:
    config = request.app.state.config
    for name in ("max_upload_bytes", "max_file_bytes", "upload_limit"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return DEFAULT_MAX_UPLOAD


# --------------------------------------------------------------------------- objects


def file_response(obj: dict[str, Any], file_type: str | None = None) -> dict[str, Any]:
    name = str(obj.get("filename") or "")
    kind = file_type or next((t for t in FILE_TYPES if name.lower().endswith("." + t)), "jsonl")
    return {"id": obj["id"], "object": "file", "created_at": obj.get("created_at"), "filename": name,
            "bytes": obj.get("bytes"), "purpose": "fine-tune" if obj.get("purpose") == "fine-tune" else "eval",
            "FileType": kind, "Processed": True}


def _together_request(job: dict[str, Any]) -> dict[str, Any]:
    raw = (job.get("metadata") or {}).get("together_request") if isinstance(job.get("metadata"), dict) else None
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {}


def job_response(job: dict[str, Any], events: list[dict[str, Any]] | None = None, *, full: bool = True
                 ) -> dict[str, Any]:
    hp = job.get("hyperparameters") or {}
    extra = _together_request(job)
    status = STATUS.get(job.get("status"), "pending")
    lrm = hp.get("learning_rate_multiplier")
    created = _iso(job.get("created_at"))
    updated = _iso(job.get("finished_at") or job.get("created_at"))
    obj: dict[str, Any] = {
        "id": job["id"], "status": status, "created_at": created, "updated_at": updated or created,
        "model": job.get("model"), "training_file": job.get("training_file"),
        "n_epochs": hp.get("n_epochs") if isinstance(hp.get("n_epochs"), int) else None,
        "batch_size": hp.get("batch_size") if isinstance(hp.get("batch_size"), int) else None,
        "learning_rate": extra.get("learning_rate", lrm * DEFAULT_LEARNING_RATE if isinstance(lrm, (int, float))
                                   else None),
        "n_checkpoints": extra.get("n_checkpoints", 1), "n_evals": extra.get("n_evals", 0),
        "warmup_ratio": extra.get("warmup_ratio", 0.0), "random_seed": job.get("seed"),
        "training_type": extra.get("training_type") or {"type": "Lora", "lora_r": 8, "lora_alpha": 16},
        "training_method": extra.get("training_method") or {"method": "sft", "train_on_inputs": "auto"},
        "token_count": job.get("trained_tokens") or 0, "events": events if full and events is not None else [],
        "user_id": "user-synth-local", "owner_address": "local@synth-ai.serve",
    }
    if job.get("validation_file"):
        obj["validation_file"] = job["validation_file"]
    if job.get("user_provided_suffix"):
        obj["suffix"] = job["user_provided_suffix"]
    if job.get("fine_tuned_model"):
        obj["model_output_name"] = job["fine_tuned_model"]
    if extra.get("wandb_project_name"):
        obj["wandb_project_name"] = extra["wandb_project_name"]
    if job.get("estimated_finish") and status in ("pending", "queued", "running"):
        obj["progress"] = {"estimate_available": True,
                           "seconds_remaining": max(0, int(job["estimated_finish"] - time.time()))}
    return {k: v for k, v in obj.items() if v is not None}


def _event_type(event: dict[str, Any], status: str) -> str:
    message = str(event.get("message") or "")
    level = event.get("level")
    if level == "error":
        return "job_error"
    if level in ("warn", "warning"):
        return "warning"
    for start, kind in (("Created fine-tuning job", "job_pending"), ("Validating", "training_data_downloading"),
                        ("Files validated", "training_data_download_complete"), ("Fine-tuning job started",
                                                                                 "training_start"),
                        ("Checkpoint created", "checkpoint_save"), ("Epoch ", "epoch_complete"),
                        ("New fine-tuned model", "model_upload_complete"), ("Charged", "job_complete"),
                        ("The job has successfully", "job_complete"), ("Fine-tuning job cancelled", "job_stopped")):
        if message.startswith(start):
            return kind
    return "training_start" if event.get("type") == "metrics" else "job_start"


def event_response(event: dict[str, Any], job: dict[str, Any], step: int) -> dict[str, Any]:
    data = event.get("data") if isinstance(event.get("data"), dict) else {}
    total = job.get("_total_steps") or 0
    level = {"warn": "warning", "warning": "warning", "error": "error"}.get(event.get("level"), "info")
    return {"object": "fine-tune-event", "created_at": _iso(event.get("created_at")), "level": level,
            "message": str(event.get("message") or ""), "type": _event_type(event, job.get("status", "")),
            "param_count": 0, "token_count": int(data.get("trained_tokens") or 0), "total_steps": int(total),
            "wandb_url": "", "step": int(step), "checkpoint_path": str(data.get("fine_tuned_model_checkpoint") or ""),
            "model_path": str(data.get("fine_tuned_model") or ""), "training_offset": 0,
            "hash": str(event.get("id") or "")}


async def _all_events(request: Request, job_id: str) -> list[dict[str, Any]]:
    """Every event of the job, oldest first (paging the OpenAI route with `after`)."""
    events: list[dict[str, Any]] = []
    after = None
    for _ in range(10_000):
        page = await _openai(request, "GET", f"fine_tuning/jobs/{job_id}/events", query={"limit": 1000,
                                                                                        "after": after})
        data = page.get("data") or []
        events += data
        if not page.get("has_more") or not data:
            break
        after = data[-1]["id"]
    # the OpenAI route may list newest first (OpenAI's order) or oldest first; a job's first event is
    # always its creation, which tells the two apart even when the timestamps tie
    first = str(events[-1].get("message") or "") if events else ""
    if len(events) > 1 and (first.startswith("Created fine-tuning job") or
                            (events[0].get("created_at") or 0) > (events[-1].get("created_at") or 0)):
        events.reverse()
    return events


async def _job_and_events(request: Request, job_id: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    job = await _openai(request, "GET", f"fine_tuning/jobs/{job_id}")
    events = await _all_events(request, job_id)
    step = 0
    total = 0
    for event in events:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if isinstance(data.get("total_steps"), int):
            total = data["total_steps"]
    job["_total_steps"] = total
    out = []
    for event in events:
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if isinstance(data.get("step"), int):
            step = data["step"]
        if event.get("type") == "metrics":
            continue  # losses are served by /metrics, as Together does
        out.append(event_response(event, job, step))
    return job, out


# --------------------------------------------------------------------------- files


async def _form(request: Request) -> dict[str, str]:
    """The small text fields of the upload-URL request (multipart or urlencoded)."""
    try:
        form = await request.form(max_files=0, max_fields=32)
    except Exception:  # noqa: BLE001 - any malformed form is the client's error
        raise bad_request("expected form fields purpose, file_name, file_type (multipart/form-data)") from None
    return {k: v for k, v in form.items() if isinstance(v, str)}


def _check_fields(fields: dict[str, Any]) -> tuple[str, str, str]:
    purpose = str(fields.get("purpose") or "")
    name = str(fields.get("file_name") or "")
    file_type = str(fields.get("file_type") or "jsonl")
    if purpose not in PURPOSES:
        raise bad_request(f"Invalid value for 'purpose': {purpose!r}; expected one of {', '.join(PURPOSES)}.",
                          "purpose")
    if not name or "/" in name or len(name) > 255:
        raise bad_request("Missing or invalid 'file_name'.", "file_name")
    if file_type not in FILE_TYPES:
        raise bad_request(f"Invalid value for 'file_type': {file_type!r}; expected jsonl, csv or parquet.",
                          "file_type")
    return purpose, name, file_type


async def upload_url(request: Request) -> Response:
    fields = await _form(request)
    purpose, name, file_type = _check_fields(fields)
    checksum = fields.get("checksum")
    file_id = "file-" + str(uuid.uuid4())
    store = request.app.state.store
    _state(request)["pending"][file_id] = {"owner": request.scope["state"]["owner"], "name": name,
                                           "purpose": purpose, "file_type": file_type, "checksum": checksum,
                                           "path": store.tmp_dir / f"together-{file_id}", "done": False,
                                           "expires": time.time() + URL_TTL}
    return Response(status_code=302, headers={"Location": _presigned_url(request, file_id),
                                              "X-Together-File-Id": file_id})


async def _receive_to(request: Request, path: Path, limit: int) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise APIError(413, f"The upload is larger than this server's limit ({limit} bytes).",
                                   code="file_too_large")
                digest.update(chunk)
                fh.write(chunk)
    except (ClientDisconnect, APIError):
        path.unlink(missing_ok=True)
        raise
    return size, digest.hexdigest()


async def presigned_put(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    query = request.query_params
    try:
        part, expires = int(query.get("part", "")), int(query.get("expires", ""))
    except ValueError:
        raise APIError(403, "Invalid upload URL.", code="invalid_signature") from None
    good = hmac.compare_digest(_sign(request, file_id, part, expires), query.get("sig", ""))
    if not good or expires < time.time():
        raise APIError(403, "The upload URL is invalid or has expired.", code="invalid_signature")
    state = _state(request)
    if part == 0:
        pending = state["pending"].get(file_id)
        if pending is None:
            raise not_found(f"No upload is pending for {file_id}.")
        size, sha = await _receive_to(request, pending["path"], _max_upload(request))
        pending.update(done=True, size=size, sha256=sha)
        return Response(status_code=200, headers={"ETag": f'"{sha[:32]}"'})
    upload = next((u for u in state["multipart"].values() if u["file_id"] == file_id), None)
    if upload is None or not 1 <= part <= upload["num_parts"]:
        raise not_found(f"No multipart upload part {part} is pending for {file_id}.")
    path = upload["dir"] / f"part-{part:05d}"
    size, sha = await _receive_to(request, path, _max_upload(request))
    etag = hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()
    upload["parts"][part] = {"etag": etag, "size": size}
    return Response(status_code=200, headers={"ETag": f'"{etag}"'})


def _chunks(paths: list[Path], head: bytes, tail: bytes):
    yield head
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                yield block
    yield tail


async def _store_file(request: Request, paths: list[Path], name: str, purpose: str) -> dict[str, Any]:
    """Hand the received bytes to `POST /v1/files` (one store, one set of checks)."""
    boundary = f"together-{uuid.uuid4().hex}"
    safe = name.replace('"', "%22").replace("\r", " ").replace("\n", " ")
    openai_purpose = "fine-tune" if purpose == "fine-tune" else "evals"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{openai_purpose}\r\n'
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{safe}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    return await _openai(request, "POST", "files", content_type=f"multipart/form-data; boundary={boundary}",
                         stream=_chunks(paths, head, tail))


async def preprocess(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    owner = request.scope["state"]["owner"]
    pending = _state(request)["pending"].get(file_id)
    if pending is None or pending["owner"] != owner:
        existing = await _openai(request, "GET", f"files/{file_id}")
        return JSONResponse(file_response(existing))
    if not pending["done"]:
        raise bad_request(f"The content of {file_id} was not uploaded yet (PUT it to the upload URL first).",
                          "file_id")
    if pending["checksum"] and pending["checksum"] != pending["sha256"]:
        pending["path"].unlink(missing_ok=True)
        del _state(request)["pending"][file_id]
        raise bad_request(f"Checksum mismatch for {file_id}: the uploaded bytes are not the file announced.",
                          "checksum", "checksum_mismatch")
    try:
        stored = await _store_file(request, [pending["path"]], pending["name"], pending["purpose"])
    finally:
        pending["path"].unlink(missing_ok=True)
        _state(request)["pending"].pop(file_id, None)
    return JSONResponse(file_response(stored, pending["file_type"]))


async def multipart_initiate(request: Request) -> Response:
    body = await _json_body(request)
    purpose, name, file_type = _check_fields(body)
    num_parts = body.get("num_parts")
    if not isinstance(num_parts, int) or isinstance(num_parts, bool) or not 1 <= num_parts <= 250:
        raise bad_request("'num_parts' must be an integer between 1 and 250.", "num_parts")
    size = body.get("file_size")
    if not isinstance(size, int) or size < 0 or size > _max_upload(request):
        raise APIError(413 if isinstance(size, int) and size > 0 else 400,
                       f"'file_size' must be an integer up to this server's limit ({_max_upload(request)} bytes).",
                       param="file_size")
    file_id = "file-" + str(uuid.uuid4())
    upload_id = "upl-" + uuid.uuid4().hex
    directory = request.app.state.store.tmp_dir / f"together-{upload_id}"
    directory.mkdir(parents=True, exist_ok=True)
    _state(request)["multipart"][upload_id] = {
        "owner": request.scope["state"]["owner"], "file_id": file_id, "name": name, "purpose": purpose,
        "file_type": file_type, "checksum": body.get("checksum"), "num_parts": num_parts, "dir": directory,
        "parts": {}}
    parts = [{"PartNumber": n, "URL": _presigned_url(request, file_id, n), "Headers": {}}
             for n in range(1, num_parts + 1)]
    return JSONResponse({"upload_id": upload_id, "file_id": file_id, "parts": parts})


def _multipart(request: Request, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    upload_id = str(body.get("upload_id") or "")
    upload = _state(request)["multipart"].get(upload_id)
    if upload is None or upload["owner"] != request.scope["state"]["owner"] or \
            upload["file_id"] != body.get("file_id"):
        raise not_found(f"No multipart upload {upload_id!r} for file {body.get('file_id')!r}.", "upload_id")
    return upload_id, upload


def _drop_multipart(request: Request, upload_id: str) -> None:
    upload = _state(request)["multipart"].pop(upload_id, None)
    if upload:
        for path in upload["dir"].glob("part-*"):
            path.unlink(missing_ok=True)
        try:
            upload["dir"].rmdir()
        except OSError:
            pass


async def multipart_complete(request: Request) -> Response:
    body = await _json_body(request)
    upload_id, upload = _multipart(request, body)
    listed = body.get("parts")
    if not isinstance(listed, list) or [p.get("part_number") for p in listed if isinstance(p, dict)] != list(
            range(1, upload["num_parts"] + 1)):
        raise bad_request(f"'parts' must list parts 1 to {upload['num_parts']} in order with their ETags.", "parts")
    for item in listed:
        got = upload["parts"].get(item["part_number"])
        if got is None or str(item.get("etag", "")).strip('"') != got["etag"]:
            raise bad_request(f"Part {item['part_number']} was not uploaded, or its ETag does not match.", "parts")
    paths = [upload["dir"] / f"part-{n:05d}" for n in range(1, upload["num_parts"] + 1)]
    if upload["checksum"]:
        digest = hashlib.sha256()
        for path in paths:
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        if digest.hexdigest() != upload["checksum"]:
            _drop_multipart(request, upload_id)
            raise bad_request("Checksum mismatch: the uploaded parts are not the file announced.", "checksum",
                              "checksum_mismatch")
    try:
        stored = await _store_file(request, paths, upload["name"], upload["purpose"])
    finally:
        _drop_multipart(request, upload_id)
    return JSONResponse({"file": file_response(stored, upload["file_type"])})


async def multipart_abort(request: Request) -> Response:
    body = await _json_body(request)
    upload_id, _upload = _multipart(request, body)
    _drop_multipart(request, upload_id)
    return JSONResponse({"upload_id": upload_id, "aborted": True})


async def direct_upload(request: Request) -> Response:
    """`POST /files/upload`: one multipart request (`purpose`, `file_name`, `file_type`, `file`)."""
    from synth_cli.devserver.uploads import UploadError, discard, receive_upload

    store = request.app.state.store
    try:
        upload = await receive_upload(request.stream(), request.headers.get("content-type", ""), store.tmp_dir)
    except UploadError as exc:
        raise bad_request(str(exc), "file") from None
    try:
        if not upload.file_field_seen or upload.path is None:
            raise bad_request("Missing required parameter: 'file'.", "file")
        fields = {"file_name": upload.fields.get("file_name") or upload.filename, **upload.fields}
        purpose, name, file_type = _check_fields(fields)
        stored = await _store_file(request, [upload.path], name, purpose)
    finally:
        discard(upload)
    return JSONResponse(file_response(stored, file_type))


async def list_files(request: Request) -> Response:
    page = await _openai(request, "GET", "files", query={"limit": 10000})
    return JSONResponse({"data": [file_response(f) for f in page.get("data") or []]})


async def retrieve_file(request: Request) -> Response:
    return JSONResponse(file_response(await _openai(request, "GET", f"files/{request.path_params['file_id']}")))


async def delete_file(request: Request) -> Response:
    answer = await _openai(request, "DELETE", f"files/{request.path_params['file_id']}")
    return JSONResponse({"id": answer.get("id"), "deleted": bool(answer.get("deleted"))})


async def file_content(request: Request) -> Response:
    file_id = request.path_params["file_id"]
    status, headers, body = await _call(request, "GET", f"/v1/files/{file_id}/content")
    if status >= 400:
        await _openai(request, "GET", f"files/{file_id}")  # raises the same error, in the same shape
    return Response(body, status_code=200, media_type="text/plain")


# --------------------------------------------------------------------------- fine-tunes


def _openai_job_body(body: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(body) - JOB_FIELDS)
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("Missing required parameter: 'model'.", "model")
    if model not in MODELS:
        raise bad_request(f"Model {model!r} is not available for fine-tuning on this server; see "
                          "/fine-tunes/models/supported.", "model", "model_not_supported")
    hp: dict[str, Any] = {}
    epochs = body.get("n_epochs")
    if epochs is not None:
        if not isinstance(epochs, int) or isinstance(epochs, bool) or not 1 <= epochs <= 20:
            raise bad_request("'n_epochs' must be an integer between 1 and 20.", "n_epochs")
        hp["n_epochs"] = epochs
    else:
        hp["n_epochs"] = 1  # Together's default
    batch = body.get("batch_size")
    if batch is not None and batch != "max":
        if not isinstance(batch, int) or isinstance(batch, bool) or not 1 <= batch <= 256:
            raise bad_request("'batch_size' must be 'max' or an integer between 1 and 256.", "batch_size")
        hp["batch_size"] = batch
    rate = body.get("learning_rate")
    if rate is not None:
        if not isinstance(rate, (int, float)) or isinstance(rate, bool) or not 0 < rate <= 0.01:
            raise bad_request("'learning_rate' must be a number in (0, 0.01].", "learning_rate")
        hp["learning_rate_multiplier"] = float(rate) / DEFAULT_LEARNING_RATE
    ratio = body.get("warmup_ratio")
    if ratio is not None and (not isinstance(ratio, (int, float)) or not 0 <= ratio <= 1):
        raise bad_request("'warmup_ratio' must be between 0 and 1.", "warmup_ratio")
    training_type = body.get("training_type")
    if training_type is not None:
        if not isinstance(training_type, dict) or training_type.get("type") not in ("Lora", "Full"):
            raise bad_request("'training_type.type' must be 'Lora' or 'Full'.", "training_type")
        if training_type["type"] == "Lora":
            rank = training_type.get("lora_r")
            if not isinstance(rank, int) or not 1 <= rank <= MODELS[model][1]:
                raise bad_request(f"'training_type.lora_r' must be an integer between 1 and {MODELS[model][1]}.",
                                  "training_type.lora_r")
    method = body.get("training_method")
    if method is not None and (not isinstance(method, dict) or method.get("method") not in ("sft", "dpo")):
        raise bad_request("'training_method.method' must be 'sft' or 'dpo'.", "training_method")
    if isinstance(method, dict) and method.get("method") == "dpo":
        raise bad_request("This local backend simulates supervised fine-tuning (sft) only.", "training_method",
                          "unsupported_method")
    kept = {k: body[k] for k in ("learning_rate", "n_checkpoints", "n_evals", "warmup_ratio", "training_type",
                                 "training_method", "wandb_project_name") if k in body}
    request: dict[str, Any] = {"model": model, "training_file": body.get("training_file"),
                               "method": {"type": "supervised", "supervised": {"hyperparameters": hp}},
                               "metadata": {"together_request": json.dumps(kept)[:512]}}
    if body.get("validation_file"):
        request["validation_file"] = body["validation_file"]
    if body.get("suffix"):
        request["suffix"] = body["suffix"]
    seed = body.get("random_seed")
    if seed is not None:
        request["seed"] = seed
    return request


async def create_job(request: Request) -> Response:
    body = await _json_body(request)
    openai_body = json.dumps(_openai_job_body(body)).encode()
    job = await _openai(request, "POST", "fine_tuning/jobs", body=openai_body, content_type="application/json")
    return JSONResponse(job_response(job, full=False))


async def list_jobs(request: Request) -> Response:
    jobs: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):
        page = await _openai(request, "GET", "fine_tuning/jobs", query={"limit": 1000, "after": after})
        data = page.get("data") or []
        jobs += data
        if not page.get("has_more") or not data:
            break
        after = data[-1]["id"]
    return JSONResponse({"data": [job_response(j, full=False) for j in jobs]})


async def retrieve_job(request: Request) -> Response:
    job, events = await _job_and_events(request, request.path_params["job_id"])
    return JSONResponse(job_response(job, events))


async def cancel_job(request: Request) -> Response:
    job = await _openai(request, "POST", f"fine_tuning/jobs/{request.path_params['job_id']}/cancel")
    return JSONResponse(job_response(job, full=False))


async def list_events(request: Request) -> Response:
    _job, events = await _job_and_events(request, request.path_params["job_id"])
    return JSONResponse({"data": events})


async def list_checkpoints(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    job = await _openai(request, "GET", f"fine_tuning/jobs/{job_id}")
    page = await _openai(request, "GET", f"fine_tuning/jobs/{job_id}/checkpoints", query={"limit": 1000})
    data = sorted(page.get("data") or [], key=lambda c: c.get("step_number") or 0)
    out = [{"step": c.get("step_number"), "path": c.get("fine_tuned_model_checkpoint"),
            "created_at": _iso(c.get("created_at")), "checkpoint_type": "Intermediate"} for c in data]
    if job.get("status") == "succeeded" and job.get("fine_tuned_model"):
        out.append({"step": out[-1]["step"] if out else 0, "path": job["fine_tuned_model"],
                    "created_at": _iso(job.get("finished_at")), "checkpoint_type": "Final"})
    return JSONResponse({"data": out})


async def metrics(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    await _openai(request, "GET", f"fine_tuning/jobs/{job_id}")  # a 404 for an unknown job
    body = await _json_body(request)
    low, high = body.get("global_step_from"), body.get("global_step_to")
    points = []
    for event in await _all_events(request, job_id):
        data = event.get("data") if isinstance(event.get("data"), dict) else {}
        if event.get("type") != "metrics" or not isinstance(data.get("step"), int):
            continue
        step = data["step"]
        if (isinstance(low, int) and step < low) or (isinstance(high, int) and step > high):
            continue
        point = {"train/global_step": step}
        if isinstance(data.get("train_loss"), (int, float)):
            point["train/loss"] = data["train_loss"]
        if isinstance(data.get("valid_loss"), (int, float)):
            point["eval/loss"] = data["valid_loss"]
        points.append(point)
    return JSONResponse({"metrics": points})


async def estimate_price(request: Request) -> Response:
    from synth_cli.devserver import billing, simulate
    from synth_cli.devserver.validation import inspect_file

    body = await _json_body(request)
    file_id = body.get("training_file")
    if not isinstance(file_id, str) or not file_id:
        raise bad_request("Missing required parameter: 'training_file'.", "training_file")
    await _openai(request, "GET", f"files/{file_id}")  # a 404 for an unknown file
    path = request.app.state.store.blob_path(file_id)
    from starlette.concurrency import run_in_threadpool

    report = await run_in_threadpool(inspect_file, path)
    epochs = body.get("n_epochs") if isinstance(body.get("n_epochs"), int) else 1
    tokens = int(report["tokens"]) * epochs
    model = str(body.get("model") or "")
    hp = simulate.resolve_hyperparameters(max(1, report["n_examples"]), {"n_epochs": epochs})
    steps = simulate.total_steps(max(1, report["n_examples"]), hp)
    cents = billing.token_charge_cents(model, tokens) + billing.gpu_charge_cents(billing.gpu_seconds(steps, tokens))
    balance = await _openai(request, "GET", "balance/current")
    limit = float(balance.get("balance_dollars") or 0)
    return JSONResponse({"estimated_total_price": cents / 100, "allowed_to_proceed": cents / 100 <= limit,
                         "user_limit": limit, "estimated_train_token_count": tokens,
                         "estimated_eval_token_count": 0})


async def supported_models(request: Request) -> Response:
    return JSONResponse({"models": sorted(MODELS)})


async def model_limits(request: Request) -> Response:
    name = request.query_params.get("model_name") or ""
    if name not in MODELS:
        return JSONResponse({"message": f"Model {name!r} is not supported for fine-tuning on this server "
                                        f"(supported: {', '.join(sorted(MODELS))})."}, status_code=404)
    context, rank = MODELS[name]
    return JSONResponse({
        "model_name": name, "max_num_epochs": 20, "max_num_evals": 100, "max_num_checkpoints": 20,
        "max_learning_rate": 0.01, "min_learning_rate": 1e-8, "supports_vision": False, "supports_tools": True,
        "supports_reasoning": False, "merge_output_lora": True, "max_seq_length_sft": context,
        "max_seq_length_dpo": context, "default_gradient_accumulation_steps": 1,
        "full_training": {"max_batch_size": 96, "max_batch_size_dpo": 48, "min_batch_size": 8},
        "lora_training": {"max_batch_size": 128, "max_batch_size_dpo": 64, "min_batch_size": 8, "max_rank": rank,
                          "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"]}})


async def not_in_simulator(request: Request) -> Response:
    raise APIError(501, "This local simulator trains no weights: there is nothing to download or delete.",
                   type="server_error", code="not_implemented")


def routes() -> list:
    """Mounted at `/together/v1` by `server.routes()`."""
    return [
        Route("/files", upload_url, methods=["POST"]),
        Route("/files", list_files, methods=["GET"]),
        Route("/files/upload", direct_upload, methods=["POST"]),
        Route("/files/multipart/initiate", multipart_initiate, methods=["POST"]),
        Route("/files/multipart/complete", multipart_complete, methods=["POST"]),
        Route("/files/multipart/abort", multipart_abort, methods=["POST"]),
        Route("/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/files/{file_id}/preprocess", preprocess, methods=["POST"]),
        Route("/_uploads/{file_id}", presigned_put, methods=["PUT"]),
        Route("/fine-tunes", create_job, methods=["POST"]),
        Route("/fine-tunes", list_jobs, methods=["GET"]),
        Route("/fine-tunes/estimate-price", estimate_price, methods=["POST"]),
        Route("/fine-tunes/models/supported", supported_models, methods=["GET"]),
        Route("/fine-tunes/models/limits", model_limits, methods=["GET"]),
        Route("/fine-tunes/{job_id}", retrieve_job, methods=["GET"]),
        Route("/fine-tunes/{job_id}", not_in_simulator, methods=["DELETE"]),
        Route("/fine-tunes/{job_id}/events", list_events, methods=["GET"]),
        Route("/fine-tunes/{job_id}/checkpoints", list_checkpoints, methods=["GET"]),
        Route("/fine-tunes/{job_id}/metrics", metrics, methods=["GET"]),
        Route("/fine-tunes/{job_id}/cancel", cancel_job, methods=["POST"]),
        Route("/finetune/download", not_in_simulator, methods=["GET"]),
    ]

