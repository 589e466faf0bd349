"""What to simulate: size, seed and the share of imperfect traffic."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class SimulationConfig:
    """``events`` is a target (±5 %): the actual count is in the report. The rates are shares of
    records: redelivered with identical bytes, produced hours to days after their event_time,
    and malformed (spread over every malformed class the topic allows)."""

    events: int = 100_000
    seed: int = 42
    redelivery_rate: float = 0.01
    late_rate: float = 0.02
    malformed_rate: float = 0.005
    start: datetime = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday
