"""Datetimes as trace DBs store them; apart from the record model so readers can parse a
timestamp without importing it (`synth_cli.store.sql`: every report). Never prints."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_datetime(value: Any) -> datetime | None:
    """`2025-08-08 16:00:06.400000`, ISO 8601 (with `T`/`Z`/offset) or epoch seconds."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(float(value), tz=timezone.utc).replace(tzinfo=None)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def format_datetime(value: datetime | None) -> str | None:
    """The published package stores `str(datetime)`: `YYYY-MM-DD HH:MM:SS[.ffffff]`."""
    return None if value is None else str(value)
