"""Debezium-style change events for the ``customers`` and ``tradespeople`` tables (SPEC §2.3).

The WAL position (``source.lsn``) and transaction id are assigned when a change is produced,
not when it is planned, so they increase strictly in production order as a real connector's do.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

from .catalog import CUSTOMERS, TRADESPEOPLE
from .model import Event, Guard

TABLES: dict[str, str] = {CUSTOMERS: "customers", TRADESPEOPLE: "tradespeople"}
ID_FIELDS: dict[str, str] = {CUSTOMERS: "customer_id", TRADESPEOPLE: "tradesperson_id"}


def change(
    time_ms: int,
    topic: str,
    key: str,
    op: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    guard: Guard = Guard.CRITICAL,
) -> Event:
    """A row change: ``op`` is r (snapshot read), c (insert), u (update) or d (delete)."""
    return Event(time_ms, topic, key, op, 0, {"before": before, "after": after}, guard)


def key_bytes(topic: str, key: str) -> bytes:
    """Debezium's message key: the primary key as a JSON object, ``{"customer_id": "cus_0007"}``."""
    return orjson.dumps({ID_FIELDS[topic]: key})


class ChangeLog:
    """The connector's position in the database's write-ahead log."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._lsn = 30_000_000_000 + rng.randrange(1_000_000_000)
        self._tx = 700_000 + rng.randrange(100_000)

    def value(self, event: Event) -> dict[str, Any]:
        """The change event value at the next WAL position (``ts_ms`` is the change time)."""
        self._lsn += self._rng.randint(56, 4096)
        self._tx += 1
        return {
            "before": event.fields["before"],
            "after": event.fields["after"],
            "op": event.event_type,
            "ts_ms": event.time_ms,
            "source": {"db": "marketplace", "table": TABLES[event.topic], "lsn": self._lsn, "txId": self._tx},
        }
