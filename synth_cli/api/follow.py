"""Following a fine-tuning job: status transitions, every event once and in order, training progress.

:class:`JobFollower` is an iterator of :class:`Update` objects; renderers (the live view, plain
log lines, NDJSON) consume it and never talk HTTP themselves. One tick = one `GET job` + one
`GET events?after=<newest seen id>` (more only when a page is full), then a sleep until the next
multiple of `interval`. Events are never re-fetched as a whole list.

Backends disagree about event order. OpenAI lists events newest first and `after` pages towards
older ones; `synth-ai serve` and other backends list oldest first and `after` returns newer
ones. :class:`EventCursor` works out which one it is talking to from the timestamps and pages
accordingly. When a first page's timestamps all tie (whole seconds, a fast backend) its order
cannot be read off them: the cursor holds that page back for a few polls until a new event shows
up at the head (newest first) or the tail (oldest first) of the list, then prints it in the right
order; if none shows up (or the job has ended) it assumes the contract's order, newest first.

Transient failures while following (connection refused during a server restart, 5xx, 429 after
the client's own retries) do not end the follow: an ``outage`` update is yielded and polling goes
on until the backend answers again or `max_outage` seconds pass. Nothing here prints.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from synth_cli.api.errors import ApiError
from synth_cli.api.types import Job, JobEvent

EVENT_PAGE_SIZE = 100
#: the longest wait between two polls (a larger --interval, e.g. 1e300, polls once a day instead of overflowing sleep)
MAX_INTERVAL = 86400.0
_STEP_RE = re.compile(r"\bstep\s+(\d+)\s*/\s*(\d+)", re.IGNORECASE)
_LOSS_RE = re.compile(r"(?:training|train)[ _]loss\s*[=:]\s*([0-9.eE+-]+)", re.IGNORECASE)


def _created(event: JobEvent) -> float:
    return event.created_at or 0.0


class EventCursor:
    """Fetches only the events not seen yet, oldest first, whatever the backend's list order."""

    def __init__(self, provider, job_id: str, *, page_size: int = EVENT_PAGE_SIZE):
        self.provider = provider
        self.job_id = job_id
        self.page_size = page_size
        # "asc" (oldest first) | "desc" (newest first, OpenAI) | None: not known yet
        self.order: str | None = getattr(provider, "event_order", None)
        self.seen: set[str] = set()
        self.newest: JobEvent | None = None
        self.requests = 0
        self.pending: list[JobEvent] | None = None  # a first page held back, in list order
        self.pending_polls = 0

    def _page(self, after: str | None) -> tuple[list[JobEvent], bool]:
        self.requests += 1
        return self.provider.list_events(self.job_id, after=after, limit=self.page_size)

    @staticmethod
    def _direction(events: list[JobEvent]) -> str | None:
        times = [_created(e) for e in events]
        up = any(b > a for a, b in zip(times, times[1:]))
        down = any(b < a for a, b in zip(times, times[1:]))
        if up and not down:
            return "asc"
        if down and not up:
            return "desc"
        return None

    def _accept(self, events: list[JobEvent], chronological: bool) -> list[JobEvent]:
        """Keep unseen events, put them oldest first, remember them."""
        fresh = []
        for event in events if chronological else reversed(events):
            key = event.id
            if key in self.seen:
                continue
            self.seen.add(key)
            fresh.append(event)
        fresh.sort(key=_created)  # stable: keeps the server's order among equal timestamps
        if fresh:
            self.newest = fresh[-1]
        return fresh

    def poll(self, *, check_head: bool = False, final: bool = False) -> list[JobEvent]:
        """New events since the last call, oldest first.

        `check_head` asks for one more request when the order is still unknown and nothing came
        through the cursor (the follower sets it on status changes, when events are expected).
        `final`: the job has ended, so nothing new will show the order of a held-back page.
        """
        if self.pending is not None:
            return self._resolve_pending(final)
        if self.newest is None:
            return self._initial(final)
        if self.order == "desc":
            return self._from_head()
        fresh: list[JobEvent] = []
        after = self.newest.id
        while True:
            data, has_more = self._page(after)
            if any(e.id in self.seen for e in data) or self._direction(data) == "desc" or (
                    data and max(_created(e) for e in data) < _created(self.newest)):
                # `after` went backwards: this backend lists newest first.
                self.order = "desc"
                return fresh + self._from_head()
            if self._direction(data) == "asc" or (data and _created(data[-1]) > _created(self.newest)):
                self.order = "asc"
            fresh += self._accept(data, chronological=True)
            if not has_more:
                break
            after = data[-1].id
        if not fresh and self.order is None and check_head:
            head = self._from_head()
            if head:
                self.order = "desc"
            return head
        return fresh

    MAX_PENDING_POLLS = 3

    def _initial(self, final: bool = False) -> list[JobEvent]:
        """The whole history so far, in as many pages as it takes (once)."""
        collected: list[JobEvent] = []
        after = None
        while True:
            data, has_more = self._page(after)
            collected += data
            if not has_more:
                break
            after = data[-1].id
        self.order = self.order or self._direction(collected)
        if self.order is None and len(collected) > 1:
            if final:
                self.order = "desc"
            else:
                self.pending, self.pending_polls = collected, 0
                return []
        return self._accept(collected, chronological=self.order != "desc")

    def _resolve_pending(self, final: bool) -> list[JobEvent]:
        """Re-read the head of the list: new events at the head mean newest first, at the tail oldest first."""
        pending = self.pending or []
        known = {e.id for e in pending}
        data, _ = self._page(None)
        self.pending_polls += 1
        if data and data[0].id not in known:
            self.order = "desc"
        elif any(e.id not in known for e in data):
            self.order = "asc"
        elif not final and self.pending_polls < self.MAX_PENDING_POLLS:
            return []
        else:
            self.order = "desc"  # nothing new to tell: the contract's order
        self.pending = None
        held = self._accept(pending, chronological=self.order == "asc")
        return held + self.poll(final=final)

    def _from_head(self) -> list[JobEvent]:
        """Newest-first listing: read from the head until an already-seen event shows up."""
        collected: list[JobEvent] = []
        after = None
        while True:
            data, has_more = self._page(after)
            hit = False
            for event in data:
                if event.id in self.seen:
                    hit = True
                    break
                collected.append(event)
            if hit or not has_more:
                break
            after = data[-1].id
        return self._accept(collected, chronological=False)


