"""The incremental staging models read the lake's Delta tables through their log and can never
skip a committed row, whatever the order in which commits become visible between builds.

The lake is written with ``deltalake`` directly, commit by commit, so each test decides the
interleaving: a partition that runs ahead of another (a later batch visible before an earlier
one of another partition, the case that made the old ``max(_batch_id)`` filter lose a batch),
a partition new to the warehouse, a data file that no commit references, a topic reset (offsets
restart at 0 beside the old stream), a build between a batch's rows and its ``_batches`` rows,
and a warehouse whose lake was replaced (refilled, or another one), locally and on S3.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.build import BuildResult, build
from pipelines.lake.schemas import BATCHES_TABLE, PARTITION_COLUMN, QUARANTINE_TABLE
from pipelines.settings import Settings
from tests.component.dbt_lake import append, empty_lake, schemas, start_stream

TOPIC = "fleet.gps"
INCREMENTAL = "stg_fleet__gps stg_payments__ledger"

Row = tuple[str, int, int]  # (event_id, partition, offset)
COMPLETENESS = (
    "select topic_id, first_offset, last_offset, records, landed, quarantined, redeliveries"
    f" from audit.ingestion_completeness where topic = '{TOPIC}' order by topic_id"
)


class GpsLake:
    """A lake whose fleet.gps table the test commits to batch by batch, remembering every row."""

    def __init__(self, settings: Settings, stream: str = "stream-a") -> None:
        self.settings = settings
        self.committed: set[Row] = set()
        self.stream = stream
        start_stream(settings, TOPIC, stream, 6, "first seen")

    def commit(
        self,
        batch_id: int,
        offsets: dict[int, range],
        quarantined: dict[int, set[int]] | None = None,
        counted: bool = True,
    ) -> list[dict]:
        """One batch: its fleet.gps rows in one commit, its quarantined records (``quarantined``:
        offsets per partition) in one, then its ``_batches`` rows (as landing does, last) unless
        not ``counted``; returns those rows."""
        now = datetime.now(UTC)
        bad = quarantined or {}
        rows = [
            ping(f"{self.stream}-{p}-{o}", batch_id, p, o, now)
            for p, partition_offsets in offsets.items()
            for o in partition_offsets
            if o not in bad.get(p, ())
        ]
        if rows:
            append(self.settings, TOPIC, rows)
        if bad:
            append(
                self.settings, QUARANTINE_TABLE, [rejected(batch_id, p, o, now) for p, os in bad.items() for o in os]
            )
        self.committed |= {(r["event_id"], r["_partition"], r["_offset"]) for r in rows}
        counts = [batch(batch_id, self.stream, p, o, len(bad.get(p, ())), now) for p, o in offsets.items()]
        if counted:
            append(self.settings, BATCHES_TABLE, counts)
        return counts

    def reset(self, stream: str) -> None:
        """The topic is recreated: a new stream, whose offsets restart at 0, lands beside the old."""
        start_stream(self.settings, TOPIC, stream, 6, f"reset: was topic ID {self.stream}")
        self.stream = stream

    def build(self) -> BuildResult:
        return build(self.settings, select=INCREMENTAL)

    def staged(self) -> set[Row]:
        return set(self.sql("select event_id, _partition, _offset from staging.stg_fleet__gps"))

    def sql(self, query: str) -> list[tuple]:
        with duckdb.connect(str(self.settings.home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(query).fetchall()


def ping(event_id: str, batch_id: int, partition: int, offset: int, at: datetime) -> dict:
    return {
        "_topic": TOPIC,
        "_partition": partition,
        "_offset": offset,
        "_key": f"tp-{partition}",
        "_kafka_timestamp": at,
        "_ingested_at": at,
        "_batch_id": batch_id,
        "event_id": event_id,
        "event_type": "gps.ping",
        "event_time": "2026-11-23T10:15:30.123Z",
        "schema_version": 1,
        "producer": "fleet-telematics/1.0",
        "tradesperson_id": f"tp-{partition}",
        "appointment_id": None,
        "lat": 51.5,
        "lon": -0.12,
        "speed_kmh": 30.0,
        "accuracy_m": 5.0,
        PARTITION_COLUMN: at.date(),
    }


def rejected(batch_id: int, partition: int, offset: int, at: datetime) -> dict:
    lineage = {k: v for k, v in ping("", batch_id, partition, offset, at).items() if k.startswith("_")}
    return lineage | {
        "event_type": "gps.ping",
        "schema_version": 1,
        "contract": "fleet.gps/gps.ping.v1",
        "rules": ["lat is between -90 and 90"],
        "reason": "lat is between -90 and 90: 123.0",
        "raw": b"{}",
    }


def batch(batch_id: int, stream: str, partition: int, offsets: range, quarantined: int, at: datetime) -> dict:
    n = len(offsets)
    return {
        "batch_id": batch_id,
        "topic": TOPIC,
        "topic_id": stream,
        "partition": partition,
        "first_offset": offsets.start,
        "last_offset": offsets.stop - 1,
        "records": n,
        "landed": n - quarantined,
        "quarantined": quarantined,
        "tombstones": 0,
        "last_record_sha256": "",
        "validation": "{}",
        "ingested_at": at,
        PARTITION_COLUMN: at.date(),
    }


def write_orphan(settings: Settings, rows: list[dict]) -> None:
    """A Parquet file inside the topic table's folder that no Delta commit references (what a
    crash between writing a data file and committing it leaves behind)."""
    day = rows[0][PARTITION_COLUMN]
    folder = Path(settings.lake.table_uri(TOPIC)) / f"{PARTITION_COLUMN}={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    schema = schemas()[TOPIC]
    table = pa.Table.from_pylist(rows, schema=schema).drop_columns([PARTITION_COLUMN])
    pq.write_table(table, folder / "part-00000-orphan-never-committed.c000.snappy.parquet")


@pytest.fixture
def lake(tmp_path: Path) -> GpsLake:
    return GpsLake(empty_lake(tmp_path / "home"))


def test_no_committed_row_is_skipped_whatever_the_interleaving(lake: GpsLake):
    lake.commit(1, {0: range(0, 10), 1: range(0, 10)})
    # Left by a crashed writer: rows far ahead of everything, in no commit. Read by a glob, they
    # would be staged and would also push partition 0's bound past the rows committed later.
    now = datetime.now(UTC)
    write_orphan(lake.settings, [ping(f"orphan-{o}", 99, 0, o, now) for o in range(100, 105)])
    lake.build()
    assert lake.staged() == lake.committed

    # Partition 1 runs ahead: batch 3 becomes visible before batch 2 of partition 0.
    lake.commit(3, {1: range(10, 20)})
    assert not lake.build().full_refresh
    assert lake.staged() == lake.committed

    # Batch 2, lower than the highest batch already staged, and a partition new to the warehouse.
    lake.commit(2, {0: range(10, 20), 2: range(0, 5)})
    assert not lake.build().full_refresh
    assert lake.staged() == lake.committed
    assert not any(event_id.startswith("orphan-") for event_id, _, _ in lake.staged())


def test_an_s3_lake_is_read_through_the_delta_log(tmp_path: Path, s3_env: dict[str, str]):
    """On the loopback S3 server: dbt loads httpfs and the S3 secret from the lake's settings
    (not from this process's environment, which has no AWS variable)."""
    lake = GpsLake(empty_lake(tmp_path / "home", s3_env))
    lake.commit(1, {0: range(0, 10), 1: range(0, 10)})
    lake.build()
    lake.commit(3, {1: range(10, 20)})
    lake.commit(2, {0: range(10, 20)})
    assert not lake.build().full_refresh
    assert lake.staged() == lake.committed


def test_a_new_stream_beside_the_old_one_is_staged_from_its_first_offset(lake: GpsLake):
    lake.commit(1, {0: range(0, 20)}, quarantined={0: {3}})
    lake.build()

    # The topic is reset: the lake records the new stream, whose offsets restart at 0.
    lake.reset("stream-b")
    lake.commit(2, {0: range(0, 5)}, quarantined={0: {3}})
    assert lake.build().full_refresh, "a stream newer than the warehouse's rows rebuilds the incremental models"
    assert lake.staged() == lake.committed

    # Incremental again, with both streams staged: offsets 5–9 of the new stream are below the
    # old stream's last offset (19) but in a later batch, so they are read.
    lake.commit(3, {0: range(5, 10)})
    assert not lake.build().full_refresh
    assert lake.staged() == lake.committed

    # The audit reconciles each stream on its own (its tests: offsets contiguous per stream,
    # one quarantined record per stream and offset).
    build(lake.settings)
    assert lake.sql(COMPLETENESS) == [("stream-a", 0, 19, 20, 19, 1, 0), ("stream-b", 0, 9, 10, 9, 1, 0)]
    assert lake.sql('select topic_id, "offset" from audit.quarantine order by topic_id') == [
        ("stream-a", 3),
        ("stream-b", 3),
    ]


def test_a_build_between_a_batchs_rows_and_its_counts_passes_the_audit(lake: GpsLake):
    """During ``ingest --follow`` a build can read a batch's rows before its ``_batches`` rows
    are committed (they come last): the audit counts only the batches it has counts for."""
    lake.commit(1, {0: range(0, 10)})
    counts = lake.commit(2, {0: range(10, 20)}, counted=False)
    build(lake.settings)
    assert lake.staged() == lake.committed
    assert lake.sql(COMPLETENESS) == [("stream-a", 0, 9, 10, 10, 0, 0)]

    append(lake.settings, BATCHES_TABLE, counts)
    assert not build(lake.settings).full_refresh
    assert lake.sql(COMPLETENESS) == [("stream-a", 0, 19, 20, 20, 0, 0)]


def test_a_lake_emptied_and_refilled_is_rebuilt_from_scratch(tmp_path: Path):
    home = tmp_path / "home"
    first = GpsLake(empty_lake(home))
    first.commit(1, {0: range(0, 50)})
    first.build()

    # The same home, a new lake (as after a new embedded broker): batch ids and offsets restart.
    shutil.rmtree(first.settings.lake.url)
    second = GpsLake(empty_lake(home), "stream-c")
    second.commit(1, {0: range(0, 10)})
    assert second.build().full_refresh
    assert second.staged() == second.committed


def test_a_warehouse_built_from_another_lake_is_rebuilt_from_scratch(tmp_path: Path):
    older = GpsLake(empty_lake(tmp_path / "other"), "stream-d")  # its stream predates the rows below
    older.commit(1, {0: range(0, 5)})
    built = GpsLake(empty_lake(tmp_path / "home"))
    built.commit(1, {0: range(0, 10)})
    built.commit(2, {0: range(10, 20)})
    built.build()

    # The same warehouse, pointed at the older lake: it lacks the batch of the newest staged row.
    built.settings = replace(built.settings, lake=older.settings.lake)
    assert built.build().full_refresh
    assert built.staged() == older.committed
