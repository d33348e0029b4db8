"""The `filter` pipeline: trace DBs → selected sessions → examples → JSONL, with stats.

:func:`run_filter` opens every DB read-only, selects sessions with one SQL query per
DB (:mod:`synth_cli.store.selection`), streams the `cais` events' call records in id
order, converts them (:mod:`synth_cli.dataset.convert`), validates each example
(:mod:`synth_cli.dataset.validate`), drops exact duplicates (a set of SHA-1 digests
of the serialized lines: the only memory that grows with the output), splits
the kept sessions between train and validation (the round(F × n) sessions with the
lowest seeded hash of their id go to validation), and writes atomically (:mod:`synth_cli.dataset.writer`). Returns :class:`FilterStats`.

Memory: one DB row and one example at a time (sessions mode: one open
conversation per session being read, normally one), the per-session selection
(a few numbers per kept session) and the duplicate digests. Nothing here prints.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

from synth_cli._json import dumps_bytes, loads
from synth_cli.dataset import convert as cv
from synth_cli.dataset.history import FastCall, Histories
from synth_cli.dataset.options import FilterOptions
from synth_cli.store.selection import FILTER_ORDER, MAX_IN_LIST, scan_calls, scan_messages, select_sessions
from synth_cli.dataset.validate import check_example, check_tools, estimate_tokens
from synth_cli.errors import DatasetError
from synth_cli.store.reader import TraceStore

#: how many malformed rows' session ids the stats name.
MALFORMED_NAMED = 5
#: rows between two progress reports.
PROGRESS_EVERY = 500
#: how many left-out examples the stats name (session, call, reason).
INVALID_NAMED = 20
#: the call-record schema this converter knows (records without a version are taken as it).
KNOWN_SCHEMA = "1.0"
#: validation reasons that mean a tool result whose call is nowhere in the session.
_UNANSWERED = {"tool message answers no earlier tool call", "tool message without tool_call_id"}
UNRESTORABLE = "tool result whose tool call no earlier call record of the session holds"


@dataclass
class FilterStats:
    mode: str = "calls"
    dry_run: bool = False
    output: str | None = None
    val_output: str | None = None
    #: the manifest written next to the output (dataset/manifest.py), None when none was
    manifest: str | None = None
    dbs: list[dict[str, Any]] = field(default_factory=list)
    sessions_scanned: int = 0
    sessions_kept: int = 0
    #: progress of the scan (not part of the report): rows of the kept sessions, and how many were read
    rows_total: int = 0
    rows_done: int = 0
    dropped_by: Counter = field(default_factory=Counter)
    calls_scanned: int = 0
    calls_used: int = 0
    calls_dropped: Counter = field(default_factory=Counter)
    examples: int = 0
    train: int = 0
    val: int = 0
    with_tool_calls: int = 0
    messages: int = 0
    duplicates: int = 0
    empty_outputs: int = 0
    invalid: Counter = field(default_factory=Counter)
    skipped: dict[str, int] = field(default_factory=dict)
    token_estimate: int = 0
    rewards: Counter = field(default_factory=Counter)
    rewards_kept: Counter = field(default_factory=Counter)
    models: Counter = field(default_factory=Counter)
    malformed_rows: int = 0
    malformed_sessions: list[str] = field(default_factory=list)
    limit_reached: bool = False
    #: assistant history turns whose tool calls were restored from earlier call records.
    restored_tool_calls: int = 0
    #: call records by schema_version, for versions other than the one this converter knows.
    schema_versions: Counter = field(default_factory=Counter)
    #: the first examples left out as invalid: session, call and reason.
    invalid_examples: list[dict[str, Any]] = field(default_factory=list)
    #: sessions mode: conversations cut at an invalid turn (the valid parts kept).
    split_conversations: int = 0
    #: what was scrubbed: mode ("secrets", "secrets+pii", "off"), examples touched, replacements by kind.
    redaction: dict[str, Any] = field(default_factory=lambda: {"mode": "off", "examples": 0, "by_kind": {}})
    filters: dict[str, Any] = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def sessions_dropped(self) -> int:
        return self.sessions_scanned - self.sessions_kept

    def reward_histogram(self, max_bins: int = 12) -> list[dict[str, Any]]:
        return reward_histogram(self.rewards, self.rewards_kept, max_bins=max_bins)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "dry_run": self.dry_run,
            "output": self.output,
            "val_output": self.val_output,
            "manifest": self.manifest,
            "dbs": self.dbs,
            "filters": self.filters,
            "sessions": {
                "scanned": self.sessions_scanned,
                "kept": self.sessions_kept,
                "dropped": self.sessions_dropped,
                "dropped_by": {k: self.dropped_by[k] for k in (*FILTER_ORDER, "model") if self.dropped_by.get(k)},
            },
            "calls": {
                "scanned": self.calls_scanned,
                "used": self.calls_used,
                "dropped_by": dict(sorted(self.calls_dropped.items())),
            },
            "examples": {
                "written": self.examples,
                "train": self.train,
                "val": self.val,
                "with_tool_calls": self.with_tool_calls,
                "messages": self.messages,
                "duplicates_removed": self.duplicates,
                "empty_outputs": self.empty_outputs,
                "invalid_dropped": dict(sorted(self.invalid.items())),
                "invalid_examples": self.invalid_examples,
                "restored_tool_calls": self.restored_tool_calls,
                "split_conversations": self.split_conversations,
            },
            "schema_versions": dict(sorted(self.schema_versions.items())),
            "redaction": self.redaction,
            "skipped_parts": dict(sorted(self.skipped.items())),
            "token_estimate": self.token_estimate,
            "reward_histogram": self.reward_histogram(),
            "models": dict(self.models.most_common()),
            "malformed_rows": {"count": self.malformed_rows, "sessions": self.malformed_sessions},
            "limit_reached": self.limit_reached,
            "notices": self.notices,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def reward_histogram(all_rewards: Counter, kept: Counter, *, max_bins: int = 12) -> list[dict[str, Any]]:
    """Sessions per total reward: one bin per value when rewards are few integers, else equal widths."""
    if not all_rewards:
        return []
    values = sorted(all_rewards)
    lo, hi = values[0], values[-1]
    integers = all(float(v).is_integer() for v in values)
    if integers and hi - lo + 1 <= max_bins:
        return [{"min": v, "max": v, "sessions": all_rewards.get(float(v), 0), "kept": kept.get(float(v), 0)}
                for v in range(int(lo), int(hi) + 1)]
    if lo == hi:
        return [{"min": lo, "max": hi, "sessions": sum(all_rewards.values()), "kept": sum(kept.values())}]
    width = (hi - lo) / max_bins
    bins = [{"min": round(lo + i * width, 6), "max": round(lo + (i + 1) * width, 6), "sessions": 0, "kept": 0}
            for i in range(max_bins)]
    for value, count in all_rewards.items():
        i = min(int((value - lo) / width), max_bins - 1)
        bins[i]["sessions"] += count
        bins[i]["kept"] += kept.get(value, 0)
    return bins


class LimitReached(Exception):
    """--limit reached."""


def _split_key(session_id: str, seed: int) -> bytes:
    return hashlib.blake2b(f"{seed}:{session_id}".encode(), digest_size=8).digest()


def val_sessions(session_ids: Any, fraction: float, seed: int) -> set[str]:
    """The sessions of the validation split: the round(fraction × n) with the lowest seeded hash.

    Deterministic (same sessions, fraction and seed → same split), exact in size (at
    least one session each side when there are two or more), and a session's examples
    all land on one side.
    """
    ids = sorted(set(session_ids))
    if fraction <= 0 or not ids:
        return set()
    n_val = round(fraction * len(ids))
    if len(ids) >= 2:
        n_val = min(max(n_val, 1), len(ids) - 1)
    ranked = sorted(ids, key=lambda sid: _split_key(sid, seed))
    return set(ranked[:n_val])


class KeptSession:
    __slots__ = ("session_id", "total_reward", "experiment_id", "is_val", "remaining", "merger", "history", "order")

    def __init__(self, session_id: str, total_reward: float, experiment_id: str | None, is_val: bool,
                 remaining: int, order: int = 0):
        self.order = order  # place among the DB's kept sessions (which worker reads it)
        self.session_id = session_id
        self.total_reward = total_reward
        self.experiment_id = experiment_id
        self.is_val = is_val
        self.remaining = remaining
        self.merger: Any = None
        self.history: Any = None  # convert.ToolCallHistory, made on the first tool call


class DigestSet:
    """The lines written so far, for exact de-duplication, in ~12 bytes per line.

    Each line is kept as its 12-byte BLAKE2b digest (a false duplicate would need a collision
    of 96 bits), appended to one of 4,096 byte strings chosen by the digest's first 12 bits:
    no Python object per line, and a lookup is one C-level search of a short string.
    """

    SIZE = 12
    __slots__ = ("_buckets", "count")

    def __init__(self) -> None:
        self._buckets = [bytearray() for _ in range(4096)]
        self.count = 0

    @staticmethod
    def digest(line: bytes) -> bytes:
        return hashlib.blake2b(line, digest_size=DigestSet.SIZE).digest()

    def add(self, digest: bytes) -> bool:
        """Remember `digest`; False when it was already there."""
        bucket = self._buckets[digest[0] << 4 | digest[1] >> 4]
        pos = bucket.find(digest)
        while pos >= 0:
            if pos % 12 == 0:
                return False
            pos = bucket.find(digest, pos + 1)
        bucket += digest
        self.count += 1
        return True


class Sink:
    """Validates, de-duplicates, splits, counts and writes examples."""

    def __init__(self, opts: FilterOptions, stats: FilterStats, train: Any, val: Any):
        self.opts = opts
        self.stats = stats
        self.train = train
        self.val = val
        self.seen = DigestSet()
        self.limit = opts.limit
        self.include_metadata = opts.include_metadata
        self.calls_mode = opts.mode == "calls"
        self.on_progress: Callable[[FilterStats], None] | None = None
        self.redactor: Any = None
        if opts.redact != "off":
            from synth_cli.dataset.redact import Redactor

            self.redactor = Redactor(pii=opts.redact == "pii")
        self._rows = 0
        self._tools_seen: list[tuple] = []
        #: SHA-256 of what each output file receives (for the manifest: no second read of the file)
        self.train_sha = hashlib.sha256() if train is not None and not getattr(train, "through", False) else None
        self.val_sha = hashlib.sha256() if val is not None and not getattr(val, "through", False) else None  # (tools, their scrubbed JSON, what scrubbing found)

    def tick(self) -> None:
        """One DB row read: report progress every PROGRESS_EVERY rows."""
        self._rows += 1
        if self.on_progress is not None and self._rows % PROGRESS_EVERY == 0:
            self.on_progress(self.stats)

    def rows_seen(self, n: int) -> None:
        """`n` rows read by a worker: report progress at each PROGRESS_EVERY rows crossed."""
        before = self._rows
        self._rows += n
        if self.on_progress is not None and self._rows // PROGRESS_EVERY > before // PROGRESS_EVERY:
            self.on_progress(self.stats)

    def reject(self, errors: list[str], session: KeptSession, call_id: str | None) -> None:
        """Count an invalid example (by reason, and named among the first few); --strict: fail."""
        stats = self.stats
        errors = [UNRESTORABLE if e in _UNANSWERED else e for e in errors]
        for reason in set(errors):
            stats.invalid[reason] += 1
        if len(stats.invalid_examples) < INVALID_NAMED:
            stats.invalid_examples.append({"session_id": session.session_id, "call_id": call_id,
                                           "reason": errors[0]})
        if self.opts.strict:
            raise DatasetError(f"session {session.session_id}: the example of call {call_id} is not valid "
                               f"({errors[0]})", hint="drop --strict to skip invalid examples")

    def emit(self, example: dict, session: KeptSession, call_id: str | None, model: str | None) -> None:
        ready = self.prepare(example, session, call_id, model)
        if ready is not None:
            self.accept(ready)

    def at_end(self, session: KeptSession) -> None:
        """The scan is over and `session`'s open conversation is being finished (workers: its place)."""

    def prepare(self, example: dict, session: KeptSession, call_id: str | None, model: str | None
                ) -> tuple | None:
        """Validate, scrub and serialise one example: what :meth:`accept` writes, or None (invalid).

        This is the part a worker process does; :meth:`accept` (de-duplication, the split's
        counts, writing) stays in one process, in the order of the single-process run.
        """
        errors = check_example(example)
        if errors:
            self.reject(errors, session, call_id)
            return None
        if self.redactor is not None:
            self.redactor.example(example, session.session_id)
        line = dumps_bytes(example)
        digest = DigestSet.digest(line)
        tokens = estimate_tokens(line, example)
        if self.include_metadata:
            meta = {"session_id": session.session_id, "call_id": call_id, "model": model,
                    "total_reward": session.total_reward, "experiment_id": session.experiment_id}
            line = line[:-1] + b',"metadata":' + dumps_bytes(meta) + b"}"
        tools = cv.final_has_tool_calls(example) if self.calls_mode else cv.has_tool_calls(example)
        return line, digest, tokens, session.is_val, len(example["messages"]), bool(tools), model

    def emit_call(self, call: FastCall, session: KeptSession) -> None:
        ready = self.prepare_call(call, session)
        if ready is not None:
            self.accept(ready)

    def prepare_call(self, call: FastCall, session: KeptSession) -> tuple | None:
        """:meth:`prepare` for a call converted through its session's history (calls mode): the same
        result, from the history's messages checked, scrubbed and serialised once each.

        The line is (the history's bytes, the rest), which written one after the other are the
        bytes :meth:`prepare` writes; so are the digest, tokens and counts.
        """
        history = call.history
        output = call.output
        tools = call.tools
        parallel = call.parallel
        known = self._tools(tools) if tools else None  # (JSON, found, whether validation finds nothing)
        if history.nonplain or (known is not None and not known[2]):
            example: dict[str, Any] = {"messages": [*history.messages(), output]}
            if tools:
                example["tools"] = tools
        else:  # the history's messages are plain and the tools valid: they add no reason
            example = {"messages": [output]}
        if parallel is not None:
            example["parallel_tool_calls"] = parallel
        errors = check_example(example, assistant=not history.nonplain and history.assistant)
        if errors:
            self.reject(errors, session, call.call_id)
            return None
        redactor = self.redactor
        if redactor is None or redactor.clean((*history.unwritten(), output)):
            history.extend_head(None)  # nothing new to scrub (one search for the new messages and the output)
            found: tuple = ()
        else:
            history.extend_head(redactor)
            output, found = redactor.message(output)  # type: ignore[arg-type]
        if redactor is not None and (history.found or found or (known is not None and known[1])):
            total = dict(history.found)
            for kind, n in (*found, *(known[1] if known is not None else ())):
                total[kind] = total.get(kind, 0) + n
            redactor.count(total)
        out = dumps_bytes(output)
        if history.count:
            out = b"," + out
        if known is not None:
            rest = out + b'],"tools":' + known[0]
            if parallel is not None:
                rest += b',"parallel_tool_calls":true}' if parallel else b',"parallel_tool_calls":false}'
            else:
                rest += b"}"
        elif parallel is not None:
            rest = out + (b'],"parallel_tool_calls":true}' if parallel else b'],"parallel_tool_calls":false}')
        else:
            rest = out + b"]}"
        hasher = history.hasher.copy()
        hasher.update(rest)
        head = history.head
        if history.image or b'"image_url"' in rest:
            line = head + rest
            tokens = estimate_tokens(line, loads(line))
        else:
            tokens = (len(head) + len(rest)) >> 2
        if self.include_metadata:
            meta = {"session_id": session.session_id, "call_id": call.call_id, "model": call.model,
                    "total_reward": session.total_reward, "experiment_id": session.experiment_id}
            rest = rest[:-1] + b',"metadata":' + dumps_bytes(meta) + b"}"
        with_tools = bool(output.get("tool_calls") or output.get("function_call"))  # type: ignore[union-attr]
        return ((head, rest), hasher.digest(), tokens, session.is_val, history.count + 1, with_tools,
                call.model)

    def _tools(self, tools: list) -> tuple[bytes, tuple, bool]:
        """(JSON of the scrubbed tools, what scrubbing found, whether validating them finds nothing)
        for the last few tools lists offered (agents offer the same few on every call)."""
        for entry in self._tools_seen:
            if entry[0] == tools:
                return entry[1]
        found: tuple = ()
        scrubbed = tools
        if self.redactor is not None:
            scrubbed, found = self.redactor.found_in_tools(tools)
        known = (dumps_bytes(scrubbed), found, not check_tools(tools))
        if len(self._tools_seen) >= 4:
            self._tools_seen.pop(0)
        self._tools_seen.append((tools, known))
        return known

    def accept_run(self, data: Any, columns: tuple, lo: int, hi: int, at: int) -> int:
        """:meth:`accept` for the entries `lo:hi` of a batch of `filter --workers N` (`columns`: tags,
        line sizes, 12-byte digests end to end, token estimates, messages << 2 | is_val << 1 | has
        tool calls, models), whose lines, each with its newline, lie one after the other in `data`
        from offset `at`: consecutive lines kept for one file are written (and hashed) as one
        range. Returns the offset after the last. No --limit here (one process reads then)."""
        _, sizes, digests, all_tokens, flags, names = columns
        stats = self.stats
        add = self.seen.add
        models = stats.models
        start = at  # the range not yet written
        target = None  # which file it goes to (True: validation)
        tokens = examples = messages = tools = val = 0
        for i in range(lo, hi):
            size = sizes[i]
            if not add(digests[12 * i:12 * i + 12]):
                stats.duplicates += 1
                if at > start:
                    self._write_range(data[start:at], target)
                at += size
                start = at
                continue
            flag = flags[i]
            is_val = flag & 2 == 2
            if is_val is not target:
                if at > start:
                    self._write_range(data[start:at], target)
                    start = at
                target = is_val
            if is_val:
                val += 1
            at += size
            tokens += all_tokens[i]
            examples += 1
            messages += flag >> 2
            tools += flag & 1
            models[names[i] or "(unknown)"] += 1
        if at > start:
            self._write_range(data[start:at], target)
        stats.val += val
        stats.train += examples - val
        stats.token_estimate += tokens
        stats.examples += examples
        stats.messages += messages
        stats.with_tool_calls += tools
        return at

    def _write_range(self, data: Any, is_val: bool | None) -> None:
        out, sha = (self.val, self.val_sha) if is_val else (self.train, self.train_sha)
        if out is not None:
            out.write(data)
            if sha is not None:
                sha.update(data)

    def accept(self, ready: tuple) -> None:
        line, digest, tokens, is_val, messages, tools, model = ready
        stats = self.stats
        if not self.seen.add(digest):
            stats.duplicates += 1
            return
        stats.token_estimate += tokens
        if is_val:
            stats.val += 1
            out, sha = self.val, self.val_sha
        else:
            stats.train += 1
            out, sha = self.train, self.train_sha
        if out is not None:
            if type(line) is tuple:
                out.write(line[0])
                out.write(line[1])
                if sha is not None:
                    sha.update(line[0])
                    sha.update(line[1])
            else:
                out.write(line)
                if sha is not None:
                    sha.update(line)
            out.write(b"\n")
            if sha is not None:
                sha.update(b"\n")
        stats.examples += 1
        stats.messages += messages
        if tools:
            stats.with_tool_calls += 1
        stats.models[model or "(unknown)"] += 1
        if self.limit is not None and stats.examples >= self.limit:
            stats.limit_reached = True
            raise LimitReached()


