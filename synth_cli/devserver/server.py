"""The ASGI app of `synth-ai serve`: OpenAI's files + fine-tuning API, a training simulator behind it.

Routes (all under `/v1`; `/health` also at the root):

    GET  /health
    POST /files · GET /files · GET /files/{id} · GET /files/{id}/content · DELETE /files/{id}
    POST /fine_tuning/jobs · GET /fine_tuning/jobs · GET /fine_tuning/jobs/{id}
    POST /fine_tuning/jobs/{id}/cancel · POST …/pause · POST …/resume · GET …/events · GET …/checkpoints
    GET  …/predictions · GET …/predictions/epochs · GET …/predictions/trends
    GET  /balance/current · GET /balance/usage/windows · GET /balance/usage
    POST /chat/completions · POST /messages      (a simulated model: see `chat`)

:class:`Gate` (pure ASGI middleware) does what sits in front of every API call: injected latency,
API-key check, rate limit, injected 5xx; then :func:`hot_read` answers the two reads a polling
client repeats (the jobs list, a job's events page) without Starlette's layers. POST handlers honour `Idempotency-Key`. Errors always
come back as `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import os
import random
import secrets
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from synth_cli import __version__
from synth_cli.config import mask_key
from synth_cli.devserver import chat
from synth_cli.devserver import engine as engine_mod
from synth_cli.devserver import simulate, together
from synth_cli.devserver.engine import Engine
from synth_cli.devserver.errors import APIError, bad_request, error_body, not_found, parse_json
from synth_cli.devserver.store import Store, checkpoint_object, file_object, new_id, prediction_object
from synth_cli.devserver.uploads import MAX_FIELD_BYTES, UploadError, UploadTooLarge, discard, receive_upload
from synth_cli.devserver.validation import describe_errors, inspect_file

FILE_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
JOB_FIELDS = ("model", "training_file", "validation_file", "suffix", "seed", "metadata", "hyperparameters",
              "method", "integrations")
HYPERPARAMETER_LIMITS = {"n_epochs": (1, 50), "batch_size": (1, 256)}
#: 1 MiB: far above any real job request (a few hundred bytes).
DEFAULT_MAX_JSON_BYTES = 1024 * 1024
#: a chat request (the simulated model's endpoints) may carry images: Anthropic's request limit, 32 MB.
DEFAULT_MAX_CHAT_BYTES = 32 * 1024 * 1024
#: OpenAI's limit for one file of the Files API (512 MB).
DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024
#: text fields of an upload (OpenAI's take `purpose` and `expires_after[...]`).
DEFAULT_MAX_FORM_FIELDS = 16
#: multipart framing (boundaries, part headers) allowed on top of the file and its fields.
FORM_ALLOWANCE_BYTES = 64 * 1024
SIMULATOR_NOTE = ("training simulator: jobs, losses, checkpoints and predictions are simulated; "
                  "no model is trained")


@dataclass
class ServerConfig:
    data_dir: Path
    api_keys: tuple[str, ...]
    step_seconds: float = 0.2
    seed: int | None = None
    fail_rate: float = 0.0
    rate_limit: float = 0.0
    latency_ms: float = 0.0
    credit_usd: float = 100.0
    #: request limits (413 beyond them): a JSON body; one uploaded file; the text fields of an upload.
    max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_form_fields: int = DEFAULT_MAX_FORM_FIELDS
    max_chat_bytes: int = DEFAULT_MAX_CHAT_BYTES

    @property
    def credit_cents(self) -> int:
        return int(round(self.credit_usd * 100))


def owner_of(key: str) -> str:
    """Accounts are per API key; the key itself is never stored."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:24]


class FastJSONResponse(JSONResponse):
    """JSON encoded by orjson; `bytes` content is taken as JSON already encoded (e.g. by SQLite)."""

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content
        return orjson.dumps(content)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return FastJSONResponse(data, status_code=status, headers=headers)


def _json_list(items: list[bytes], has_more: bool) -> JSONResponse:
    """`{"object": "list", "data": [...], "has_more": ...}` around objects already rendered as JSON."""
    return FastJSONResponse(b'{"object":"list","data":[' + b",".join(items) + b'],"has_more":'
                            + (b"true}" if has_more else b"false}"))


def _error_response(exc: APIError) -> JSONResponse:
    return _json(exc.body(), exc.status, exc.headers)


# --------------------------------------------------------------------------- the gate