@dataclass
class TrainingProgress:
    """What the metrics events say about training so far."""

    step: int | None = None
    total_steps: int | None = None
    train_loss: float | None = None
    valid_loss: float | None = None
    losses: list = field(default_factory=list)  # the whole run: the live view downsamples it

    def update(self, event: JobEvent) -> bool:
        data = event.data
        message = event.message
        changed = False
        step = data.get("step")
        total = data.get("total_steps")
        loss = data.get("train_loss", data.get("loss"))
        if step is None or total is None:
            match = _STEP_RE.search(message)
            if match:
                step = int(match.group(1)) if step is None else step
                total = int(match.group(2)) if total is None else total
        if loss is None and (event.type == "metrics" or step is not None):
            match = _LOSS_RE.search(message)
            if match:
                try:
                    loss = float(match.group(1))
                except ValueError:
                    loss = None
        if isinstance(step, (int, float)):
            self.step = int(step)
            changed = True
        if isinstance(total, (int, float)) and total > 0:
            self.total_steps = int(total)
            changed = True
        if isinstance(loss, (int, float)):
            self.train_loss = float(loss)
            self.losses.append(float(loss))
            changed = True
        valid = data.get("valid_loss")
        if isinstance(valid, (int, float)):
            self.valid_loss = float(valid)
        return changed


@dataclass
class Update:
    """One thing that happened while following.

    kind: ``job`` (first answer), ``event`` (a new job event), ``status`` (status changed),
    ``outage`` (the backend did not answer; still trying), ``recovered``, ``tick`` (end of a poll),
    ``done`` (the job ended, or `timed_out`).
    """

    kind: str
    job: Job | None
    event: JobEvent | None = None
    previous_status: str | None = None
    error: ApiError | None = None
    timed_out: bool = False


class JobFollower:
    """Iterate to follow `job_id` until it ends (or `timeout` seconds pass)."""

    def __init__(self, provider, job_id: str, *, interval: float = 2.0, timeout: float | None = None,
                 max_outage: float = 300.0, events: bool = True,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep):
        self.provider = provider
        self.job_id = job_id
        self.interval = min(max(0.01, float(interval)), MAX_INTERVAL)
        self.timeout = timeout
        self.max_outage = max_outage
        self.clock = clock
        self.sleep = sleep
        self.cursor = EventCursor(provider, job_id) if events else None
        self.progress = TrainingProgress()
        self.job: Job | None = None
        self.started = clock()
        self.polls = 0

    @property
    def status(self) -> str | None:
        return self.job.status if self.job else None

    def _metrics(self) -> None:
        """Losses from the provider's metrics endpoint, when its events carry none (Together)."""
        points = self.provider.training_metrics(self.job_id) if self.provider is not None else None
        for point in points or []:
            step = point.get("step")
            if step is not None and self.progress.step is not None and step <= self.progress.step \
                    and self.progress.train_loss is not None:
                continue
            self.progress.update(JobEvent(id="", created_at=0.0, message="", type="metrics", data=point))

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    def __iter__(self) -> Iterator[Update]:
        deadline = None if self.timeout is None else self.started + self.timeout
        outage_since: float | None = None
        while True:
            tick = self.clock()
            self.polls += 1
            try:
                job = self.provider.retrieve(self.job_id)
                previous = self.status
                first = self.job is None
                status_changed = not first and job.status != previous
                terminal = job.finished
                self.job = job
                if first:
                    yield Update("job", job)
                fresh = (self.cursor.poll(check_head=status_changed or terminal, final=terminal)
                         if self.cursor else [])
                if outage_since is not None:
                    outage_since = None
                    yield Update("recovered", job)
                for event in fresh:
                    self.progress.update(event)
                    yield Update("event", job, event=event)
                self._metrics()
                if status_changed:
                    yield Update("status", job, previous_status=previous)
                if terminal:
                    yield Update("done", job)
                    return
            except ApiError as exc:
                if not exc.transient:
                    raise
                now = self.clock()
                outage_since = outage_since if outage_since is not None else now
                if now - outage_since > self.max_outage:
                    raise
                yield Update("outage", self.job, error=exc)
            yield Update("tick", self.job)
            now = self.clock()
            if deadline is not None and now >= deadline:
                yield Update("done", self.job, timed_out=True)
                return
            wait = self.interval - (now - tick)
            if deadline is not None:
                wait = min(wait, deadline - now)
            if wait > 0:
                self.sleep(wait)
