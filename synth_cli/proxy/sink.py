"""The proxy's one adapter to the trace writer: a finished session in, a session in the DB out.

Writes through :class:`synth_cli.tracing.tracer.SessionTracer` (no SQL here). Each proxied
call is a timestep `call_<n>` (turn number n) holding one `cais` event; environment events
posted for the session go into the timestep of the call before them (or the session itself
before any call). A session id already in the DB (the same id used again after its session
was written, or by an earlier run) is written as `<id>.2`, `<id>.3`, ... with
`metadata.proxy_session_id` naming the id the client used.

A session the DB refuses is appended to the spool file (one JSON line per session) instead;
:meth:`TraceSink.replay_spool` writes spooled sessions of the same DB at the next start and
keeps the ones that still fail. Used by one writer thread at a time (in the recording process;
the proxy's own for the spool replay at start and if that process dies); never prints.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from synth_cli.errors import TraceStoreError

SYSTEM_ID = "proxy"
ENV_SYSTEM_ID = "environment"
MAX_PARTS = 1000


@dataclass
class SessionData:
    """A session the proxy has collected, ready to write. `entries`: ("call", LLMCallRecord) or
    ("environment", dict with reward/terminated/truncated/metadata/event_time)."""

    session_id: str
    created_at: datetime
    experiment_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    entries: list[tuple[str, Any]] = field(default_factory=list)
    last_activity: float = 0.0

    @property
    def calls(self) -> int:
        return sum(1 for kind, _ in self.entries if kind == "call")

    def to_json(self, target: str) -> dict[str, Any]:
        return {"target": target, "session_id": self.session_id, "created_at": self.created_at.isoformat(),
                "experiment_id": self.experiment_id, "metadata": self.metadata,
                "entries": [[kind, obj.to_dict() if kind == "call" else obj] for kind, obj in self.entries]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SessionData:
        from synth_cli.tracing.models import LLMCallRecord

        entries = [(kind, LLMCallRecord.from_dict(obj) if kind == "call" else obj) for kind, obj in data["entries"]]
        return cls(session_id=data["session_id"], created_at=datetime.fromisoformat(data["created_at"]),
                   experiment_id=data.get("experiment_id"), metadata=data.get("metadata") or {}, entries=entries)


class TraceSink:
    """Writes :class:`SessionData` to `target`; spools what cannot be written to `spool_path`."""

    def __init__(self, target: str | None, spool_path: str | os.PathLike,
                 notify: Callable[[str], Any] | None = None):
        self._target = target  # None: the tracer's default ($SYNTH_TRACES_DB, else ./synth_ai.db)
        self.spool_path = Path(spool_path)
        self._notify = notify  # the tracer's own warnings (a session it spooled, spooled ones it wrote)
        self.created_experiments: set[str] = set()
        self.tracer = self._open()  # TraceStoreError when the target is unusable: the caller reports it
        path = getattr(self.tracer, "path", None)
        self.target = str(Path(path).resolve()) if path else str(getattr(self.tracer, "label", target))

    def _open(self):
        from synth_cli.tracing.tracer import SessionTracer

        return SessionTracer(self._target, on_warning=self._notify)

    @property
    def location(self) -> str:
        path = getattr(self.tracer, "path", None)
        return str(path) if path else self.target

    def close(self) -> None:
        self.tracer.close()

    # -- writing ----------------------------------------------------------------------------
    def write(self, session: SessionData) -> tuple[str, bool]:
        """Write the session: (the id it was written under, whether the tracer kept it in a spool of
        its own instead: a tracer that retries a busy DB and then spools counts that in
        `sessions_spooled`). Raises TraceStoreError (or another error) when it was not written."""
        tracer = self.tracer
        spooled_before = getattr(tracer, "sessions_spooled", None)
        session_id, metadata = session.session_id, dict(session.metadata)
        part = 1
        while True:
            try:
                tracer.start_session(session_id, metadata, session.experiment_id, session.created_at)
                break
            except TraceStoreError as exc:
                if "no experiment" in exc.message and session.experiment_id not in self.created_experiments:
                    # the client named an experiment the DB does not have: create it, named by its id
                    tracer.create_experiment(session.experiment_id, session.experiment_id,
                                             description="created by synth-ai proxy")
                    self.created_experiments.add(session.experiment_id)
                    continue
                if "already exists" not in exc.message or part >= MAX_PARTS:
                    raise
            part += 1
            session_id = f"{session.session_id}.{part}"
            metadata = {**session.metadata, "proxy_session_id": session.session_id, "proxy_part": part}
        try:
            self._record(session)
            tracer.end_session()
        except BaseException:
            if tracer.current_session_id is not None:  # half recorded: start over with a fresh tracer
                self.tracer = self._open()
            raise
        spooled = spooled_before is not None and getattr(tracer, "sessions_spooled", 0) > spooled_before
        return session_id, spooled

    def _record(self, session: SessionData) -> None:
        from synth_cli.tracing.events import EnvironmentEvent

        tracer = self.tracer
        turn = 0
        for kind, obj in session.entries:
            if kind == "call":
                if tracer.current_step_id is not None:
                    tracer.end_timestep()
                tracer.start_timestep(f"call_{turn}", turn_number=turn)
                tracer.record_llm_call(obj, system_instance_id=SYSTEM_ID, message_time=turn,
                                       event_time=_epoch(obj.started_at))
                turn += 1
            else:
                tracer.record_event(EnvironmentEvent(
                    system_instance_id=ENV_SYSTEM_ID, reward=obj.get("reward"),
                    terminated=bool(obj.get("terminated")), truncated=bool(obj.get("truncated")),
                    metadata=dict(obj.get("metadata") or {}), event_time=obj.get("event_time")))
        if tracer.current_step_id is not None:
            tracer.end_timestep()

    # -- the spool ------------------------------------------------------------------------------
    def spool(self, session: SessionData) -> None:
        """Append the session to the spool file (OSError when that fails too)."""
        from synth_cli import _json

        self.spool_path.parent.mkdir(parents=True, exist_ok=True)
        line = _json.dumps_bytes(session.to_json(self.target)) + b"\n"
        with open(self.spool_path, "ab") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())

    def replay_spool(self) -> tuple[int, int]:
        """Write the spooled sessions of this target; (written, still spooled). Others' lines are kept."""
        from synth_cli import _json

        if not self.spool_path.is_file():
            return 0, 0
        kept: list[bytes] = []
        written = left = 0
        with open(self.spool_path, "rb") as fh:
            lines = [line for line in fh if line.strip()]
        for line in lines:
            try:
                data = _json.loads(line)
            except _json.JSONDecodeError:
                kept.append(line)  # a torn last line: keep it for a human
                continue
            if data.get("target") != self.target:
                kept.append(line)
                continue
            try:
                self.write(SessionData.from_json(data))
                written += 1
            except (TraceStoreError, KeyError, TypeError, ValueError):
                kept.append(line)
                left += 1
        if written:
            tmp = self.spool_path.with_name(self.spool_path.name + ".tmp")
            with open(tmp, "wb") as fh:
                fh.writelines(kept)
                fh.flush()
                os.fsync(fh.fileno())
            if kept:
                os.replace(tmp, self.spool_path)
            else:
                os.unlink(tmp)
                os.unlink(self.spool_path)
        return written, left


def _epoch(value: datetime | None) -> float | None:
    if value is None:
        return None
    from datetime import timezone

    return value.replace(tzinfo=timezone.utc).timestamp() if value.tzinfo is None else value.timestamp()
