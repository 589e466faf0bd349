"""The lake's commit path on real Delta tables in a temp dir: offsets in each table's own log,
stale writers refused, and a crash between a batch's table commits repaired exactly once.

Tables are checked with ``deltalake`` directly, not through tradelake's readers.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from deltalake import DeltaTable

from pipelines.contracts import load_contracts
from pipelines.lake.location import LakeLocation
from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    OWNERS_SCHEMA,
    OWNERS_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
)
from pipelines.lake.tables import Covered, Lake, StaleWriterError, app_id, decode_version
from pipelines.landing.committer import Committer
from pipelines.landing.ownership import Ownership
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.landing.stats import IngestStats
from pipelines.landing.stream import record_sha256
from pipelines.simulator import Simulation, SimulationConfig

TOPIC = "marketplace.jobs"
STARTS = {(TOPIC, 0): 0, (TOPIC, 1): 0}  # where each batch's consumption of a partition began


def _lake(tmp_path) -> Lake:
    return Lake(LakeLocation(str(tmp_path / "lake")))


def test_offsets_live_in_each_tables_log_and_a_stale_writer_is_refused(tmp_path):
    schema = pa.schema([("_offset", pa.int64())])
    lake = _lake(tmp_path)
    lake.ensure("t", schema)
    a = app_id(TOPIC, "id1", 0)
    lake.append("t", pa.table({"_offset": pa.array(range(10), pa.int64())}, schema=schema), [Covered(a, 0, 9)])
    assert DeltaTable(lake.uri("t")).transaction_version(a) == 9
    assert lake.committed("t", [a, app_id(TOPIC, "id1", 1)]) == {a: 9}

    stale = _lake(tmp_path)  # another process, or one that lost the partition
    rows = pa.table({"_offset": pa.array(range(5, 15), pa.int64())}, schema=schema)
    with pytest.raises(StaleWriterError, match="already committed up to offset 9"):
        stale.append("t", rows, [Covered(a, 5, 14)])
    assert DeltaTable(lake.uri("t")).to_pyarrow_table().num_rows == 10
    stale.append("t", rows.slice(5), [Covered(a, 10, 14)])
    assert sorted(DeltaTable(lake.uri("t")).to_pyarrow_table()["_offset"].to_pylist()) == list(range(15))


def test_ensure_adds_the_columns_a_grown_contract_brings_and_keeps_rows(tmp_path):
    lake = _lake(tmp_path)
    lake.ensure("t", pa.schema([("a", pa.int64())]))
    lake.append("t", pa.table({"a": [1, 2]}), [])
    lake.ensure("t", pa.schema([("a", pa.int64()), ("b", pa.string())]))
    table = DeltaTable(lake.uri("t")).to_pyarrow_table()
    assert table.column_names == ["a", "b"] and table["a"].to_pylist() == [1, 2] and table["b"].null_count == 2


def _records() -> RawRecords:
    """Simulated jobs records, malformed ones included, on two partitions."""
    sim = Simulation(SimulationConfig(events=20_000, seed=11, malformed_rate=0.05))
    values = [r.value for r in sim.records() if r.topic == TOPIC][:1_000]
    n = len(values)
    partitions = [i % 2 for i in range(n)]
    offsets = [i // 2 for i in range(n)]
    return RawRecords.from_lists(partitions, offsets, [b"k%d" % i for i in range(n)], values, [0] * n)


class _CrashBefore(Exception):
    pass


def _committer(lake: Lake, committed: dict, stats: IngestStats) -> Committer:
    contracts = load_contracts()
    router = TopicRouter(contracts[TOPIC], b"key")
    return Committer(
        lake, {TOPIC: router}, {TOPIC: contracts[TOPIC]}, {TOPIC: "id1"}, committed, 1, stats, lambda *_: None
    )


@pytest.mark.parametrize("crash_table", [QUARANTINE_TABLE, BATCHES_TABLE])
def test_a_crash_between_a_batchs_commits_is_repaired_exactly_once(tmp_path, monkeypatch, crash_table):
    lake = _lake(tmp_path)
    contracts = load_contracts()
    lake.ensure(TOPIC, TopicRouter(contracts[TOPIC], b"key").schema)
    lake.ensure(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
    lake.ensure(BATCHES_TABLE, BATCHES_SCHEMA)
    records = _records()

    first = _committer(lake, {}, IngestStats())
    routed = first.route({TOPIC: records}, 1, STARTS)
    assert len(routed.topics[TOPIC].quarantined) > 0, "the batch has rows for every table"
    real_commit = Lake.commit_files

    def crash(self, table, *args, **kwargs):
        if table == crash_table:
            raise _CrashBefore(table)
        return real_commit(self, table, *args, **kwargs)

    monkeypatch.setattr(Lake, "commit_files", crash)
    with pytest.raises(_CrashBefore):
        first.commit(routed)
    monkeypatch.setattr(Lake, "commit_files", real_commit)

    # A restart (or another process of the group): it takes the partitions — fences, reads back
    # what each table's log committed — and lands the same records again as the same batch.
    restarted = _lake(tmp_path)
    restarted.ensure(OWNERS_TABLE, OWNERS_SCHEMA)
    taken = Ownership(restarted, {TOPIC: "id1"}).take([(TOPIC, 0), (TOPIC, 1)])
    assert taken.committed[BATCHES_TABLE] == {}, "the batch is not committed where landing resumes from"
    assert taken.committed[TOPIC], "but its topic table commit is"
    ends = {p: pc.max(records.table.filter(pc.equal(records.table["partition"], p))["offset"]).as_py() for p in (0, 1)}
    assert taken.partial == {(TOPIC, p): (1, ends[p]) for p in (0, 1)}, "landed again as batch 1, whose rows it finds"
    second = _committer(restarted, {}, IngestStats())
    second.adopt(taken)
    second.commit(second.route({TOPIC: records}, 1, STARTS))

    landed = DeltaTable(lake.uri(TOPIC)).to_pyarrow_table()
    quarantined = DeltaTable(lake.uri(QUARANTINE_TABLE)).to_pyarrow_table()
    batches = DeltaTable(lake.uri(BATCHES_TABLE)).to_pyarrow_table()
    seen = [
        (p, o)
        for t in (landed, quarantined)
        for p, o in zip(t["_partition"].to_pylist(), t["_offset"].to_pylist(), strict=True)
    ]
    assert len(seen) == len(set(seen)) == len(records), "every record once, in one table"
    assert pc.sum(batches["records"]).as_py() == len(records)
    assert pc.sum(batches["landed"]).as_py() == len(landed)
    assert pc.sum(batches["quarantined"]).as_py() == len(quarantined)
    for p in (0, 1):
        last = max(o for q, o in seen if q == p)
        for t in (TOPIC, QUARANTINE_TABLE, BATCHES_TABLE):
            assert decode_version(DeltaTable(lake.uri(t)).transaction_version(app_id(TOPIC, "id1", p))) == (1, last)


def test_the_batch_row_hashes_the_record_at_its_last_offset(tmp_path):
    lake = _lake(tmp_path)
    contracts = load_contracts()
    lake.ensure(TOPIC, TopicRouter(contracts[TOPIC], b"key").schema)
    lake.ensure(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
    lake.ensure(BATCHES_TABLE, BATCHES_SCHEMA)
    records = _records()
    committer = _committer(lake, {}, IngestStats())
    committer.commit(committer.route({TOPIC: records}, 1, STARTS))
    rows = DeltaTable(lake.uri(BATCHES_TABLE)).to_pyarrow_table().to_pylist()
    raw = records.table.to_pylist()
    for row in rows:
        last = next(r for r in raw if r["partition"] == row["partition"] and r["offset"] == row["last_offset"])
        assert row["last_record_sha256"] == record_sha256(last["key"], last["value"])
