"""What to simulate: size, seed and the share of imperfect traffic."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

from pipelines.errors import TradelakeError


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

    def __post_init__(self) -> None:
        if self.events < 1:
            raise TradelakeError(f"a simulation needs at least 1 event, not {self.events}")
        for f in fields(self):
            share = getattr(self, f.name)
            if f.name.endswith("_rate") and not 0 <= share <= 1:  # also false for NaN
                raise TradelakeError(f"{f.name} is a share of records, within 0..1, not {share}")