class Gate:
    """Latency, authentication, rate limiting and fault injection in front of every API route."""

    OPEN_PATHS = ("/health", "/v1/health")

    def __init__(self, app: Callable, config: ServerConfig, store: Store | None = None):
        self.app = app
        self.config = config
        #: the store :func:`hot_read` answers the polled reads from (None: every request goes to `app`).
        self.store = store
        self.keys = {key: owner_of(key) for key in config.api_keys}
        self.rng = random.Random(config.seed) if config.seed is not None else random.Random()
        self.buckets: dict[str, tuple[float, float]] = {}

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope["path"] in self.OPEN_PATHS or together.is_presigned(scope):
            await self.app(scope, receive, send)
            return
        if self.config.latency_ms > 0:
            await asyncio.sleep(self.config.latency_ms / 1000)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        path = scope["path"]
        key = _presented_key(headers, chat.AUTH_HEADERS.get(path))
        if key is None:
            await self._reply(scope, receive, send, APIError(
                401, chat.auth_message(path, True) or "You didn't provide an API key. Send it in an Authorization "
                     "header (Authorization: Bearer YOUR_KEY) or an X-API-Key header; `synth-ai serve` prints the key "
                     "it accepts.", code="missing_api_key"))
            return
        owner = self.keys.get(key)
        if owner is None:
            await self._reply(scope, receive, send, APIError(
                401, chat.auth_message(path, False) or f"Incorrect API key provided: {mask_key(key)}. This local "
                     "backend accepts the key(s) in SYNTH_DEV_API_KEYS, or the default dev key it printed at start.",
                code="invalid_api_key"))
            return
        scope.setdefault("state", {})["owner"] = owner
        if scope["method"] in ("POST", "PUT", "PATCH"):
            too_large = self._body_limit(headers, path)
            if too_large[0] is not None:
                await self._reply(scope, receive, send, too_large[0])
                return
            receive = _bounded(receive, too_large[1], too_large[2])
        wait = self._rate_limited(owner)
        if wait is not None:
            await self._reply(scope, receive, send, APIError(
                429, f"Rate limit reached: {self.config.rate_limit:g} requests per second. "
                     f"Please try again in {wait * 1000:.0f}ms.", type="requests", code="rate_limit_exceeded",
                headers={"Retry-After": str(max(1, math.ceil(wait))), "retry-after-ms": str(max(1, round(wait * 1000))),
                         "x-ratelimit-limit-requests": f"{self.config.rate_limit:g}",
                         "x-ratelimit-remaining-requests": "0"}))
            return
        fault = self._fault()
        if fault is None:
            if scope["method"] == "GET" and self.store is not None and await hot_read(self.store, scope, send, owner):
                return
            await self.app(scope, receive, send)
            return
        status, after = fault
        error = APIError(status, "The server had an error while processing your request (injected by "
                                 "`synth-ai serve --fail-rate`). Retry your request.",
                         type="server_error", code="injected_fault")
        if after:  # the work is done, the answer is lost: what idempotency keys are for

            async def swallow(message: dict) -> None:
                return None

            await self.app(scope, receive, swallow)
        await self._reply(scope, receive, send, error)

    def _body_limit(self, headers: dict[str, str], path: str) -> tuple[APIError | None, int, str]:
        """(an error when the declared Content-Length is already too large, the byte limit, what it is for).

        An upload may carry one file of up to max_upload_bytes plus its small text fields; any other
        body is JSON of up to max_json_bytes (max_chat_bytes on the simulated model's paths). A body without Content-Length (chunked) is counted as
        it arrives (see :func:`_bounded`); nothing beyond the limit is ever read.
        """
        cfg = self.config
        if headers.get("content-type", "").lower().startswith("multipart/"):
            limit = cfg.max_upload_bytes + FORM_ALLOWANCE_BYTES + cfg.max_form_fields * MAX_FIELD_BYTES
            what = f"uploads up to {cfg.max_upload_bytes:,} bytes per file (serve --max-upload-bytes)"
        elif path in chat.PATHS:
            limit, what = cfg.max_chat_bytes, f"chat requests up to {cfg.max_chat_bytes:,} bytes (serve --max-chat-bytes)"
        else:
            limit, what = cfg.max_json_bytes, f"JSON bodies up to {cfg.max_json_bytes:,} bytes (serve --max-json-bytes)"
        declared = headers.get("content-length", "").strip()
        if declared.isdigit() and int(declared) > limit:
            return _too_large(f"Request body too large ({int(declared):,} bytes): this server accepts {what}."), \
                limit, what
        return None, limit, what

    def _rate_limited(self, owner: str) -> float | None:
        """Token bucket per key: `rate_limit` requests per second, bursts up to the same number."""
        rate = self.config.rate_limit
        if rate <= 0:
            return None
        capacity = max(1.0, rate)
        now = time.monotonic()
        tokens, last = self.buckets.get(owner, (capacity, now))
        tokens = min(capacity, tokens + (now - last) * rate)
        if tokens >= 1.0:
            self.buckets[owner] = (tokens - 1.0, now)
            return None
        self.buckets[owner] = (tokens, now)
        return (1.0 - tokens) / rate

    def _fault(self) -> tuple[int, bool] | None:
        if self.config.fail_rate <= 0 or self.rng.random() >= self.config.fail_rate:
            return None
        return self.rng.choice((500, 502, 503)), self.rng.random() < 0.5

    @staticmethod
    async def _reply(scope: dict, receive: Callable, send: Callable, error: APIError) -> None:
        response = chat.error_response(scope["path"], error) or _error_response(error)
        await response(scope, receive, send)


