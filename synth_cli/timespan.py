"""Moments in time computed from user input, without overflowing `datetime`.

`--since 99999999999d` or `recent --hours 1e300` reach back further than the year 1:
such a span means "from the beginning", not an OverflowError. A date at the end of the
calendar (`--until 9999-12-31`) ends at the latest moment SQLite compares (:data:`LATEST`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

#: the latest moment SQLite's date functions accept (`julianday('9999-12-31 23:59:59.999999')` is NULL).
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999000)


def clamp(moment: datetime) -> datetime:
    """`moment`, or LATEST when it is past what SQLite can compare."""
    naive = moment.replace(tzinfo=None)
    return LATEST.replace(tzinfo=moment.tzinfo) if naive > LATEST else moment


def before(moment: datetime, seconds: float) -> datetime:
    """`moment - seconds`, or the earliest representable moment when that is before the year 1."""
    try:
        return moment - timedelta(seconds=seconds)
    except OverflowError:
        return datetime.min.replace(tzinfo=moment.tzinfo) if seconds > 0 else datetime.max.replace(
            tzinfo=moment.tzinfo)


def after(moment: datetime, seconds: float) -> datetime:
    """`moment + seconds`, or the latest representable moment when that is past the year 9999."""
    try:
        return moment + timedelta(seconds=seconds)
    except OverflowError:
        return datetime.max.replace(tzinfo=moment.tzinfo) if seconds > 0 else datetime.min.replace(
            tzinfo=moment.tzinfo)
