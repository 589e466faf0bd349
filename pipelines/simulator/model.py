"""The simulator's two data shapes: an ``Event`` (a fact at a moment, not yet serialised) and
the ``Record`` handed to the Kafka producer (topic, key bytes, value bytes)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message in production order. ``value`` None is a tombstone."""

    topic: str
    key: bytes | None
    value: bytes | None


class Guard(IntEnum):
    """How far an event may be damaged by the malformed-traffic injector.

    FREE events may be *replaced* by a malformed record: losing them changes no expectation
    the report states. CRITICAL events (money, completions, CDC rows) stay and get a malformed
    *extra* copy, because losing them would create reconciliation breaks or lifecycle violations
    nobody planted. PROTECTED events (planted scenarios, canaries, the delete) are never touched.
    """

    FREE = 0
    CRITICAL = 1
    PROTECTED = 2


@dataclass(slots=True)
class Event:
    """A fact at ``time_ms`` (its event_time), serialised only when it is produced.

    For envelope topics ``fields`` are the payload fields besides the envelope; for CDC topics
    ``event_type`` is the Debezium op and ``fields`` holds ``before`` and ``after``.
    """

    time_ms: int
    topic: str
    key: str
    event_type: str
    version: int
    fields: dict[str, Any]
    guard: Guard = Guard.FREE


class IdFactory:
    """Readable, opaque, collision-free ids (``job_000123``) from per-prefix counters."""

    def __init__(self) -> None:
        self._counters: dict[str, int] = {}

    def next(self, prefix: str, width: int) -> str:
        n = self._counters.get(prefix, 0) + 1
        self._counters[prefix] = n
        return f"{prefix}_{n:0{width}d}"

    def gateway_ref(self) -> str:
        """A third-party looking reference: the counter scrambled by an odd multiplier modulo
        2^48, which is a bijection, so refs look random yet never collide."""
        n = self._counters.get("gw", 0) + 1
        self._counters["gw"] = n
        return f"gw_{n * 0x9E3779B97F4A7C15 % (1 << 48):012x}"
