"""Simulated time as integer epoch milliseconds, and its RFC 3339 rendering.

Integers keep the heap of pending events cheap to compare; the formatter caches the date
part because hundreds of thousands of timestamps share a few dozen days.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS

_EPOCH = date(1970, 1, 1)


def to_ms(moment: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return round(moment.astimezone(UTC).timestamp() * 1000)


@lru_cache(maxsize=4096)
def day_iso(day: int) -> str:
    """``YYYY-MM-DD`` of the UTC day number ``day`` (days since the epoch)."""
    return (_EPOCH + timedelta(days=day)).isoformat()


def date_iso(ms: int) -> str:
    """``YYYY-MM-DD`` of the UTC date of ``ms``."""
    return day_iso(ms // DAY_MS)


@lru_cache(maxsize=1024)
def _minute_prefix(minute: int) -> str:
    day, rest = divmod(minute, 24 * 60)
    return f"{day_iso(day)}T{rest // 60:02d}:{rest % 60:02d}:"


def rfc3339(ms: int) -> str:
    """``2026-11-23T10:15:30.123Z``: RFC 3339 in UTC with milliseconds, as SPEC §2 requires.

    Records are produced roughly in time order, so the minute prefix is nearly always cached."""
    minute, rest = divmod(ms, MINUTE_MS)
    return f"{_minute_prefix(minute)}{rest // SECOND_MS:02d}.{rest % SECOND_MS:03d}Z"


def european(ms: int) -> str:
    """``23/11/2026 10:15``: how a misconfigured producer writes a timestamp (malformed traffic)."""
    y, m, d = date_iso(ms).split("-")
    rest = ms % DAY_MS
    return f"{d}/{m}/{y} {rest // HOUR_MS:02d}:{rest % HOUR_MS // MINUTE_MS:02d}"
