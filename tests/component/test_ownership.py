"""Taking partitions over in the lake (``ownership``) on real Delta tables in a temp dir: a zombie's
written batch is refused once the new owner has fenced, the new owner resumes from what the
zombie did commit, batch ids rise across owners, and lakes written before epochs stay readable.

Tables are checked with ``deltalake`` directly where the log itself is the point.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    OWNERS_SCHEMA,
    OWNERS_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    STREAMS_SCHEMA,
    STREAMS_TABLE,
)
from pipelines.lake.tables import Covered, Lake, StaleWriterError, app_id, decode_version, encode_version
from pipelines.landing.ownership import BATCH_ID_BLOCK, Ownership
from pipelines.settings import Settings
from pipelines.status import partition_status

TOPIC = "marketplace.jobs"
SCHEMA = pa.schema(
    [("_topic", pa.string()), ("_partition", pa.int32()), ("_offset", pa.int64()), ("_batch_id", pa.int64())]
)
A = app_id(TOPIC, "id1", 0)


def _settings(tmp_path) -> Settings:
    return Settings.load(env={}, home=str(tmp_path / "home"))


def _lake(tmp_path) -> Lake:
    """A process's own view of the shared lake (each process opens its own tables)."""
    lake = Lake(_settings(tmp_path).lake)
    lake.ensure(TOPIC, SCHEMA)
    for name, schema in ((QUARANTINE_TABLE, QUARANTINE_SCHEMA), (BATCHES_TABLE, BATCHES_SCHEMA)):
        lake.ensure(name, schema)
    lake.ensure(OWNERS_TABLE, OWNERS_SCHEMA)
    return lake


def _rows(first: int, last: int, batch: int = 1) -> pa.Table:
    n = last - first + 1
    return pa.table(
        {"_topic": [TOPIC] * n, "_partition": [0] * n, "_offset": range(first, last + 1), "_batch_id": [batch] * n},
        schema=SCHEMA,
    )


def test_versions_carry_the_epoch_above_the_offset_and_plain_offsets_are_epoch_0():
    assert decode_version(9) == (0, 9)
    assert decode_version(encode_version(3, 1_234)) == (3, 1_234)
    assert decode_version(encode_version(2, -1)) == (2, -1)  # fenced before any offset was committed


def test_a_zombies_written_batch_is_refused_after_the_new_owner_fenced(tmp_path):
    zombie_lake = _lake(tmp_path)
    zombie = Ownership(zombie_lake, {TOPIC: "id1"}).take([(TOPIC, 0)])
    assert zombie.epochs == {(TOPIC, 0): 1} and zombie.positions == {}
    zombie_lake.append(TOPIC, _rows(0, 9), [Covered(A, 0, 9, epoch=1)])  # committed while it owned it
    written = zombie_lake.write_files(TOPIC, _rows(10, 19))  # written, not committed yet: then paused

    owner_lake = _lake(tmp_path)
    owner = Ownership(owner_lake, {TOPIC: "id1"}).take([(TOPIC, 0)])
    assert owner.epochs == {(TOPIC, 0): 2}
    assert owner.committed[TOPIC] == {A: 9}, "the new owner resumes past what the zombie committed"
    assert owner.first_batch > zombie.last_batch, "a new owner's batch ids are above every id reserved before"

    with pytest.raises(StaleWriterError, match="epoch there is 2, this process owns epoch 1"):
        zombie_lake.commit_files(TOPIC, written, [Covered(A, 10, 19, epoch=1)])
    owner_lake.append(TOPIC, _rows(10, 14), [Covered(A, 10, 14, epoch=2)])
    table = DeltaTable(owner_lake.uri(TOPIC))
    assert sorted(table.to_pyarrow_table()["_offset"].to_pylist()) == list(range(15))
    assert decode_version(table.transaction_version(A)) == (2, 14)


def test_a_lake_written_before_epochs_is_taken_at_epoch_1_from_its_offsets(tmp_path):
    lake = _lake(tmp_path)
    lake.append(TOPIC, _rows(0, 4), [Covered(A, 0, 4)])  # epoch 0: a plain offset, as before epochs
    taken = Ownership(lake, {TOPIC: "id1"}).take([(TOPIC, 0)])
    assert taken.epochs == {(TOPIC, 0): 1} and taken.committed[TOPIC] == {A: 4}
    assert (taken.first_batch, taken.last_batch) == (1, BATCH_ID_BLOCK)
    assert DeltaTable(lake.uri(TOPIC)).transaction_version(A) == encode_version(1, 4)


def _owners(tmp_path) -> dict[tuple[str, int], str | None]:
    return {(r.topic, r.partition): r.owner for r in partition_status(_settings(tmp_path), with_broker=False)}


def test_status_shows_who_took_each_partition_last_until_it_is_given_up(tmp_path):
    first, second = _lake(tmp_path), _lake(tmp_path)
    first_owner = Ownership(first, {TOPIC: "id1"})
    first_owner.owner = "host-a:1"
    first_owner.take([(TOPIC, 0), (TOPIC, 1)])
    assert _owners(tmp_path) == {(TOPIC, 0): "host-a:1", (TOPIC, 1): "host-a:1"}

    second_owner = Ownership(second, {TOPIC: "id1"})
    second_owner.owner = "host-b:2"
    taken = second_owner.take([(TOPIC, 1)])  # a rebalance moved partition 1
    # the first process, a zombie now, gives partition 1 up late: its older epoch changes nothing
    first_owner.release({(TOPIC, 0): 1, (TOPIC, 1): 1})
    assert _owners(tmp_path) == {(TOPIC, 0): None, (TOPIC, 1): "host-b:2"}
    second_owner.release(taken.epochs)
    assert _owners(tmp_path) == {(TOPIC, 0): None, (TOPIC, 1): None}

    # a topic reset: the old stream's owners say nothing about the new one
    first.ensure(STREAMS_TABLE, STREAMS_SCHEMA)
    new = Ownership(first, {TOPIC: "id2"})
    new.owner = "host-c:3"
    new.take([(TOPIC, 0)])
    first.append(
        STREAMS_TABLE,
        pa.Table.from_pylist(
            [{"topic": TOPIC, "topic_id": "id2", "partitions": 1, "since": datetime.now(UTC), "reason": "reset"}],
            schema=STREAMS_SCHEMA,
        ),
        [],
    )
    assert _owners(tmp_path) == {(TOPIC, 0): "host-c:3"}


def test_a_batch_the_previous_owner_committed_in_part_keeps_its_batch_id(tmp_path):
    """Killed between its commits: the topic table has batch 7's rows of offsets 5-9, ``_batches``
    does not. The next owner is told to land 5-9 again as batch 7, so the rows' batch has its row."""
    lake = _lake(tmp_path)
    lake.append(TOPIC, _rows(5, 9, batch=7), [Covered(A, 5, 9)])
    lake.append(QUARANTINE_TABLE, QUARANTINE_SCHEMA.empty_table(), [Covered(A, 0, 4)])  # an earlier batch, all landed
    taken = Ownership(lake, {TOPIC: "id1"}).take([(TOPIC, 0)])
    assert taken.partial == {(TOPIC, 0): (7, 9)}
    assert taken.positions == {}, "``_batches`` committed nothing: the partition is landed from its start"
