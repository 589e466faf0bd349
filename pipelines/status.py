"""``tradelake status``: per topic/partition, how far the lake is behind the cluster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES
from pipelines.landing.ledger import Ledger
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks


@dataclass
class PartitionStatus:
    topic: str
    partition: int
    high_watermark: int | None
    landed_up_to: int  # next offset to land
    landed: int
    quarantined: int
    tombstones: int
    last_batch: int | None
    last_ingested_at: datetime | None

    @property
    def lag(self) -> int | None:
        return None if self.high_watermark is None else max(self.high_watermark - self.landed_up_to, 0)


def partition_status(settings: Settings, with_broker: bool = True) -> list[PartitionStatus]:
    """Ledger totals per partition, with the cluster's high watermarks when ``with_broker``."""
    rows = (
        duckdb.from_arrow(Ledger(settings.home).manifests())
        .query(
            "m",
            "select topic, partition, max(last_offset) + 1, sum(landed), sum(quarantined), sum(tombstones), "
            "max(batch_id), max(ingested_at) from m group by all",
        )
        .fetchall()
    )
    landed = {(r[0], r[1]): r[2:] for r in rows}
    watermarks: dict[tuple[str, int], int] = {}
    if with_broker:
        client = kafka.admin(settings)
        kafka.check_reachable(client, settings)
        metadata = client.list_topics(timeout=10).topics
        partitions = [(name, p) for name in TOPIC_NAMES if name in metadata for p in metadata[name].partitions]
        watermarks = high_watermarks(settings, partitions)
    order = {name: i for i, name in enumerate(TOPIC_NAMES)}
    return [
        PartitionStatus(
            topic,
            partition,
            watermarks.get((topic, partition)),
            *(landed.get((topic, partition)) or (0, 0, 0, 0, None, None)),
        )
        for topic, partition in sorted(set(landed) | set(watermarks), key=lambda k: (order.get(k[0], 99), k[1]))
    ]


def format_status(rows: list[PartitionStatus], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    header = ("topic", "part", "high wm", "landed to", "lag", "landed", "quarant.", "tombst.", "batch", "freshness")
    lines = [header]
    for r in rows:
        fresh = "never" if r.last_ingested_at is None else f"{(now - r.last_ingested_at).total_seconds():.0f}s ago"
        lines.append(
            (
                r.topic,
                str(r.partition),
                "?" if r.high_watermark is None else f"{r.high_watermark:,}",
                f"{r.landed_up_to:,}",
                "?" if r.lag is None else f"{r.lag:,}",
                f"{r.landed:,}",
                f"{r.quarantined:,}",
                f"{r.tombstones:,}",
                "-" if r.last_batch is None else str(r.last_batch),
                fresh,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )
