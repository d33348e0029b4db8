"""`filter`'s entry point: :func:`run_filter` opens the DBs, checks the output paths, selects
sessions, and converts them in this process (:mod:`synth_cli.dataset.build`) or in worker
processes (:mod:`synth_cli.dataset.parallel`), then writes through
:mod:`synth_cli.dataset.writer`. It is the one module that knows both ways, so neither
imports the other's caller. Never prints."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

from synth_cli.dataset.options import FilterOptions
from synth_cli.dataset.writer import AtomicFiles, Protected, val_path
from synth_cli.errors import DatasetError
from synth_cli.store.reader import TraceStore, open_stores

from synth_cli.dataset.build import (
    KNOWN_SCHEMA,
    FilterStats,
    KeptSession,
    LimitReached,
    Sink,
    convert_calls,
    convert_messages,
    select_kept,
    val_sessions,
)


def _workers_for(opts: FilterOptions, store: TraceStore, kept: dict[str, KeptSession]) -> int:
    """How many processes scan this DB: `--workers` (default: the CPUs, for a DB big enough to gain).

    One process when `--limit` or `--strict` decide where to stop (that depends on the global
    order), for a store that cannot `reopen()` in a worker and for one session.
    """
    from synth_cli.dataset.parallel import AUTO_MIN_ROWS, default_workers

    if opts.limit is not None or opts.strict or not hasattr(store, "reopen") or len(kept) < 2:
        return 1
    if opts.workers is not None:
        return min(opts.workers, len(kept))
    if sum(s.remaining for s in kept.values()) < AUTO_MIN_ROWS:
        return 1
    return min(default_workers(), len(kept))



def _workers_selecting(opts: FilterOptions, stores: list[TraceStore]) -> int:
    """How many processes run the session query and the scan of one local DB together (each for its
    share of the sessions), or 1 when the parent selects first (:func:`_workers_for` then decides).

    Only for one local DB with call records (a worker's share is a temporary table on its own
    connection; a libSQL server is selected by the parent) and no --val-fraction (whose split
    needs every kept session before any example is placed); the same rules as
    :func:`_workers_for`, on the DB's sizes.
    """
    if len(stores) != 1 or opts.val_fraction > 0 or opts.limit is not None or opts.strict:
        return 1
    store = stores[0]
    if store.kind != "sqlite" or not hasattr(store, "reopen") or not store.schema.has_call_records:
        return 1
    from synth_cli.dataset.parallel import AUTO_MIN_ROWS, default_workers
    from synth_cli.store.selection import db_sizes

    sessions, calls = db_sizes(store)
    if sessions < 2:
        return 1
    if opts.workers is not None:
        return min(opts.workers, sessions)
    if calls < AUTO_MIN_ROWS:
        return 1
    return min(default_workers(), sessions)


def _convert_in_workers(opts: FilterOptions, stores: list[TraceStore], stats: FilterStats, sink: Sink) -> bool:
    """Select and convert in worker processes (see :func:`_workers_selecting`); False: nothing done."""
    workers = _workers_selecting(opts, stores)
    if workers <= 1:
        return False
    from synth_cli.dataset.parallel import run_parallel

    store = stores[0]
    stats.dbs.append({"db": store.label, "kind": store.kind, "source": "call_records"})
    if run_parallel(store, opts, stats, sink, None, workers):
        return True
    stats.dbs.pop()  # the workers could not start: the usual way, in this process
    return False


def _check_paths(opts: FilterOptions, stores: list[TraceStore]) -> tuple[Path | None, Path | None, Protected]:
    """The outputs to write and what they must never be: every local DB read, with its -wal/-shm/-journal."""
    protected = Protected(store.path for store in stores if getattr(store, "path", None) is not None)
    if opts.dry_run:
        return None, None, protected
    if not opts.output:
        raise DatasetError("no output file given", hint="pass --output FILE.jsonl (or --dry-run)")
    output = Path(opts.output).expanduser()
    val = val_path(output) if opts.val_fraction > 0 else None
    for target in (output, val):
        if target is not None:
            protected.check(target)
    return output, val, protected


def run_filter(opts: FilterOptions, *, on_notice: Callable[[str], None] | None = None,
               on_progress: Callable[[FilterStats], None] | None = None) -> FilterStats:
    """Run the whole pipeline; raises TraceStoreError/DatasetError on bad input (nothing written).

    `on_notice(text)` hears what people should know as it happens (e.g. the messages-table
    fallback); `on_progress(stats)` is called every few hundred rows read.
    """
    started = time.perf_counter()
    if not opts.dbs:
        raise DatasetError("no trace DB given", hint="pass --db PATH_OR_URL or set SYNTH_TRACES_DB")
    stats = FilterStats(mode=opts.mode, dry_run=opts.dry_run, filters=opts.session_filters())
    if opts.models:
        stats.filters["models"] = list(opts.models)
    for note in opts.ignored:
        stats.notices.append(f"config: {note} has no equivalent here and is ignored")

    def notice(text: str) -> None:
        stats.notices.append(text)
        if on_notice is not None:
            on_notice(text)

    stores = open_stores(opts.dbs)
    try:
        for store in stores:
            for warning in store.warnings:
                notice(warning)
        output, val, protected = _check_paths(opts, stores)
        with AtomicFiles(parents=opts.parents, protected=protected) as files:
            train_file = files.open(output, through_ok=val is None) if output is not None else None
            val_file = files.open(val) if val is not None else None
            for text in files.notices:
                notice(text)
            sink = Sink(opts, stats, train_file, val_file)
            sink.on_progress = on_progress
            try:
                selections = []
                if _convert_in_workers(opts, stores, stats, sink):
                    stores_left: list[TraceStore] = []
                else:
                    stores_left = stores
                for store in stores_left:  # 1. one session query per DB
                    fallback = not store.schema.has_call_records
                    if fallback and not store.schema.has("messages", "content"):
                        raise DatasetError(f"{store.label}: neither events.call_records nor a messages table",
                                           hint="this DB holds no LLM conversations")
                    stats.dbs.append({"db": store.label, "kind": store.kind,
                                      "source": "messages" if fallback else "call_records"})
                    if fallback:
                        notice(f"{store.label}: no events.call_records (earlier tracing_v3 schema); building "
                               "examples from the messages table (text only, no tools)")
                    selections.append((store, fallback, select_kept(store, opts, stats, fallback)))
                if opts.val_fraction > 0:  # 2. the split, over every DB's kept sessions
                    val_ids = val_sessions((sid for _, _, kept in selections for sid in kept), opts.val_fraction,
                                           opts.seed)
                    for _, _, kept in selections:
                        for sid, session in kept.items():
                            session.is_val = sid in val_ids
                if selections:
                    stats.rows_total = sum(s.remaining for _, _, kept in selections for s in kept.values())
                    if on_progress is not None:  # the total is known now: the bar can show it and an ETA
                        on_progress(stats)
                for store, fallback, kept in selections:  # 3. one streamed scan per DB
                    if fallback:
                        convert_messages(store, opts, stats, sink, kept)
                    else:
                        workers = _workers_for(opts, store, kept)
                        if workers > 1:
                            from synth_cli.dataset.parallel import run_parallel

                            if run_parallel(store, opts, stats, sink, kept, workers):
                                continue
                        convert_calls(store, opts, stats, sink, kept)
            except LimitReached:
                pass
            if sink.redactor is not None:
                stats.redaction = sink.redactor.summary()
            for version, count in sorted(stats.schema_versions.items()):
                notice(f"{count} call record(s) have schema_version {version!r}, which this version of synth-ai "
                       f"does not know; they were converted as schema {KNOWN_SCHEMA} (--strict refuses them)")
            if stats.split_conversations:
                notice(f"sessions mode: cut {stats.split_conversations} conversation(s) at an invalid turn; "
                       "the valid parts before and after it were kept")
            if stats.examples == 0:
                files.abort()
            elif stats.train == 0 and output is not None:
                files.abort()
                raise DatasetError(f"all {stats.examples} examples fell in the validation split; nothing written",
                                   hint="lower --val-fraction or change --seed")
            else:
                if val is not None and stats.val == 0:
                    notice(f"the validation split is empty ({val.name} has no examples); "
                           "raise --val-fraction or change --seed")
                files.commit()
                stats.output = str(output) if output is not None else None
                stats.val_output = str(val) if val is not None else None
                if output is not None and train_file is not None and not train_file.through:
                    _write_manifest(opts, stats, train_file, val_file, notice, sink)
    finally:
        for store in stores:
            store.close()
    if opts.dry_run:
        stats.output = opts.output
        stats.val_output = str(val_path(opts.output)) if opts.output and opts.val_fraction > 0 else None
    stats.elapsed_s = time.perf_counter() - started
    return stats


__all__ = ["run_filter"]


def _write_manifest(opts: FilterOptions, stats: FilterStats, train_file, val_file, notice, sink: Sink) -> None:
    """The outputs are in place: record how they were made next to them (see dataset/manifest.py),
    with the SHA-256 of the bytes the sink wrote to each (no second read of the files).
    A manifest that cannot be written is a notice, not a failure (the dataset itself is fine)."""
    from synth_cli.dataset import manifest

    def sha(digest) -> str | None:
        return digest.hexdigest() if digest is not None else None

    outputs = [("train", train_file.target, stats.train, sha(sink.train_sha))]
    if val_file is not None:
        outputs.append(("validation", val_file.target, stats.val, sha(sink.val_sha)))
    try:
        stats.manifest = str(manifest.write(opts, stats, outputs))
    except (OSError, DatasetError) as exc:
        notice(f"the dataset manifest {manifest.manifest_path(train_file.path)} was not written "
               f"({getattr(exc, 'strerror', None) or exc}); `sft` cannot record the filter settings")
