"""Records that expired before landing read them are loss, recorded where it happened.

When landing resumes a partition the broker no longer holds from there (retention, deleted
records: its low watermark is past the resume point), the consumer would jump to the earliest
offset and the lost range would read as mere offset gaps. Landing compares the low watermarks
with its resume points at the start of a run, and the partition's first batch records the
difference in ``_batches.expired_offsets`` (``audit.ingestion_completeness`` fails on it:
tests/component/test_completeness_gaps.py).

Not end to end: the embedded broker (Tansu 0.6) cannot move a low watermark — DeleteRecords is
unimplemented (its connection handler panics) and it applies no retention — so the detection is
tested on its inputs, and the committer on a real lake in a temp dir.
"""

from __future__ import annotations

from deltalake import DeltaTable

from pipelines.contracts import load_contracts
from pipelines.lake.location import LakeLocation
from pipelines.lake.schemas import BATCHES_SCHEMA, BATCHES_TABLE, QUARANTINE_SCHEMA, QUARANTINE_TABLE
from pipelines.lake.tables import Lake, app_id
from pipelines.landing.committer import Committer
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.landing.stats import IngestStats
from pipelines.landing.stream import Expired, expired_before_read
from pipelines.simulator import Simulation, SimulationConfig

TOPIC = "marketplace.jobs"


def test_only_offsets_below_the_low_watermark_from_the_resume_point_on_are_expired():
    starts = {(TOPIC, 0): 5, (TOPIC, 1): 5, (TOPIC, 2): 5, (TOPIC, 3): 0}
    lows = {(TOPIC, 0): 8, (TOPIC, 1): 5, (TOPIC, 2): 3, (TOPIC, 3): 2}
    expired = expired_before_read(starts, lows)
    # 0: resumed at 5, the broker starts at 8; 1: exactly where landing resumes; 2: records the lake
    # already has expired (nothing lost); 3: from 0 (landing passes only partitions the lake holds)
    assert expired == {(TOPIC, 0): Expired(5, 8), (TOPIC, 3): Expired(0, 2)}
    assert [e.count for e in expired.values()] == [3, 2]
    assert expired_before_read(starts, {}) == {}, "a partition without a low watermark is not judged"


def _records(offsets: range) -> RawRecords:
    sim = Simulation(SimulationConfig(events=2_000, seed=5))
    values = [r.value for r in sim.records() if r.topic == TOPIC][: len(offsets)]
    assert len(values) == len(offsets)
    n = len(values)
    return RawRecords.from_lists([0] * n, list(offsets), [b"k%d" % o for o in offsets], values, [0] * n)


def test_the_first_batch_after_the_resume_point_records_the_expired_offsets(tmp_path):
    lake = Lake(LakeLocation(str(tmp_path / "lake")))
    contracts = load_contracts()
    router = TopicRouter(contracts[TOPIC], b"key")
    lake.ensure(TOPIC, router.schema)
    lake.ensure(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
    lake.ensure(BATCHES_TABLE, BATCHES_SCHEMA)
    # The lake committed offsets up to 4; the broker now begins at 8.
    committed = {BATCHES_TABLE: {app_id(TOPIC, "id1", 0): 4}}
    expired = expired_before_read({(TOPIC, 0): 5}, {(TOPIC, 0): 8})
    committer = Committer(
        lake,
        {TOPIC: router},
        {TOPIC: contracts[TOPIC]},
        {TOPIC: "id1"},
        committed,
        1,
        IngestStats(),
        lambda *_: None,
        expired=expired,
    )
    for batch_id, offsets in ((1, range(8, 20)), (2, range(20, 30))):
        starts = committer._starts({(TOPIC, 0): offsets.stop - 1})
        committer.commit(committer.route({TOPIC: _records(offsets)}, batch_id, starts))

    batches = DeltaTable(lake.uri(BATCHES_TABLE)).to_pyarrow_table().sort_by("batch_id")
    rows = batches.select(["start_offset", "expired_offsets", "first_offset", "last_offset", "records"]).to_pylist()
    assert rows == [
        {"start_offset": 5, "expired_offsets": 3, "first_offset": 8, "last_offset": 19, "records": 12},
        {"start_offset": 20, "expired_offsets": 0, "first_offset": 20, "last_offset": 29, "records": 10},
    ]
