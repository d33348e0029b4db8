"""Trace the Chat Completions calls an `openai` client makes, without changing the caller's code.

```python
from openai import OpenAI
from synth_cli.tracing.openai_wrap import trace_openai

client = trace_openai(OpenAI(), tracer, system_instance_id="agent")
with tracer.session():
    with tracer.timestep("step_0"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])            # traced
        for chunk in client.chat.completions.create(..., stream=True): ...              # traced too
```

`trace_openai` patches `client.chat.completions.create` on that client object only
(`openai.OpenAI` or `openai.AsyncOpenAI`); the caller receives exactly what the SDK
returns (streams are passed through chunk by chunk). Each call becomes an
`LLMCallRecord` (failed calls too, via :func:`record_error`) handed to `on_record`
and, when the tracer has an active session, written as a `cais` event. Calls made
outside a session reach only `on_record`. A failure while *recording* never breaks
the call: it is reported with `warnings.warn`. A stream the caller abandons early
is recorded with what arrived, marked `metadata["stream_incomplete"] = True`.
`with_raw_response` and `.parse()` are not traced.

`openai` is never imported here: it is an optional extra, and the client is passed in.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from datetime import datetime, timezone
from typing import Any, Callable

from synth_cli.tracing.models import LLMCallRecord
from synth_cli.tracing.capture.errors import record_error
from synth_cli.tracing.capture.openai import record_from_openai_chat, record_from_openai_chat_stream

_SDK_ONLY = ("extra_headers", "extra_query", "timeout")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _is_sentinel(value: Any) -> bool:
    return type(value).__name__ in ("NotGiven", "Omit")


def _request(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if k not in _SDK_ONLY and not _is_sentinel(v)}


class _Sink:
    def __init__(self, tracer: Any, on_record: Callable[[LLMCallRecord], Any] | None, system_instance_id: str,
                 provider: str | None, keep_chunks: bool):
        self.tracer = tracer
        self.on_record = on_record
        self.system_instance_id = system_instance_id
        self.provider = provider
        self.keep_chunks = keep_chunks
        self.records_written = 0

    def emit(self, build: Callable[[], LLMCallRecord]) -> None:
        try:
            record = build()
            if self.on_record is not None:
                self.on_record(record)
            tracer = self.tracer
            if tracer is not None and getattr(tracer, "current_session_id", None) is not None:
                tracer.record_llm_call(record, system_instance_id=self.system_instance_id)
                self.records_written += 1
        except Exception as exc:  # noqa: BLE001 - tracing must never break the traced call
            warnings.warn(f"synth-ai: could not record an OpenAI call ({type(exc).__name__}: {exc})",
                          RuntimeWarning, stacklevel=3)


class _StreamRecorder:
    """Collects chunks as the caller reads them and records the call once, at the end."""

    def __init__(self, request: dict[str, Any], started: datetime, sink: _Sink):
        self.request = request
        self.started = started
        self.sink = sink
        self.chunks: list[Any] = []
        self.times: list[datetime] = []
        self.done = False

    def chunk(self, chunk: Any) -> None:
        self.chunks.append(chunk)
        self.times.append(_now())

    def finish(self, error: BaseException | None = None, *, incomplete: bool = False) -> None:
        if self.done:
            return
        self.done = True
        completed = _now()
        if error is not None:
            self.sink.emit(lambda: record_error(self.request, error, started_at=self.started, completed_at=completed,
                                                provider=self.sink.provider))
            return

        def build() -> LLMCallRecord:
            record = record_from_openai_chat_stream(
                self.request, self.chunks, started_at=self.started, completed_at=completed,
                provider=self.sink.provider, keep_chunks=self.sink.keep_chunks, chunk_times=self.times)
            if incomplete:
                record.metadata["stream_incomplete"] = True
            return record

        self.sink.emit(build)


class TracedStream:
    """Wraps `openai.Stream`: iterate it as usual; everything else is delegated to the real stream."""

    def __init__(self, stream: Any, recorder: _StreamRecorder):
        self._stream = stream
        self._recorder = recorder
        self._iterator = self._iterate()

    def _iterate(self):
        try:
            for chunk in self._stream:
                self._recorder.chunk(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._recorder.finish(exc)
            raise
        self._recorder.finish()

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._iterator)

    def __enter__(self) -> "TracedStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._recorder.finish(incomplete=True)
        self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class AsyncTracedStream:
    """Wraps `openai.AsyncStream` the same way."""

    def __init__(self, stream: Any, recorder: _StreamRecorder):
        self._stream = stream
        self._recorder = recorder
        self._iterator = self._iterate()

    async def _iterate(self):
        try:
            async for chunk in self._stream:
                self._recorder.chunk(chunk)
                yield chunk
        except GeneratorExit:
            raise
        except BaseException as exc:
            self._recorder.finish(exc)
            raise
        self._recorder.finish()

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._iterator.__anext__()

    async def __aenter__(self) -> "AsyncTracedStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def close(self) -> None:
        self._recorder.finish(incomplete=True)
        await self._stream.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def trace_openai(client: Any, tracer: Any = None, *, system_instance_id: str = "llm",
                 on_record: Callable[[LLMCallRecord], Any] | None = None, provider: str | None = None,
                 keep_chunks: bool = False) -> Any:
    """Trace `client.chat.completions.create` (sync or async client); returns the same client.

    `tracer`: a :class:`~synth_cli.tracing.tracer.SessionTracer` (records go to its active
    session); `on_record(record)`: called with every record; `provider`: the provider name to
    record (default "openai"; set it for OpenAI-compatible servers); `keep_chunks`: keep
    streamed chunks in the record. Calling it twice on a client is harmless.
    """
    completions = client.chat.completions
    if getattr(completions, "_synth_traced", False):
        return client
    original = completions.create
    sink = _Sink(tracer, on_record, system_instance_id, provider, keep_chunks)

    def record_result(request: dict[str, Any], started: datetime, result: Any, stream: bool) -> Any:
        if stream:
            recorder = _StreamRecorder(request, started, sink)
            is_async = hasattr(result, "__aiter__") and not hasattr(result, "__iter__")
            return AsyncTracedStream(result, recorder) if is_async else TracedStream(result, recorder)
        completed = _now()
        sink.emit(lambda: record_from_openai_chat(request, result, started_at=started, completed_at=completed,
                                                  provider=provider))
        return result

    def record_failure(request: dict[str, Any], started: datetime, exc: BaseException) -> None:
        completed = _now()
        sink.emit(lambda: record_error(request, exc, started_at=started, completed_at=completed, provider=provider))

    async def finish_async(pending: Any, request: dict[str, Any], started: datetime, stream: bool) -> Any:
        try:
            result = await pending
        except BaseException as exc:
            record_failure(request, started, exc)
            raise
        return record_result(request, started, result, stream)

    @functools.wraps(original)
    def create(*args: Any, **kwargs: Any) -> Any:
        request = _request(kwargs)
        stream = kwargs.get("stream") is True
        started = _now()
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            record_failure(request, started, exc)
            raise
        if inspect.isawaitable(result):  # AsyncOpenAI: the caller awaits us
            return finish_async(result, request, started, stream)
        return record_result(request, started, result, stream)

    completions.create = create
    completions._synth_original_create = original
    completions._synth_traced = True
    completions._synth_sink = sink
    return client


def untrace_openai(client: Any) -> Any:
    """Undo :func:`trace_openai` on `client`."""
    completions = client.chat.completions
    original = getattr(completions, "_synth_original_create", None)
    if original is not None:
        for name in ("create", "_synth_original_create", "_synth_traced", "_synth_sink"):
            completions.__dict__.pop(name, None)
    return client


wrap_openai = trace_openai

__all__ = ["AsyncTracedStream", "TracedStream", "trace_openai", "untrace_openai", "wrap_openai"]