# --------------------------------------------------------------------------- one DB


def select_kept(store: TraceStore, opts: FilterOptions, stats: FilterStats, fallback: bool,
                shard: list[str] | None = None, order: dict[str, int] | None = None) -> dict[str, KeptSession]:
    """The sessions the filters keep (counted in `stats`), in session id order.

    `shard`/`order` (a worker of `filter --workers N`): only these sessions, each placed by
    `order` (its place among all the DB's sessions) instead of its place among those kept.
    """
    kept: dict[str, KeptSession] = {}
    for row in select_sessions(store, opts, fallback=fallback, shard=shard):
        stats.sessions_scanned += 1
        stats.rewards[row.total_reward] += 1
        if row.dropped_by is not None:
            stats.dropped_by[row.dropped_by] += 1
            continue
        if fallback and opts.models:
            models = set((row.models or "").split(",")) if row.models else set()
            if not models & set(opts.models):
                stats.dropped_by["model"] += 1
                continue
        stats.sessions_kept += 1
        stats.rewards_kept[row.total_reward] += 1
        kept[row.session_id] = KeptSession(row.session_id, row.total_reward, row.experiment_id, False, row.calls,
                                           len(kept) if order is None else order[row.session_id])
    return kept


def _malformed(stats: FilterStats, opts: FilterOptions, session_id: str, event_id: Any, why: str) -> None:
    if opts.strict:
        raise DatasetError(f"{session_id}: malformed call_records in event {event_id} ({why})",
                           hint="drop --strict to skip malformed rows and count them")
    stats.malformed_rows += 1
    if len(stats.malformed_sessions) < MALFORMED_NAMED and session_id not in stats.malformed_sessions:
        stats.malformed_sessions.append(session_id)


