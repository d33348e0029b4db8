"""Fast JSON: orjson when installed (it is a dependency), stdlib json otherwise."""

from __future__ import annotations

from typing import Any

try:  # orjson parses call_records blobs 3x faster than json; see docs/performance.md
    import orjson as _orjson
except ImportError:  # pragma: no cover - orjson is a declared dependency
    _orjson = None

import json as _json


def loads(data: str | bytes) -> Any:
    if _orjson is not None:
        return _orjson.loads(data)
    return _json.loads(data)


def dumps_bytes(obj: Any) -> bytes:
    """Compact JSON as bytes, keys in insertion order, non-ASCII kept."""
    if _orjson is not None:
        return _orjson.dumps(obj, default=_default)
    return _json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def dumps(obj: Any) -> str:
    return dumps_bytes(obj).decode()


def _default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


JSONDecodeError = (ValueError, TypeError)