#: the paths of the reads a polling client repeats (`sft run` polls the job's events, `sft list` the jobs).
JOBS_PATH = "/v1/fine_tuning/jobs"
_EVENTS_SUFFIX = "/events"
_JSON_HEADERS = b"application/json"


def _hot_params(query: bytes) -> dict[str, str] | None:
    """`limit` and `after` of a query string as Starlette reads them (the last value of a name wins);
    None when it has any other parameter (the full route handles those)."""
    if not query:
        return {}
    from urllib.parse import parse_qsl

    params = dict(parse_qsl(query.decode("latin-1"), keep_blank_values=True))
    return params if params.keys() <= {"limit", "after"} else None


def _hot_limit(params: dict[str, str]) -> int | None:
    """`limit` as :func:`_int_param` takes it (default 20, 1..1000); None when it would refuse it."""
    raw = params.get("limit")
    if raw is None or raw == "":
        return 20
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if 1 <= value <= 1000 else None


async def hot_read(store: Store, scope: dict, send: Callable, owner: str) -> bool:
    """The jobs list and a job's events page answered straight from the store, without Starlette's
    router, request objects and exception layers (~20 µs of ~45 per request): the same bytes and
    headers as :func:`list_jobs` and :func:`list_events`. Returns False, having sent nothing, for
    anything else or anything those handlers would answer with an error (unknown job, a bad
    `limit`, a metadata filter, a store error): the full app then answers it as before. Called by
    :class:`Gate` once the key, rate limit and fault injection have let the request through."""
    path = scope["path"]
    if scope.get("root_path"):
        return False
    if path == JOBS_PATH:
        job_id = None
    elif path.startswith(JOBS_PATH + "/") and path.endswith(_EVENTS_SUFFIX):
        job_id = path[len(JOBS_PATH) + 1:-len(_EVENTS_SUFFIX)]
        if not job_id or "/" in job_id:
            return False
    else:
        return False
    params = _hot_params(scope.get("query_string", b""))
    if params is None:
        return False
    limit = _hot_limit(params)
    if limit is None:
        return False
    after = params.get("after") or None
    try:
        if job_id is None:
            rows, more = store.list_jobs(owner, after=after, limit=limit)
        elif after is None:
            page = store.owned_events_page(owner, job_id, limit)
            if page is None:
                return False
            rows, more = page
        else:
            if not store.job_exists(owner, job_id):
                return False
            rows, more = store.list_events(job_id, after=after, limit=limit)
    except sqlite3.Error:  # the full app answers it (a 500 in the API's error shape)
        return False
    body = b'{"object":"list","data":[' + b",".join(rows) + (b'],"has_more":true}' if more else b'],"has_more":false}')
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode("latin-1")), (b"content-type", _JSON_HEADERS)]})
    await send({"type": "http.response.body", "body": body})
    return True


def _too_large(message: str) -> APIError:
    return APIError(413, message, code="request_too_large")


def _bounded(receive: Callable, limit: int, what: str) -> Callable:
    """`receive` that counts the body as it arrives and raises a 413 as soon as it passes `limit`."""
    seen = 0

    async def bounded() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(f"Request body too large (more than {limit:,} bytes): this server accepts {what}.")
        return message

    return bounded


def _presented_key(headers: dict[str, str], only: str | None = None) -> str | None:
    """The key from `Authorization: Bearer` or `X-API-Key` (`only`: just that header, as on the chat paths)."""
    if only in (None, "authorization"):
        auth = headers.get("authorization", "").strip()
        if auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
    if only in (None, "x-api-key"):
        api_key = headers.get("x-api-key", "").strip()
        return api_key or None
    return None


# --------------------------------------------------------------------------- helpers


def _owner(request: Request) -> str:
    return request.scope["state"]["owner"]


def _int_param(request: Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"Invalid value for '{name}': expected an integer, got {raw!r}.", name) from None
    if not low <= value <= high:
        raise bad_request(f"Invalid value for '{name}': must be between {low} and {high} (got {value}).", name)
    return value