def _unknown_schema(stats: FilterStats, opts: FilterOptions, session_id: str, version: Any) -> None:
    if opts.strict:
        raise DatasetError(f"session {session_id}: a call record has schema_version {version!r}; this version "
                           f"of synth-ai reads {KNOWN_SCHEMA}",
                           hint="drop --strict to convert it as schema 1.0 (with a notice)")
    stats.schema_versions[str(version)] += 1


def convert_calls(store: TraceStore, opts: FilterOptions, stats: FilterStats, sink: Sink, kept: dict[str, KeptSession],
           rows: Any = None) -> None:
    """Convert the call records of the kept sessions (`rows`: the scan to use, else :func:`scan_calls`)."""
    sessions_mode = opts.mode == "sessions"
    models = frozenset(opts.models) if opts.models else None
    include_errors = opts.include_errors
    skipped = stats.skipped
    dropped = stats.calls_dropped
    ids = list(kept) if len(kept) <= MAX_IN_LIST and stats.sessions_dropped else None
    if not kept:
        return
    if rows is None:
        rows = scan_calls(store, ids)
    tick = sink.tick
    histories = Histories()
    try:
        for row in rows:
            tick()
            session_id = row[1]
            session = kept.get(session_id)
            if session is None:
                continue
            earlier = histories.get(session_id)  # what the session's last row held
            try:
                records = earlier.parse(row[2])
                if type(records) is dict:
                    records = [records]
                elif type(records) is not list:
                    raise TypeError("not a JSON array")
                converted = []
                for record in records:
                    stats.calls_scanned += 1
                    version = record.get("schema_version")
                    if version is not None and version != KNOWN_SCHEMA:
                        _unknown_schema(stats, opts, session_id, version)
                    use = True
                    if models is not None and record.get("model_name") not in models:
                        dropped["model"] += 1
                        use = False
                    elif not include_errors and record.get("outcome") not in cv.SUCCESS_OUTCOMES:
                        dropped["outcome"] += 1
                        use = False
                    if use:
                        if not sessions_mode and earlier.owns(record):
                            converted.append(earlier.call(record, skipped))
                        else:
                            converted.append(cv.convert_call(record, skipped))
                    elif record.get("output_tool_calls"):  # still the source of later histories' tool calls
                        output = cv.convert_output(record, len(record.get("input_messages") or ()), {})
                        if output is not None and output.get("tool_calls"):
                            if session.history is None:
                                session.history = cv.ToolCallHistory()
                            session.history.add(output)
            except (ValueError, TypeError, AttributeError, KeyError, IndexError) as exc:
                _malformed(stats, opts, session_id, row[0], str(exc) or type(exc).__name__)
                histories.drop(session_id)
                converted = []
            for call in converted:
                history = session.history
                if history is not None and call.tool_inputs:
                    history.restore(call)
                    stats.restored_tool_calls += call.restored
                output = call.output
                if output is not None and "tool_calls" in output:
                    if history is None:
                        history = session.history = cv.ToolCallHistory()
                    history.add(output)
                if output is None:
                    stats.empty_outputs += 1
                    continue
                stats.calls_used += 1
                if sessions_mode:
                    merger = session.merger
                    if merger is None:
                        merger = session.merger = cv.ConversationMerger()
                    errors = check_example(cv.example_of(call))  # type: ignore[arg-type]
                    if errors:  # an invalid turn: keep what came before it, start again after it
                        if merger.messages is not None:
                            stats.split_conversations += 1
                        done = merger.finish()
                        if done is not None:
                            sink.emit(done[0], session, *done[1])
                        sink.reject(errors, session, call.call_id)
                        continue
                    done = merger.add(call, (call.call_id, call.model))
                    if done is not None:
                        sink.emit(done[0], session, *done[1])
                elif type(call) is FastCall:
                    sink.emit_call(call, session)
                else:
                    sink.emit(cv.example_of(call), session, call.call_id, call.model)  # type: ignore[arg-type]
            session.remaining -= 1
            stats.rows_done += 1
            if session.remaining <= 0:
                histories.drop(session_id)
                session.history = None
                if sink.redactor is not None:
                    sink.redactor.forget(session_id)
                if session.merger is not None:
                    done = session.merger.finish()
                    session.merger = None
                    if done is not None:
                        sink.emit(done[0], session, *done[1])
        if sessions_mode:  # sessions whose row count was off (rows added while reading)
            for session in kept.values():
                if session.merger is not None:
                    sink.at_end(session)
                    done = session.merger.finish()
                    session.merger = None
                    if done is not None:
                        sink.emit(done[0], session, *done[1])
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()


