"""audit.ingestion_completeness on offsets that hold no record: legitimate gaps pass, loss and
duplication fail the build.

Transaction markers and compaction leave offsets no record comes from, so a partition's
offsets are not its records. Each ``_batches`` row records where its batch's consumption began
(``start_offset``); the batches' ranges must tile the partition and no offset may be held twice.
The lake is written with ``deltalake`` directly, so each test states exactly what was committed.
"""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.build import build
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import BATCHES_SCHEMA, BATCHES_TABLE, PARTITION_COLUMN, QUARANTINE_TABLE
from pipelines.settings import Settings
from tests.component.dbt_lake import append, empty_lake, start_stream
from tests.component.test_dbt_incremental import TOPIC, batch, ping, rejected

STREAM = "stream-a"
COMPLETENESS = (
    "select start_offset, first_offset, last_offset, records, offset_gaps, range_breaks, duplicate_offsets"
    f" from audit.ingestion_completeness where topic = '{TOPIC}'"
)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = empty_lake(tmp_path / "home")
    start_stream(settings, TOPIC, STREAM, 6, "first seen")
    return settings


def commit(
    settings: Settings,
    batch_id: int,
    start: int,
    landed: list[int],
    quarantined: tuple[int, ...] = (),
    expired: int = 0,
) -> dict:
    """One batch of partition 0 that began consuming at ``start`` and got records at the offsets
    ``landed`` and ``quarantined``, the first ``expired`` offsets from ``start`` gone before it
    read them: its rows, then its ``_batches`` row (as landing commits them)."""
    now = datetime.now(UTC)
    append(settings, TOPIC, [ping(f"{STREAM}-{o}", batch_id, 0, o, now) for o in landed])
    if quarantined:
        append(settings, QUARANTINE_TABLE, [rejected(batch_id, 0, o, now) for o in quarantined])
    offsets = sorted([*landed, *quarantined])
    row = batch(batch_id, STREAM, 0, range(offsets[0], offsets[-1] + 1), len(quarantined), now)
    row |= {"start_offset": start, "expired_offsets": expired, "records": len(offsets), "landed": len(landed)}
    append(settings, BATCHES_TABLE, [row])
    return row


def completeness(settings: Settings) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(COMPLETENESS).fetchall()


def test_offsets_without_a_record_pass_and_are_reported_as_gaps(settings: Settings):
    # offset 5: a commit marker inside batch 1; 9: the marker after its last transaction, where
    # batch 2's consumption began; 12: an aborted record a read_committed consumer skipped
    commit(settings, 1, start=0, landed=[0, 1, 2, 3, 4, 6, 7], quarantined=(8,))
    commit(settings, 2, start=9, landed=[10, 11, 13, 14])
    build(settings)
    assert completeness(settings) == [(0, 0, 14, 12, 3, 0, 0)]


@pytest.mark.parametrize(
    ("start", "why"), [(12, "offsets 9-11 skipped"), (6, "offsets 6-8 read again")], ids=["skipped", "re-read"]
)
def test_a_range_that_does_not_follow_the_previous_one_fails_the_build(settings: Settings, start: int, why: str):
    commit(settings, 1, start=0, landed=[0, 1, 2, 3, 4, 5, 6, 7, 8])
    commit(settings, 2, start=start, landed=[12, 13])
    with pytest.raises(TradelakeError, match=r"dbt build failed: 1 node\(s\): test .*ingestion_completeness"):
        build(settings)


def test_an_offset_held_twice_fails_the_build(settings: Settings):
    # offset 2 both landed and quarantined, 4 a gap: the counts balance and fit the range, the offsets do not
    commit(settings, 1, start=0, landed=[0, 1, 2, 3, 5], quarantined=(2,))
    with pytest.raises(TradelakeError, match=r"dbt build failed: 1 node\(s\): test .*ingestion_completeness"):
        build(settings)


def test_records_expired_before_landing_read_them_are_loss_and_fail_the_build(settings: Settings):
    """Landing resumed at 5 but the broker had dropped offsets 5-7 (retention): the batch begins
    at its resume point and counts them as expired, not as gaps."""
    commit(settings, 1, start=0, landed=[0, 1, 2, 3, 4])
    commit(settings, 2, start=5, landed=[8, 9, 11], expired=3)  # 10: a marker, a gap
    # only that test fails: the ranges tile, and no offset gap is negative once the expired are set aside
    with pytest.raises(TradelakeError, match=r"dbt build failed: 1 node\(s\): test .*ingestion_completeness_expired"):
        build(settings)


def test_a_batches_table_from_before_start_offset_builds_with_the_strict_ranges(settings: Settings):
    """A lake whose ``_batches`` was created before the column existed (the next ingest adds it):
    each row's range begins right after the previous batch's (offset 10, a commit marker at the
    boundary, is a gap, not a break), a stream's first one at its first offset."""
    uri = settings.lake.table_uri(BATCHES_TABLE)
    shutil.rmtree(uri)
    old = pa.schema([f for f in BATCHES_SCHEMA if f.name not in ("start_offset", "expired_offsets")])
    DeltaTable.create(uri, schema=old, partition_by=[PARTITION_COLUMN])
    now = datetime.now(UTC)
    for batch_id, offsets in ((1, range(0, 10)), (2, range(11, 16))):
        append_rows = [ping(f"{STREAM}-{o}", batch_id, 0, o, now) for o in offsets]
        append(settings, TOPIC, append_rows)
        write_deltalake(
            uri, pa.Table.from_pylist([batch(batch_id, STREAM, 0, offsets, 0, now)], schema=old), mode="append"
        )
    build(settings)
    assert completeness(settings) == [(0, 0, 15, 15, 1, 0, 0)]
