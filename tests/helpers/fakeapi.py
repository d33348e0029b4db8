"""A small scriptable OpenAI-style fine-tuning API on 127.0.0.1, for client tests.

The real local backend (`synth-ai serve`, tests/helpers/devserver.py) is what the end-to-end tests use;
this one exists for what a real server cannot be asked to do on cue: fail exactly the next N
requests with a chosen status and `Retry-After`, answer with an HTTP-date `Retry-After`, list
events newest first like OpenAI does, or record every request's headers and body for contract
checks. Jobs advance one step per `GET /fine_tuning/jobs/{id}`, so following one is deterministic.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

KEY = "sk-test-fakeapi-0123456789abcdef"


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    json: Any = None
    form: dict[str, Any] | None = None
    raw_path: str = ""


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    method: str | None = None
    path_prefix: str | None = None
    after_handling: bool = False  # do the work (e.g. create the job), then answer with the fault anyway


class FakeApi:
    def __init__(self, *, order: str = "asc", steps: int = 4, key: str = KEY, same_second: bool = False):
        self.order = order
        self.same_second = same_second  # every event gets the same created_at (order cannot be read off times)
        self.steps = steps
        self.key = key
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.jobs: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.idempotency: dict[str, tuple[int, Any]] = {}
        self.hold: dict[str, bool] = {}  # job id -> do not advance
        self.clock = int(time.time())
        self.lock = threading.Lock()
        self._n = 0

    # -- scripting --------------------------------------------------------------------
    def fail_next(self, count: int, status: int, *, headers: dict[str, str] | None = None, body: Any = None,
                  method: str | None = None, path_prefix: str | None = None, after_handling: bool = False) -> None:
        for _ in range(count):
            self.faults.append(Fault(status, dict(headers or {}), body, method, path_prefix, after_handling))

    def calls(self, method: str | None = None, path: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if (method is None or r.method == method)
                and (path is None or r.path == path or (path.endswith("*") and r.path.startswith(path[:-1])))]

    # -- state ------------------------------------------------------------------------
    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}-{self._n:06d}"

    def _event(self, job_id: str, message: str, *, level: str = "info", type_: str = "message",
               data: dict | None = None) -> None:
        if not self.same_second:
            self.clock += 1  # strictly increasing timestamps, one second apart
        self.events[job_id].append({"object": "fine_tuning.job.event", "id": self._id("ftevent"),
                                    "created_at": self.clock, "level": level, "message": message,
                                    "type": type_, "data": data or {}})

    def _advance(self, job: dict[str, Any]) -> None:
        if self.hold.get(job["id"]) or job["status"] in ("succeeded", "failed", "cancelled", "paused"):
            return
        jid = job["id"]
        if job["status"] == "validating_files":
            job["status"] = "queued"
            self._event(jid, "Validated training file; job queued")
        elif job["status"] == "queued":
            job["status"] = "running"
            self._event(jid, "Fine-tuning job started")
        elif job["status"] == "running":
            step = job.setdefault("_step", 0) + 1
            job["_step"] = step
            if "fail" in str(job["model"]) and step >= 2:
                job["status"] = "failed"
                job["finished_at"] = self.clock
                job["error"] = {"code": "invalid_training_file", "param": "training_file",
                                "message": "Line 3: assistant message missing"}
                self._event(jid, "Training failed: Line 3: assistant message missing", level="error")
                return
            loss = round(2.0 / (1 + step), 4)
            self._event(jid, f"Step {step}/{self.steps}: training loss={loss}", type_="metrics",
                        data={"step": step, "total_steps": self.steps, "train_loss": loss})
            if step >= self.steps:
                job["status"] = "succeeded"
                job["fine_tuned_model"] = f"ft:{job['model']}:synth:{jid}"
                job["trained_tokens"] = 1234
                job["finished_at"] = self.clock
                self._event(jid, "The job has successfully completed")

    def public(self, job: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in job.items() if not k.startswith("_")}

    # -- the ASGI app -----------------------------------------------------------------
    def app(self):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        api = self

        def err(status: int, message: str, code: str | None = None) -> JSONResponse:
            return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": None,
                                           "code": code}}, status_code=status)

        async def handle(request: Request) -> Response:
            body = await request.body()
            path = request.url.path
            rec = Recorded(request.method, path, dict(request.query_params), {k.lower(): v for k, v in request.headers.items()},
                           body, raw_path=request.scope.get("raw_path", b"").decode("latin-1"))
            ctype = request.headers.get("content-type", "")
            if ctype.startswith("application/json") and body:
                try:
                    rec.json = json.loads(body)
                except ValueError:
                    rec.json = None
            if ctype.startswith("multipart/form-data"):
                from starlette.datastructures import UploadFile

                form = await request.form()
                rec.form = {}
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        data = await value.read()
                        rec.form[name] = {"filename": value.filename, "size": len(data),
                                          "content_type": value.content_type, "head": data[:200]}
                    else:
                        rec.form[name] = value
            with api.lock:
                api.requests.append(rec)
                fault = None
                for i, f in enumerate(api.faults):
                    if (f.method is None or f.method == request.method) and (
                            f.path_prefix is None or path.startswith(f.path_prefix)):
                        fault = api.faults.pop(i)
                        break
            if fault is not None and not fault.after_handling:
                content = fault.body if fault.body is not None else {"error": {"message": f"injected {fault.status}",
                                                                                  "type": "server_error"}}
                return JSONResponse(content, status_code=fault.status, headers=fault.headers)
            if path in ("/health", "/v1/health"):
                return JSONResponse({"status": "healthy"})
            auth = request.headers.get("authorization", "")
            if auth != f"Bearer {api.key}":
                shown = auth.removeprefix("Bearer ")
                return err(401, f"Incorrect API key provided: {shown}", "invalid_api_key")
            idem = request.headers.get("idempotency-key")
            if request.method == "POST" and idem and idem in api.idempotency:
                status, content = api.idempotency[idem]
                return JSONResponse(content, status_code=status)
            with api.lock:
                status, content = api.route(request.method, path, rec)
            if request.method == "POST" and idem and status < 500:
                api.idempotency[idem] = (status, content)
            if fault is not None:  # the work is done, but the answer is lost
                return JSONResponse({"error": {"message": f"injected {fault.status} after handling"}},
                                    status_code=fault.status, headers=fault.headers)
            return JSONResponse(content, status_code=status)

        return Starlette(routes=[Route("/{path:path}", handle, methods=["GET", "POST", "DELETE"])])

    def route(self, method: str, path: str, rec: Recorded) -> tuple[int, Any]:
        parts = [p for p in path.split("/") if p]
        if not parts or parts[0] != "v1":
            return 404, {"detail": "Not Found"}
        parts = parts[1:]
        q = rec.query
        if parts == ["files"] and method == "POST":
            if not rec.form or "file" not in rec.form or rec.form.get("purpose") != "fine-tune":
                return 400, {"error": {"message": "file and purpose=fine-tune are required", "code": "invalid"}}
            fid = self._id("file")
            info = rec.form["file"]
            obj = {"id": fid, "object": "file", "bytes": info["size"], "created_at": self.clock,
                   "filename": info["filename"], "purpose": "fine-tune", "status": "processed"}
            self.files[fid] = obj
            return 200, obj
        if parts[:1] == ["files"] and len(parts) == 2 and method == "GET":
            obj = self.files.get(parts[1])
            return (200, obj) if obj else (404, {"error": {"message": f"No such File object: {parts[1]}"}})
        if parts == ["fine_tuning", "jobs"] and method == "POST":
            body = rec.json or {}
            if body.get("training_file") not in self.files:
                return 400, {"error": {"message": f"invalid training_file: {body.get('training_file')}",
                                       "param": "training_file", "code": "invalid_file"}}
            jid = self._id("ftjob")
            method_ = body.get("method") or {"type": "supervised",
                                              "supervised": {"hyperparameters": body.get("hyperparameters") or {}}}
            job = {"object": "fine_tuning.job", "id": jid, "model": body.get("model"), "created_at": self.clock,
                   "finished_at": None, "fine_tuned_model": None, "organization_id": "org-fake",
                   "result_files": [], "status": "validating_files", "validation_file": body.get("validation_file"),
                   "training_file": body["training_file"], "hyperparameters": (method_.get("supervised") or {}).get(
                       "hyperparameters", {}), "trained_tokens": None, "error": None, "seed": body.get("seed", 0),
                   "method": method_, "metadata": body.get("metadata")}
            self.jobs[jid] = job
            self.events[jid] = []
            self._event(jid, f"Created fine-tuning job: {jid}")
            return 200, self.public(job)
        if parts == ["fine_tuning", "jobs"] and method == "GET":
            jobs = sorted(self.jobs.values(), key=lambda j: j["id"], reverse=True)
            if q.get("after"):
                ids = [j["id"] for j in jobs]
                jobs = jobs[ids.index(q["after"]) + 1:] if q["after"] in ids else []
            limit = int(q.get("limit", 20))
            return 200, {"object": "list", "data": [self.public(j) for j in jobs[:limit]],
                         "has_more": len(jobs) > limit}
        if parts[:2] == ["fine_tuning", "jobs"] and len(parts) >= 3:
            job = self.jobs.get(parts[2])
            if job is None:
                return 404, {"error": {"message": f"No such fine-tuning job: {parts[2]}", "code": "not_found"}}
            rest = parts[3:]
            if not rest and method == "GET":
                self._advance(job)
                return 200, self.public(job)
            if rest == ["cancel"] and method == "POST":
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return 400, {"error": {"message": f"Job {job['id']} is already {job['status']}"}}
                job["status"] = "cancelled"
                job["finished_at"] = self.clock
                self._event(job["id"], "Job cancelled")
                return 200, self.public(job)
            if rest in (["pause"], ["resume"]) and method == "POST":
                want, wrong = ("running", "paused") if rest == ["pause"] else ("paused", "running")
                if job["status"] != want:
                    return 400, {"error": {"message": f"Job {job['id']} is {job['status']}, not {want}"}}
                job["status"] = wrong
                self._event(job["id"], f"Job {'paused' if rest == ['pause'] else 'resumed'}")
                return 200, self.public(job)
            if rest == ["events"] and method == "GET":
                events = list(self.events[job["id"]])
                if self.order == "desc":
                    events.reverse()
                if q.get("after"):
                    ids = [e["id"] for e in events]
                    events = events[ids.index(q["after"]) + 1:] if q["after"] in ids else []
                limit = int(q.get("limit", 20))
                return 200, {"object": "list", "data": events[:limit], "has_more": len(events) > limit}
            if rest == ["checkpoints"] and method == "GET":
                data = [{"object": "fine_tuning.job.checkpoint", "id": f"ftckpt-{job['id']}-1", "created_at": self.clock,
                         "fine_tuned_model_checkpoint": f"ft:{job['model']}:synth:{job['id']}:ckpt-step-2",
                         "fine_tuning_job_id": job["id"], "step_number": 2,
                         "metrics": {"step": 2, "train_loss": 0.5}}]
                return 200, {"object": "list", "data": data, "has_more": False, "first_id": data[0]["id"],
                             "last_id": data[0]["id"]}
            if rest == ["predictions"] and method == "GET":
                preds = [p for p in self.predictions(job["id"]) if "epoch" not in q or p["epoch"] == int(q["epoch"])]
                offset, limit = int(q.get("offset", 0)), int(q.get("limit", 50))
                return 200, {"job_id": job["id"], "predictions": preds[offset:offset + limit],
                             "total_count": len(preds), "epoch_count": 2}
            if rest == ["predictions", "trends"] and method == "GET":
                return 200, {"job_id": job["id"], "overall_improvement": 0.5, "trends": [
                    {"epoch": e, "step": 2 * e, "sample_count": 2, "avg_exact_match": 0.5 * (e - 1),
                     "avg_char_error_rate": 0.6 / e, "avg_length_ratio": 1.0, "avg_word_overlap": 0.4 * e,
                     "min_char_error_rate": 0.1, "max_char_error_rate": 0.9, "validation_pass_rate": 1.0}
                    for e in (1, 2)]}
        return 404, {"detail": "Not Found"}

    def predictions(self, job_id: str) -> list[dict[str, Any]]:
        return [{"id": f"pred-{e}-{i}", "epoch": e, "step": 2 * e, "sample_index": i, "prompt": f"prompt {i}",
                 "ground_truth": f"answer {i}", "prediction": f"answer {i}" if e == 2 else f"guess {i}",
                 "exact_match": e == 2, "char_error_rate": 0.0 if e == 2 else 0.5, "length_ratio": 1.0,
                 "word_overlap": 1.0 if e == 2 else 0.5, "prompt_tokens": 3, "completion_tokens": 2,
                 "latency_ms": 10, "created_at": self.clock} for e in (1, 2) for i in range(2)]


@dataclass
class Running:
    api: FakeApi
    base_url: str
    port: int
    server: Any
    thread: threading.Thread


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve_fake(api: FakeApi | None = None, *, port: int = 0, **kwargs: Any) -> Iterator[Running]:
    """Run a FakeApi with uvicorn in a thread on a free 127.0.0.1 port (or `port`)."""
    import uvicorn

    api = api or FakeApi(**kwargs)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.app(), log_level="error", lifespan="off"))

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("fake API did not start")
        time.sleep(0.01)
    try:
        yield Running(api, f"http://127.0.0.1:{port}/v1", port, server, thread)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