# --------------------------------------------------------------------------- earlier schema: messages

_MESSAGE_ROLES = {"user": "user", "assistant": "assistant", "system": "system"}


def _message_conversation(rows: list[tuple], skipped: dict[str, int]) -> list[dict]:
    """A session's `messages` rows (ordered) as OpenAI messages; tool_use/tool_result when they parse."""
    out: list[dict] = []
    pending: list[str] = []
    for _id, kind, content in rows:
        text = content if isinstance(content, str) else ("" if content is None else str(content))
        role = _MESSAGE_ROLES.get(kind)
        if role is not None:
            out.append({"role": role, "content": text})
            continue
        if kind == "tool_use":
            try:
                data = loads(text)
            except ValueError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                args = data.get("arguments", data.get("input", {}))
                call_id = data.get("id") or data.get("call_id") or f"call_synth_{len(out)}_0"
                call = {"id": call_id, "type": "function",
                        "function": {"name": data["name"],
                                     "arguments": args if isinstance(args, str) else dumps_bytes(args).decode()}}
                if out and out[-1]["role"] == "assistant" and "tool_calls" not in out[-1]:
                    out[-1]["tool_calls"] = [call]
                else:
                    out.append({"role": "assistant", "tool_calls": [call]})
                pending.append(call_id)
            else:
                cv.count_skipped(skipped, "tool_use")
        elif kind == "tool_result":
            if pending:
                out.append({"role": "tool", "tool_call_id": pending.pop(0), "content": text})
            else:
                cv.count_skipped(skipped, "tool_result")
        else:
            cv.count_skipped(skipped, f"message_type:{kind}")
    return out


