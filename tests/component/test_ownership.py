"""Taking partitions over in the lake (``ownership``) on real Delta tables in a temp dir: a zombie's
written batch is refused once the new owner has fenced, the new owner resumes from what the
zombie did commit, batch ids rise across owners, and lakes written before epochs stay readable.

Tables are checked with ``deltalake`` directly where the log itself is the point.
"""

from __future__ import annotations

import pyarrow as pa
import pytest
from deltalake import DeltaTable

from pipelines.lake.location import LakeLocation
from pipelines.lake.schemas import BATCHES_SCHEMA, BATCHES_TABLE, QUARANTINE_SCHEMA, QUARANTINE_TABLE
from pipelines.lake.tables import Covered, Lake, StaleWriterError, app_id, decode_version, encode_version
from pipelines.landing.ownership import BATCH_ID_BLOCK, Ownership

TOPIC = "marketplace.jobs"
SCHEMA = pa.schema([("_offset", pa.int64())])
A = app_id(TOPIC, "id1", 0)


def _lake(tmp_path) -> Lake:
    """A process's own view of the shared lake (each process opens its own tables)."""
    lake = Lake(LakeLocation(str(tmp_path / "lake")))
    lake.ensure(TOPIC, SCHEMA)
    lake.ensure(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
    lake.ensure(BATCHES_TABLE, BATCHES_SCHEMA)
    return lake


def _rows(first: int, last: int) -> pa.Table:
    return pa.table({"_offset": pa.array(range(first, last + 1), pa.int64())}, schema=SCHEMA)


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