def _list_page(data: list[dict[str, Any]], has_more: bool, *, ids: bool = True) -> dict[str, Any]:
    page: dict[str, Any] = {"object": "list", "data": data, "has_more": has_more}
    if ids:
        page["first_id"] = data[0]["id"] if data else None
        page["last_id"] = data[-1]["id"] if data else None
    return page


#: scope key of the idempotency claim (owner, key, route) a handler commits its answer with.
CLAIM = "synth.idempotency_claim"


def idempotent(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Same `Idempotency-Key` + same route → the stored first answer (no second job or file)."""

    async def wrapped(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if not key:
            return await handler(request)
        store: Store = request.app.state.store
        owner = _owner(request)
        route = f"{request.method} {request.url.path}"
        if request.headers.get("content-type", "").startswith("multipart/"):
            fingerprint = "multipart"  # the body is streamed to disk; not read twice
        else:
            fingerprint = hashlib.sha256(await request.body()).hexdigest()
        existing = store.idempotency_begin(owner, key, route, fingerprint)
        if existing is not None:
            if existing["state"] == "pending":
                raise APIError(409, "A request with this Idempotency-Key is still being processed; retry shortly.",
                               code="idempotency_key_in_use", headers={"Retry-After": "1"})
            if existing["fingerprint"] != fingerprint:
                raise APIError(422, "This Idempotency-Key was already used with a different request body.",
                               code="idempotency_key_reused")
            return Response(existing["body"], status_code=existing["status_code"], media_type="application/json",
                            headers={"Idempotent-Replayed": "true"})
        request.scope[CLAIM] = (owner, key, route)
        try:
            try:
                response = await handler(request)
            except APIError as exc:
                response = _error_response(exc)
        except BaseException:
            store.idempotency_release(owner, key, route)
            raise
        if response.status_code >= 500 or response.status_code == 413 or not isinstance(response, JSONResponse):
            store.idempotency_release(owner, key, route)  # not processed: a retry (e.g. to a bigger limit) runs
        else:
            store.idempotency_finish(owner, key, route, response.status_code, bytes(response.body))
        return response

    return wrapped


def _store(request: Request) -> Store:
    return request.app.state.store


def _config(request: Request) -> ServerConfig:
    return request.app.state.config


# --------------------------------------------------------------------------- health


async def health(request: Request) -> Response:
    config = _config(request)
    return _json({"status": "healthy", "simulator": True, "service": "synth-ai serve", "version": __version__,
                  "note": SIMULATOR_NOTE, "step_seconds": config.step_seconds, "time": int(time.time())})


# --------------------------------------------------------------------------- files


@idempotent
async def create_file(request: Request) -> Response:
    store = _store(request)
    try:
        config = _config(request)
        upload = await receive_upload(request.stream(), request.headers.get("content-type", ""), store.tmp_dir,
                                      max_file_bytes=config.max_upload_bytes, max_fields=config.max_form_fields)
    except UploadTooLarge as exc:
        raise _too_large(str(exc)) from None
    except UploadError as exc:
        raise bad_request(str(exc), "file") from None
    except ClientDisconnect:  # the client went away mid-upload; nothing was stored
        raise bad_request("the upload was interrupted before the body was complete", "file") from None
    try:
        purpose = upload.fields.get("purpose")
        if not upload.file_field_seen or upload.path is None:
            raise bad_request("Missing required parameter: 'file' (a multipart file part).", "file")
        if not purpose:
            raise bad_request("Missing required parameter: 'purpose'.", "purpose")
        if purpose not in FILE_PURPOSES:
            raise bad_request(f"Invalid value for 'purpose': {purpose!r}; expected one of {', '.join(FILE_PURPOSES)}.",
                              "purpose")
        expires_at = _expires_at(upload.fields)
        file_id = new_id("file-")
        os.replace(upload.path, store.blob_path(file_id))
        upload.path = None
    finally:
        discard(upload)
    row = store.insert_file(_owner(request), file_id, upload.filename or "upload.jsonl", purpose, upload.size,
                            upload.sha256, expires_at, claim=request.scope.get(CLAIM))
    return _json(file_object(row))


def _expires_at(fields: dict[str, str]) -> int | None:
    anchor = fields.get("expires_after[anchor]")
    seconds = fields.get("expires_after[seconds]")
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise bad_request("expires_after[anchor] must be 'created_at'.", "expires_after.anchor")
    try:
        value = int(seconds or "")
    except ValueError:
        raise bad_request("expires_after[seconds] must be an integer.", "expires_after.seconds") from None
    if not 3600 <= value <= 2_592_000:
        raise bad_request("expires_after[seconds] must be between 3600 and 2592000.", "expires_after.seconds")
    return int(time.time()) + value


async def list_files(request: Request) -> Response:
    order = request.query_params.get("order", "desc")
    if order not in ("asc", "desc"):
        raise bad_request("Invalid value for 'order': expected 'asc' or 'desc'.", "order")
    limit = _int_param(request, "limit", 10_000, 1, 10_000)
    rows, more = _store(request).list_files(_owner(request), purpose=request.query_params.get("purpose"),
                                            limit=limit, order=order, after=request.query_params.get("after"))
    return _json(_list_page([file_object(r) for r in rows], more))


def _file_or_404(request: Request) -> Any:
    file_id = request.path_params["file_id"]
    row = _store(request).get_file(_owner(request), file_id)
    if row is None:
        raise not_found(f"No such File object: {file_id}", "file_id")
    return row


async def retrieve_file(request: Request) -> Response:
    return _json(file_object(_file_or_404(request)))


async def file_content(request: Request) -> Response:
    row = _file_or_404(request)
    path = _store(request).blob_path(row["id"])
    if not path.is_file():
        raise not_found(f"The content of {row['id']} is gone from the data dir.", "file_id")
    return FileResponse(path, media_type="application/octet-stream", filename=row["filename"])


async def delete_file(request: Request) -> Response:
    row = _file_or_404(request)
    _store(request).delete_file(_owner(request), row["id"])
    return _json({"id": row["id"], "object": "file", "deleted": True})


# --------------------------------------------------------------------------- jobs: creation


def _check_hyperparameters(hp: Any, prefix: str) -> dict[str, Any]:
    if hp is None:
        return {}
    if not isinstance(hp, dict):
        raise bad_request(f"'{prefix}' must be an object.", prefix)
    out: dict[str, Any] = {}
    for name, value in hp.items():
        param = f"{prefix}.{name}"
        if name in HYPERPARAMETER_LIMITS:
            low, high = HYPERPARAMETER_LIMITS[name]
            if value == "auto":
                out[name] = value
            elif isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
                out[name] = value
            else:
                raise bad_request(f"Invalid value for '{param}': {value!r}; expected 'auto' or an integer between "
                                  f"{low} and {high}.", param, "invalid_hyperparameters")
        elif name == "learning_rate_multiplier":
            if value == "auto":
                out[name] = value
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 100:
                out[name] = float(value)
            else:
                raise bad_request(f"Invalid value for '{param}': {value!r}; expected 'auto' or a number greater "
                                  "than 0.", param, "invalid_hyperparameters")
        else:
            raise bad_request(f"Unrecognized hyperparameter: '{param}' (n_epochs, batch_size, "
                              "learning_rate_multiplier).", param, "invalid_hyperparameters")
    return out


def _parse_job_request(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    unknown = sorted(k for k in body if k not in JOB_FIELDS)
    if unknown:
        raise bad_request(f"Unrecognized request argument supplied: {', '.join(unknown)}", unknown[0])
    model = body.get("model")
    if not isinstance(model, str) or not model.strip():
        raise bad_request("Missing required parameter: 'model'.", "model")
    training_file = body.get("training_file")
    if not isinstance(training_file, str) or not training_file:
        raise bad_request("Missing required parameter: 'training_file'.", "training_file")
    validation_file = body.get("validation_file")
    if validation_file is not None and (not isinstance(validation_file, str) or not validation_file):
        raise bad_request("'validation_file' must be a file id.", "validation_file")
    suffix = body.get("suffix")
    if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= 64 or ":" in suffix):
        raise bad_request("'suffix' must be 1 to 64 characters, without ':'.", "suffix")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= 2_147_483_647):
        raise bad_request("'seed' must be an integer between 0 and 2147483647.", "seed")
    metadata = body.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > 16 or not all(
                isinstance(k, str) and isinstance(v, str) and len(k) <= 64 and len(v) <= 512
                for k, v in metadata.items()):
            raise bad_request("'metadata' must map up to 16 keys (≤64 characters) to strings (≤512 characters).",
                              "metadata")
    method = body.get("method")
    legacy = body.get("hyperparameters")
    if method is not None and legacy is not None:
        raise bad_request("Pass hyperparameters in 'method' or in the deprecated top-level 'hyperparameters', "
                          "not both.", "hyperparameters")
    if method is not None:
        if not isinstance(method, dict) or method.get("type") not in ("supervised", "dpo", "reinforcement"):
            raise bad_request("'method.type' must be 'supervised', 'dpo' or 'reinforcement'.", "method.type")
        if method["type"] != "supervised":
            raise bad_request(f"This local backend simulates supervised fine-tuning only (got method.type "
                              f"{method['type']!r}).", "method.type", "unsupported_method")
        section = method.get("supervised") or {}
        if not isinstance(section, dict):
            raise bad_request("'method.supervised' must be an object.", "method.supervised")
        hp = _check_hyperparameters(section.get("hyperparameters"), "method.supervised.hyperparameters")
        form = "method"
    else:
        hp = _check_hyperparameters(legacy, "hyperparameters")
        form = "hyperparameters" if legacy is not None else "method"
    return {"model": model.strip(), "training_file": training_file, "validation_file": validation_file,
            "suffix": suffix, "seed": seed, "metadata": metadata, "hyperparameters": hp, "form": form}


async def _checked_file(request: Request, file_id: str, param: str) -> dict[str, Any]:
    store = _store(request)
    row = store.get_file(_owner(request), file_id)
    if row is None:
        raise bad_request(f"Invalid {param}: no such file {file_id}.", param, "file_not_found")
    if row["purpose"] != "fine-tune":
        raise bad_request(f"Invalid {param}: {file_id} was uploaded with purpose {row['purpose']!r}; fine-tuning "
                          "needs purpose 'fine-tune'.", param, f"invalid_{param}")
    if row["report"] is not None:
        report = json.loads(row["report"])
    else:
        path = store.blob_path(file_id)
        report = await run_in_threadpool(inspect_file, path)
        await run_in_threadpool(store.set_file_report, file_id, report)
    if not report["valid"]:
        raise bad_request(f"Invalid {param} {file_id} ({row['filename']}): not valid fine-tuning data: "
                          f"{describe_errors(report['errors'])}.", param, f"invalid_{param}")
    return report


@idempotent
async def create_job(request: Request) -> Response:
    body = parse_json(await request.body())
    spec = _parse_job_request(body)
    store = _store(request)
    config = _config(request)
    owner = _owner(request)
    report = await _checked_file(request, spec["training_file"], "training_file")
    if spec["validation_file"]:
        await _checked_file(request, spec["validation_file"], "validation_file")
    balance = config.credit_cents - sum(store.spent_cents(owner).values())
    if balance <= 0:
        raise APIError(402, f"Your balance is ${balance / 100:.2f}: the credit of this local backend is used up "
                            "(start it with a larger --credit-usd).", type="insufficient_quota",
                       code="insufficient_quota")
    hp = simulate.resolve_hyperparameters(report["n_examples"], spec["hyperparameters"])
    job_id = new_id("ftjob-")
    seed = spec["seed"]
    if seed is None:
        seed = (random.Random(f"{config.seed}:{job_id}").randrange(2_147_483_647) if config.seed is not None
                else secrets.randbelow(2_147_483_647))
    created = int(time.time())
    row = {
        "id": job_id, "owner": owner, "model": spec["model"], "training_file": spec["training_file"],
        "validation_file": spec["validation_file"], "suffix": spec["suffix"], "seed": seed,
        "metadata": json.dumps(spec["metadata"]) if spec["metadata"] is not None else None,
        "request_form": spec["form"], "n_epochs": hp.n_epochs, "batch_size": hp.batch_size,
        "learning_rate_multiplier": hp.learning_rate_multiplier, "status": "validating_files",
        "created_at": created, "n_examples": report["n_examples"], "example_tokens": report["tokens"],
        "total_steps": simulate.total_steps(report["n_examples"], hp), "step": 0,
        "next_at": time.time() + config.step_seconds, "samples": json.dumps(report["samples"]),
    }
    validating = f"Validating training file: {spec['training_file']}"
    if spec["validation_file"]:
        validating += f" and validation file: {spec['validation_file']}"
    events = [("info", f"Created fine-tuning job: {job_id}", "message", {}), ("info", validating, "message", {})]
    events += [("warn", f"Training file: {w}", "message", {}) for w in report.get("warnings", [])]
    body = store.insert_job(row, events, claim=request.scope.get(CLAIM))
    request.app.state.engine.wake()
    return _json(body.encode("utf-8"))


# --------------------------------------------------------------------------- jobs: reading


def _job_or_404(request: Request) -> dict[str, str]:
    job_id = request.path_params["job_id"]
    if not _store(request).job_exists(_owner(request), job_id):
        raise not_found(f"No fine-tuning job found with id {job_id}.", "fine_tuning_job_id")
    return {"id": job_id}


async def list_jobs(request: Request) -> Response:
    limit = _int_param(request, "limit", 20, 1, 1000)
    metadata = {}
    for name, value in request.query_params.multi_items():
        if name.startswith("metadata[") and name.endswith("]"):
            metadata[name[len("metadata["):-1]] = value
    rows, more = _store(request).list_jobs(_owner(request), after=request.query_params.get("after"), limit=limit,
                                           metadata=metadata)
    return _json_list(rows, more)


async def retrieve_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    text = _store(request).job_json(_owner(request), job_id)
    if text is None:
        raise not_found(f"No fine-tuning job found with id {job_id}.", "fine_tuning_job_id")
    return _json(text.encode("utf-8"))


@idempotent
async def cancel_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    outcome, row = engine_mod.cancel(_store(request), _owner(request), job_id)
    if outcome == "missing":
        raise not_found(f"No fine-tuning job found with id {job_id}.", "fine_tuning_job_id")
    if outcome == "finished":
        raise bad_request(f"Job {job_id} has already {row['status']}: only running jobs can be cancelled.",
                          "fine_tuning_job_id", "job_not_cancellable")
    return _json(_store(request).job_json(_owner(request), job_id).encode("utf-8"))


@idempotent
async def pause_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    outcome, status = engine_mod.pause(_store(request), _owner(request), job_id)
    if outcome == "missing":
        raise not_found(f"No fine-tuning job found with id {job_id}.", "fine_tuning_job_id")
    if outcome == "refused":
        raise bad_request(f"Job {job_id} is {status}: only running jobs can be paused.", "fine_tuning_job_id",
                          "job_not_pausable")
    return _json(_store(request).job_json(_owner(request), job_id).encode("utf-8"))


@idempotent
async def resume_job(request: Request) -> Response:
    job_id = request.path_params["job_id"]
    outcome, status = engine_mod.resume(_store(request), _owner(request), job_id, _config(request).step_seconds)
    if outcome == "missing":
        raise not_found(f"No fine-tuning job found with id {job_id}.", "fine_tuning_job_id")
    if outcome == "refused":
        raise bad_request(f"Job {job_id} is {status}: only paused jobs can be resumed.", "fine_tuning_job_id",
                          "job_not_resumable")
    request.app.state.engine.wake()
    return _json(_store(request).job_json(_owner(request), job_id).encode("utf-8"))


async def list_events(request: Request) -> Response:
    job = _job_or_404(request)
    limit = _int_param(request, "limit", 20, 1, 1000)
    rows, more = _store(request).list_events(job["id"], after=request.query_params.get("after"), limit=limit)
    return _json_list(rows, more)


async def list_checkpoints(request: Request) -> Response:
    job = _job_or_404(request)
    limit = _int_param(request, "limit", 10, 1, 1000)
    rows, more = _store(request).list_checkpoints(job["id"], after=request.query_params.get("after"), limit=limit)
    return _json(_list_page([checkpoint_object(r) for r in rows], more))


async def list_predictions(request: Request) -> Response:
    job = _job_or_404(request)
    epoch = _int_param(request, "epoch", None, 0, 1_000_000)
    limit = _int_param(request, "limit", 50, 1, 1000)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    store = _store(request)
    rows, total = store.list_predictions(job["id"], epoch=epoch, limit=limit, offset=offset)
    return _json({"job_id": job["id"], "predictions": [prediction_object(r) for r in rows], "total_count": total,
                  "epoch_count": len(store.prediction_epochs(job["id"]))})


async def prediction_epochs(request: Request) -> Response:
    job = _job_or_404(request)
    rows = _store(request).prediction_epochs(job["id"])
    return _json({"job_id": job["id"], "epochs": [{"epoch": r["epoch"], "prediction_count": r["prediction_count"],
                                                   "latest_step": r["latest_step"]} for r in rows]})


async def prediction_trends(request: Request) -> Response:
    job = _job_or_404(request)
    rows = [dict(r) for r in _store(request).all_predictions(job["id"])]
    items, improvement = simulate.trends(rows)
    return _json({"job_id": job["id"], "trends": items, "overall_improvement": improvement})


# --------------------------------------------------------------------------- account


def _spend(store: Store, owner: str, since: int | None) -> dict[str, int]:
    spent = store.spent_cents(owner, since)
    return {"token_spend_cents": spent["tokens"], "gpu_spend_cents": spent["gpu"],
            "total_spend_cents": spent["tokens"] + spent["gpu"]}


async def balance_current(request: Request) -> Response:
    config = _config(request)
    spent = _spend(_store(request), _owner(request), None)["total_spend_cents"]
    cents = config.credit_cents - spent
    return _json({"balance_cents": cents, "balance_dollars": round(cents / 100, 2), "currency": "usd",
                  "credit_cents": config.credit_cents, "spent_cents": spent})


async def usage_windows(request: Request) -> Response:
    raw = request.query_params.get("hours") or "24,168"
    hours: list[int] = []
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 24 * 366 * 10:
            raise bad_request(f"Invalid value for 'hours': {part!r}; expected comma-separated hours, e.g. 24,168.",
                              "hours")
        hours.append(int(part))
    if not hours:
        raise bad_request("Invalid value for 'hours': expected comma-separated hours, e.g. 24,168.", "hours")
    now = int(time.time())
    store, owner = _store(request), _owner(request)
    return _json({"windows": [{"window_hours": h, **_spend(store, owner, now - h * 3600)} for h in hours]})


async def usage(request: Request) -> Response:
    store, owner = _store(request), _owner(request)
    now = datetime.now(timezone.utc)
    month_start = int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())
    since_30 = int(now.timestamp()) - 30 * 86400
    body: dict[str, Any] = {"current_month": _spend(store, owner, month_start),
                            "last_30_days": _spend(store, owner, since_30)}
    models = list(dict.fromkeys(m for m in request.query_params.getlist("model") if m))
    if models:
        per_model = store.usage_by_model(owner, models, since_30)
        body["models"] = [{"model": m, **per_model[m]} for m in models]
    return _json(body)


# --------------------------------------------------------------------------- errors


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        return _json(error_body(f"Invalid URL ({request.method} {request.url.path})", code="unknown_url"), 404)
    if exc.status_code == 405:
        return _json(error_body(f"Method {request.method} is not allowed for {request.url.path}",
                                code="method_not_allowed"), 405)
    return _json(error_body(str(exc.detail)), exc.status_code)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return _error_response(exc)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return _json(error_body(f"The server had an error while processing your request ({type(exc).__name__}).",
                            type="server_error"), 500)


# --------------------------------------------------------------------------- the app


def _flat(items: list) -> list:
    """The routes with each Mount of plain routes written out (its prefix in their paths, order
    kept): Starlette would otherwise match every request against the Mount, then again inside it."""
    out: list = []
    for item in items:
        if isinstance(item, Mount) and all(isinstance(r, Route) for r in item.routes):
            out += [Route(item.path + r.path, r.endpoint, methods=sorted(r.methods or ()), name=r.name)
                    for r in item.routes]
        else:
            out.append(item)
    return out


def routes() -> list:
    """The one list of routes and mounts (another API goes in as its own Mount or module routes).
    Starlette tries them in order: the reads a polling client repeats come first."""
    api = [
        Route("/fine_tuning/jobs/{job_id}/events", list_events, methods=["GET"]),
        Route("/fine_tuning/jobs/{job_id}", retrieve_job, methods=["GET"]),
        Route("/fine_tuning/jobs", list_jobs, methods=["GET"]),
        *chat.routes(),  # the simulated model: /chat/completions (OpenAI), /messages (Anthropic)
        Route("/health", health, methods=["GET"]),
        Route("/files", create_file, methods=["POST"]),
        Route("/files", list_files, methods=["GET"]),
        Route("/files/{file_id}", retrieve_file, methods=["GET"]),
        Route("/files/{file_id}", delete_file, methods=["DELETE"]),
        Route("/files/{file_id}/content", file_content, methods=["GET"]),
        Route("/fine_tuning/jobs", create_job, methods=["POST"]),
        Route("/fine_tuning/jobs/{job_id}/cancel", cancel_job, methods=["POST"]),
        Route("/fine_tuning/jobs/{job_id}/pause", pause_job, methods=["POST"]),
        Route("/fine_tuning/jobs/{job_id}/resume", resume_job, methods=["POST"]),
        Route("/fine_tuning/jobs/{job_id}/checkpoints", list_checkpoints, methods=["GET"]),
        Route("/fine_tuning/jobs/{job_id}/predictions", list_predictions, methods=["GET"]),
        Route("/fine_tuning/jobs/{job_id}/predictions/epochs", prediction_epochs, methods=["GET"]),
        Route("/fine_tuning/jobs/{job_id}/predictions/trends", prediction_trends, methods=["GET"]),
        Route("/balance/current", balance_current, methods=["GET"]),
        Route("/balance/usage/windows", usage_windows, methods=["GET"]),
        Route("/balance/usage", usage, methods=["GET"]),
    ]
    return [Route("/health", health, methods=["GET"]), Mount("/v1", routes=api),
            Mount(together.PREFIX, routes=together.routes())]  # Together's API: devserver/together.py


def create_app(config: ServerConfig, *, store: Store | None = None) -> Any:
    """The ASGI app (Starlette wrapped in :class:`Gate`). Opens the store; the engine runs with the app's lifespan."""
    store = store or Store(config.data_dir)
    engine = Engine(store, step_seconds=config.step_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        engine.start()
        try:
            yield
        finally:
            engine.stop()

    app = Starlette(routes=_flat(routes()), lifespan=lifespan,
                    exception_handlers={HTTPException: _http_exception, APIError: _api_error, Exception: _unexpected})
    app.state.store = store
    app.state.config = config
    app.state.engine = engine
    gate = Gate(app, config, store)
    gate.state = app.state  # type: ignore[attr-defined]
    return gate