def convert_messages(store: TraceStore, opts: FilterOptions, stats: FilterStats, sink: Sink,
              kept: dict[str, KeptSession]) -> None:
    if not kept:
        return
    ids = list(kept) if len(kept) <= MAX_IN_LIST and stats.sessions_dropped else None
    pending: dict[str, list[tuple]] = {}

    def flush(session: KeptSession) -> None:
        rows = pending.pop(session.session_id, [])
        rows.sort(key=lambda r: (r[0], r[1]))  # (step, id)
        conversation = _message_conversation([(r[1], r[2], r[3]) for r in rows], stats.skipped)
        model = None
        if opts.mode == "sessions":
            if any(m["role"] == "assistant" for m in conversation):
                stats.calls_used += 1
                sink.emit({"messages": conversation}, session, None, model)
            return
        for i, m in enumerate(conversation):
            if m["role"] == "assistant":
                stats.calls_used += 1
                sink.emit({"messages": conversation[:i + 1]}, session, None, model)

    rows = scan_messages(store, ids)
    try:
        for row in rows:
            sink.tick()
            session = kept.get(row[1])
            if session is None:
                continue
            stats.calls_scanned += 1
            pending.setdefault(session.session_id, []).append((row[4] or 0, row[0], row[2], row[3]))
            session.remaining -= 1
            stats.rows_done += 1
            if session.remaining <= 0:
                flush(session)
        for session_id in list(pending):
            flush(kept[session_id])
    finally:
        close = getattr(rows, "close", None)
        if close is not None:
            close()
