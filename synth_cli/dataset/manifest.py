"""How a dataset was made: the manifest `filter` writes next to its output.

`filter --output OUT.jsonl` also writes `OUT.jsonl.manifest.json` (atomically, through
:mod:`synth_cli.dataset.writer`) once the outputs are in place::

    {"format": "synth-ai.dataset-manifest", "version": 1, "created_at": "2026-12-01T22:10:00Z",
     "synth_ai": "0.3.0",
     "settings": {"mode": "calls", "filters": {"min_reward": 1}, "val_fraction": 0.2, "seed": 0, ...},
     "sources": [{"db": "/path/traces.db", "kind": "sqlite", "source": "call_records"}],
     "counts": {"sessions_scanned": 12, "sessions_kept": 6, "examples": 36, "train": 30, "val": 6},
     "files": [{"role": "train", "name": "OUT.jsonl", "sha256": "…", "bytes": 1234, "examples": 30},
               {"role": "validation", "name": "OUT.val.jsonl", "sha256": "…", ...}]}

Source DBs are named by their label: a server URL without user, password or query (tokens
never appear). `sft create/run` find the manifest of the training file, check that the file's
sha256 is listed in it (a file edited after `filter` has no manifest), and put the settings in
the job's metadata (see :func:`job_metadata`). No output is written for a FIFO or device, and
none on `--dry-run`.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

FORMAT = "synth-ai.dataset-manifest"
VERSION = 1
SUFFIX = ".manifest.json"
#: OpenAI's job metadata: string values of at most 512 characters.
MAX_VALUE = 512


def manifest_path(output: str | os.PathLike) -> Path:
    output = Path(output)
    return output.with_name(output.name + SUFFIX)


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def safe_label(label: str) -> str:
    """A DB label with any credentials (user, password, query such as ?authToken=) removed; a path's
    undecodable bytes shown as `\\xff` (a manifest and a job's metadata are UTF-8 text)."""
    if "://" not in label:
        path = os.path.abspath(label) if os.path.exists(label) else label
        return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    try:
        parts = urlsplit(label)
        host = parts.hostname or ""
        netloc = f"[{host}]" if ":" in host else host
        if parts.port:
            netloc += f":{parts.port}"
    except ValueError:
        return label.split("://", 1)[0] + "://…"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def settings_of(opts: Any) -> dict[str, Any]:
    """The filter settings that decide which examples a dataset holds (not where it went)."""
    settings: dict[str, Any] = {"mode": opts.mode}
    filters = opts.session_filters()
    if filters.get("where"):
        filters["where"] = [list(pair) for pair in filters["where"]]
    if filters:
        settings["filters"] = filters
    if opts.models:
        settings["models"] = list(opts.models)
    for name in ("include_errors", "include_metadata", "strict"):
        if getattr(opts, name):
            settings[name] = True
    if opts.limit is not None:
        settings["limit"] = opts.limit
    if opts.val_fraction:
        settings["val_fraction"] = opts.val_fraction
        settings["seed"] = opts.seed
    settings["redact"] = opts.redact
    return settings


def build(opts: Any, stats: Any, outputs: list[tuple]) -> dict[str, Any]:
    """The manifest document; `outputs`: (role, path, examples[, sha256 of what was written]) of each
    file written (a file whose sha256 is not given is read to compute it)."""
    from synth_cli import __version__

    return {
        "format": FORMAT, "version": VERSION,
        "created_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "synth_ai": __version__,
        "settings": settings_of(opts),
        "sources": [{**db, "db": safe_label(str(db.get("db", "")))} for db in stats.dbs],
        "counts": {"sessions_scanned": stats.sessions_scanned, "sessions_kept": stats.sessions_kept,
                   "calls_used": stats.calls_used, "examples": stats.examples, "train": stats.train,
                   "val": stats.val},
        "files": [{"role": role, "name": path.name, "sha256": (known[0] if known and known[0] else sha256_of(path)),
                   "bytes": path.stat().st_size, "examples": examples} for role, path, examples, *known in outputs],
    }


def write(opts: Any, stats: Any, outputs: list[tuple]) -> Path:
    """Write the manifest next to the first output; returns its path."""
    from synth_cli.dataset.writer import write_small_file

    doc = build(opts, stats, outputs)
    data = (json.dumps(doc, indent=2, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
    return write_small_file(manifest_path(outputs[0][1]), data)


def find(path: str | os.PathLike, sha256: str) -> dict[str, Any] | None:
    """The manifest next to `path` that lists a file with this sha256; None when there is none
    (no manifest, unreadable, another format, or the file changed since `filter` wrote it)."""
    candidate = manifest_path(path)
    try:
        if candidate.stat().st_size > 1 << 20:
            return None
        doc = json.loads(candidate.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("files"), list):
        return None
    if not any(isinstance(f, dict) and f.get("sha256") == sha256 for f in doc["files"]):
        return None
    return doc


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def job_metadata(doc: dict[str, Any]) -> dict[str, str]:
    """What a job's metadata records from a manifest, within OpenAI's limits (3 keys, values of
    at most 512 characters): `filter_settings` (compact JSON; the longest lists cut, marked
    `"…"`), `dataset_sources` (the DB labels, joined by spaces, cut at 512) and
    `dataset_counts` ("sessions S/T · examples N (train A, val B)")."""
    settings = doc.get("settings") if isinstance(doc.get("settings"), dict) else {}
    text = _compact(settings)
    if len(text) > MAX_VALUE:
        trimmed = json.loads(text)
        filters = trimmed.get("filters") or {}
        for key in ("where", "experiments"):
            if key in filters and len(_compact(trimmed)) > MAX_VALUE:
                filters[key] = ["…"]
        if "models" in trimmed and len(_compact(trimmed)) > MAX_VALUE:
            trimmed["models"] = ["…"]
        text = _compact(trimmed)
        if len(text) > MAX_VALUE:
            text = text[:MAX_VALUE - 1] + "…"
    out = {"filter_settings": text}
    sources = [str(s.get("db")) for s in doc.get("sources") or [] if isinstance(s, dict)]
    if sources:
        joined = " ".join(sources)
        out["dataset_sources"] = joined if len(joined) <= MAX_VALUE else joined[:MAX_VALUE - 1] + "…"
    counts = doc.get("counts") if isinstance(doc.get("counts"), dict) else {}
    if counts:
        out["dataset_counts"] = (f"sessions {counts.get('sessions_kept')}/{counts.get('sessions_scanned')} · "
                                 f"examples {counts.get('examples')} (train {counts.get('train')}, "
                                 f"val {counts.get('val')})")
    return out
