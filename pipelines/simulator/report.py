"""What a simulation produced and what it planted: the answer key for the lake's tests.

Counts are of records as produced (tombstones, redeliveries and malformed records included in
``records_per_topic``). The planted lists name exactly what the marts should find:
every gateway_ref whose reconciliation status is not ``matched``, and every lifecycle
violation, by the id of the offending entity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pipelines.catalog import RECONCILIATION_BREAKS

from .catalog import TOPICS

RECONCILIATION_STATUSES = RECONCILIATION_BREAKS  # what the simulator plants, one scenario each
# kind -> the id reported for it: the entity of the event that breaks the lifecycle.
LIFECYCLE_VIOLATIONS: dict[str, str] = {
    "capture_without_authorization": "payment_id",
    "refund_above_captured": "refund_id",
    "payout_above_captured": "payout_id",
    "review_of_uncompleted_job": "review_id",
    "started_after_cancelled": "appointment_id",
}


def _per_topic() -> dict[str, int]:
    return dict.fromkeys(TOPICS, 0)


@dataclass
class SimulationReport:
    target_events: int
    seed: int
    records_per_topic: dict[str, int] = field(default_factory=_per_topic)
    tombstones_per_topic: dict[str, int] = field(default_factory=_per_topic)
    redeliveries_per_topic: dict[str, int] = field(default_factory=_per_topic)
    late_per_topic: dict[str, int] = field(default_factory=_per_topic)
    malformed: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, class) -> records
    reconciliation_breaks: dict[str, list[str]] = field(
        default_factory=lambda: {status: [] for status in RECONCILIATION_STATUSES}
    )
    lifecycle_violations: dict[str, list[str]] = field(
        default_factory=lambda: {kind: [] for kind in LIFECYCLE_VIOLATIONS}
    )
    # appointments whose tradesperson is still driving there when the stream ends, and those of
    # them running late (ETA past the latest window_start + 15 minutes)
    en_route: list[str] = field(default_factory=list)
    running_late: list[str] = field(default_factory=list)
    canaries: dict[str, dict[str, str]] = field(default_factory=dict)  # entity id -> personal field -> value
    deleted: dict[str, list[str]] = field(default_factory=dict)  # CDC topic -> deleted entity ids

    @property
    def total_records(self) -> int:
        return sum(self.records_per_topic.values())

    def canaries_flat(self) -> list[str]:
        """Every clear-text canary value, for grepping the lake."""
        return sorted({value for fields in self.canaries.values() for value in fields.values()})

    def to_dict(self) -> dict[str, object]:
        """A JSON-serialisable, deterministically ordered view (malformed keyed ``topic/class``)."""
        return {
            "target_events": self.target_events,
            "seed": self.seed,
            "total_records": self.total_records,
            "records_per_topic": dict(sorted(self.records_per_topic.items())),
            "tombstones_per_topic": dict(sorted(self.tombstones_per_topic.items())),
            "redeliveries_per_topic": dict(sorted(self.redeliveries_per_topic.items())),
            "late_per_topic": dict(sorted(self.late_per_topic.items())),
            "malformed": {f"{topic}/{cls}": n for (topic, cls), n in sorted(self.malformed.items())},
            "reconciliation_breaks": {k: list(v) for k, v in self.reconciliation_breaks.items()},
            "lifecycle_violations": {k: list(v) for k, v in self.lifecycle_violations.items()},
            "en_route": list(self.en_route),
            "running_late": list(self.running_late),
            "canaries": {k: dict(v) for k, v in sorted(self.canaries.items())},
            "deleted": {k: list(v) for k, v in sorted(self.deleted.items())},
        }
