"""What a landing run committed, for the summary line, the demo and Dagster metadata."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipelines.landing.validation import broken_rules
from pipelines.watermarks import Position

if TYPE_CHECKING:
    from pipelines.landing.committer import TopicBatch


@dataclass
class IngestStats:
    records: int = 0
    landed: int = 0
    quarantined: int = 0
    tombstones: int = 0
    batches: int = 0
    seconds: float = 0.0
    commit_seconds: float = 0.0  # time spent committing batches to the lake's tables
    per_topic: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    # Per topic, rows per rule: the rules that quarantined them (critical and structural), and
    # the warning/info rules that only counted them.
    quarantine_rules: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    warning_rules: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    offsets: dict[Position, tuple[int, int]] = field(default_factory=dict)  # first, last committed

    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def commit_ms_per_batch(self) -> float:
        return 1000 * self.commit_seconds / self.batches if self.batches else 0.0

    def add(self, batch: TopicBatch) -> None:
        counts = batch.counts()
        self.records += counts["records"]
        self.landed += counts["landed"]
        self.quarantined += counts["quarantined"]
        self.tombstones += counts["tombstones"]
        self.per_topic[batch.topic].update(counts)
        self.quarantine_rules[batch.topic].update(broken_rules(batch.validation))
        self.warning_rules[batch.topic].update(broken_rules(batch.validation, critical=False))
