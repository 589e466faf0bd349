"""``tradelake status``: per topic/partition, how far the lake is behind the cluster.

The lake's side comes from the ``_batches`` Delta table (committed versions only), restricted
to the stream each topic is read from now (its latest ``_streams`` row): after
``ingest --reset-topic`` the old stream's offsets stay in the lake but say nothing about the
new stream's lag. Each partition's owner — the landing process that took it last and has not
given it up — comes from ``_owners`` (pipelines.landing.ownership).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import duckdb
import pyarrow as pa

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    OWNERS_SCHEMA,
    OWNERS_TABLE,
    QUARANTINE_TABLE,
    STREAMS_TABLE,
)
from pipelines.lake.tables import Lake
from pipelines.landing.stream import recorded_streams
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks

_BATCH_COLUMNS = [
    "topic",
    "topic_id",
    "partition",
    "last_offset",
    "landed",
    "quarantined",
    "tombstones",
    "batch_id",
    "ingested_at",
]


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
    owner: str | None = None  # "<host>:<pid>" of the landing process that owns it now (None: none)

    @property
    def lag(self) -> int | None:
        return None if self.high_watermark is None else max(self.high_watermark - self.landed_up_to, 0)


def require_lake(settings: Settings) -> None:
    """Refuse a home that has never been ingested into (there is nothing to show the status of),
    and a lake with a table whose log cannot be read: status is where an operator looks first."""
    lake = Lake(settings.lake)
    if not lake.exists(BATCHES_TABLE):
        raise TradelakeError(f"no lake at {settings.lake.url}; run 'tradelake ingest' first")
    for name in (*TOPIC_NAMES, QUARANTINE_TABLE, STREAMS_TABLE):
        lake.table(name)  # a corrupt log fails here, naming its table


def read_or_empty(lake: Lake, name: str, schema: pa.Schema, columns: list[str]) -> pa.Table:
    """The table's committed rows; a table not created yet reads as empty."""
    table = lake.read(name, columns)
    return schema.empty_table().select(columns) if table is None else table


def committed_positions(settings: Settings) -> dict[tuple[str, int], tuple]:
    """Per (topic, partition) of the current stream: next offset, landed, quarantined,
    tombstones, last batch, last ingestion time (the committed ``_batches`` rows) and owner."""
    lake = Lake(settings.lake)
    batches = read_or_empty(lake, BATCHES_TABLE, BATCHES_SCHEMA, _BATCH_COLUMNS)
    owners = read_or_empty(lake, OWNERS_TABLE, OWNERS_SCHEMA, OWNERS_SCHEMA.names)
    streams = recorded_streams(lake)
    current = pa.table(
        {"topic": list(streams), "topic_id": [s.topic_id for s in streams.values()]},
        schema=pa.schema([("topic", pa.string()), ("topic_id", pa.string())]),
    )
    with duckdb.connect() as con:
        con.register("batches", batches)
        con.register("owners", owners)
        con.register("current_stream", current)
        # The owner: the latest event of the highest epoch, if it is a take (a release, or a
        # take of an older epoch than another's, means nobody holds it now).
        rows = con.execute(
            "with landed as (select b.topic, b.partition, max(b.last_offset) + 1 as landed_to, "
            "sum(b.landed) as landed, sum(b.quarantined) as quarantined, sum(b.tombstones) as tombstones, "
            "max(b.batch_id) as last_batch, max(b.ingested_at) as last_ingested_at "
            "from batches b left join current_stream s on s.topic = b.topic "
            "where s.topic is null or b.topic_id = s.topic_id group by all), "
            "owned as (select o.topic, o.partition, "
            "arg_max_null(case when o.event = 'taken' then o.owner end, (o.epoch, o.changed_at)) as owner "
            "from owners o left join current_stream s on s.topic = o.topic "
            "where s.topic is null or o.topic_id = s.topic_id group by all) "
            "select coalesce(l.topic, o.topic), coalesce(l.partition, o.partition), coalesce(l.landed_to, 0), "
            "coalesce(l.landed, 0), coalesce(l.quarantined, 0), coalesce(l.tombstones, 0), l.last_batch, "
            "l.last_ingested_at, o.owner "
            "from landed l full join owned o on o.topic = l.topic and o.partition = l.partition"
        ).fetchall()
    return {(r[0], r[1]): tuple(r[2:]) for r in rows}


def partition_status(settings: Settings, with_broker: bool = True) -> list[PartitionStatus]:
    """The lake's committed totals per partition, with the cluster's high watermarks when ``with_broker``."""
    landed = committed_positions(settings)
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
            *(landed.get((topic, partition)) or (0, 0, 0, 0, None, None, None)),
        )
        for topic, partition in sorted(set(landed) | set(watermarks), key=lambda k: (order.get(k[0], 99), k[1]))
    ]


def describe_lag(rows: list[PartitionStatus], limit: int = 8) -> str:
    """The lagging partitions, most behind first, each with its owner: ``fleet.gps[0] 1,234 (host:pid)``."""
    lagging = sorted((r for r in rows if r.lag), key=lambda r: (-(r.lag or 0), r.topic, r.partition))
    shown = [f"{r.topic}[{r.partition}] {r.lag:,} ({r.owner or 'no owner'})" for r in lagging[:limit]]
    more = len(lagging) - limit
    return ", ".join(shown) + (f", and {more} more partition(s)" if more > 0 else "")


def format_status(rows: list[PartitionStatus], now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    header = (
        "topic",
        "part",
        "high wm",
        "landed to",
        "lag",
        "landed",
        "quarant.",
        "tombst.",
        "batch",
        "freshness",
        "owner",
    )
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
                r.owner or "-",
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    )
