"""Independent checks of a lake against the broker: what exactly-once means, as code.

The lake is opened with ``deltalake`` directly (``DeltaTable(uri).to_pyarrow_table()``), never
through tradelake's readers, and the offsets each table has committed are read from its own
Delta log (application transactions ``tradelake:<topic>@<topic id>:<partition>``).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks

OLD_LAYOUT = ("landing", "quarantine", "validation", "_ledger")
LINEAGE = ["_topic", "_partition", "_offset", "_batch_id"]
Key = tuple[str, str, int]  # (topic, topic id, partition): one partition of one stream


def open_table(settings: Settings, name: str) -> DeltaTable:
    """A lake table at its latest committed version, opened with deltalake."""
    return DeltaTable(settings.lake.table_uri(name), storage_options=dict(settings.lake.storage_options) or None)


def has_table(settings: Settings, name: str) -> bool:
    """Whether the lake table exists yet (a Delta log is there)."""
    try:
        open_table(settings, name)
    except TableNotFoundError:
        return False
    return True


def last_offset(table: DeltaTable, app: str) -> int | None:
    """The last offset an app transaction records (its version's low 40 bits hold it, an ownership
    epoch the bits above: ``version = (epoch << 40) + offset``, -1 when only fenced)."""
    version = table.transaction_version(app)
    return None if version is None else version - (((version + 1) >> 40) << 40)


def read_table(settings: Settings, name: str, columns: list[str] | None = None) -> pa.Table:
    """The committed rows of a lake table."""
    return open_table(settings, name).to_pyarrow_table(columns=columns)


def _streams_by_first_batch(batches: list[dict]) -> dict[str, list[tuple[int, str]]]:
    """Per topic, (first batch id, topic id) of each stream it was read from, oldest first."""
    first: dict[tuple[str, str], int] = {}
    for b in batches:
        key = (b["topic"], b["topic_id"])
        first[key] = min(first.get(key, b["batch_id"]), b["batch_id"])
    streams: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for (topic, topic_id), batch_id in sorted(first.items(), key=lambda kv: kv[1]):
        streams[topic].append((batch_id, topic_id))
    return streams


def assert_exactly_once(settings: Settings) -> dict[tuple[str, int], int]:
    """Every record up to the high watermark is represented exactly once; returns the HWs.

    Per stream (a topic read under one Kafka topic ID; a row belongs to the stream of its batch,
    since a reset stream starts again at offset 0) and partition: the ``_batches`` ranges tile
    0…last without gap or overlap, every offset is in exactly one of the topic table, the
    quarantine or the tombstone counts, the counts match the rows, and each table's log has
    committed what it holds. The current stream of each topic (its latest ``_streams`` row)
    ends at the broker's high watermark.
    """
    for old in OLD_LAYOUT:
        assert not (settings.home / old).exists(), f"old lake layout written: {settings.home / old}"
    tables = {name: open_table(settings, name) for name in (*TOPIC_NAMES, "_quarantine", "_batches", "_streams")}
    batches = tables["_batches"].to_pyarrow_table().to_pylist()
    streams = sorted(tables["_streams"].to_pyarrow_table().to_pylist(), key=lambda s: s["since"])
    current = {s["topic"]: s["topic_id"] for s in streams}
    metadata = kafka.admin(settings).list_topics(timeout=10).topics
    # every partition of every catalog topic on the broker, not only those the lake knows:
    # a partition the lander skipped entirely must fail here too
    partitions = [(t, p) for t in TOPIC_NAMES if t in metadata for p in metadata[t].partitions]
    hws = high_watermarks(settings, partitions)

    by_first_batch = _streams_by_first_batch(batches)

    def stream_of(row: dict) -> Key:
        ids = [topic_id for first, topic_id in by_first_batch.get(row["_topic"], []) if first <= row["_batch_id"]]
        assert ids, f"a row of batch {row['_batch_id']} of {row['_topic']}, which no _batches row covers"
        return row["_topic"], ids[-1], row["_partition"]

    # each row's batch has its _batches row for the row's partition, whose range holds the row
    # (the audit mart counts rows through their batch), also after a kill between a batch's commits
    spans_of_batch = {
        (b["batch_id"], b["topic"], b["partition"]): (b["first_offset"], b["last_offset"]) for b in batches
    }
    held: dict[str, dict[Key, list[int]]] = {}
    for name in (*TOPIC_NAMES, "_quarantine"):
        rows = tables[name].to_pyarrow_table(columns=LINEAGE).to_pylist()
        assert name == "_quarantine" or all(r["_topic"] == name for r in rows), f"rows of another topic in {name}"
        held[name] = defaultdict(list)
        for r in rows:
            held[name][stream_of(r)].append(r["_offset"])
            first, last = spans_of_batch.get((r["_batch_id"], r["_topic"], r["_partition"]), (0, -1))
            assert first <= r["_offset"] <= last, f"{name}: a row outside its batch's _batches row: {r}"

    ranges: dict[Key, list[tuple[int, int, int]]] = defaultdict(list)
    totals: dict[Key, Counter] = defaultdict(Counter)
    for b in batches:
        assert b["records"] == b["landed"] + b["quarantined"] + b["tombstones"], b
        key = (b["topic"], b["topic_id"], b["partition"])
        ranges[key].append((b["start_offset"], b["first_offset"], b["last_offset"]))
        totals[key].update({k: b[k] for k in ("landed", "quarantined", "tombstones")})
    for name, by_key in held.items():
        orphans = set(by_key) - set(ranges)
        assert not orphans, f"{name} holds rows of partitions no _batches row covers: {sorted(orphans)[:3]}"

    for key, spans in ranges.items():
        topic, topic_id, partition = key
        committed_to = 0
        for start, first, last in sorted(spans):  # no transactions here: each range begins with a record
            assert start == first == committed_to, f"{key}: _batches gap/overlap at {first}, expected {committed_to}"
            committed_to = last + 1
        landed, quarantined = held[topic].get(key, []), held["_quarantine"].get(key, [])
        offsets = Counter(landed + quarantined)
        dupes = sorted(o for o, n in offsets.items() if n > 1)
        assert not dupes, f"{key}: records landed twice: {dupes[:5]}"
        assert all(0 <= o < committed_to for o in offsets), f"{key}: rows past what _batches committed"
        assert len(offsets) + totals[key]["tombstones"] == committed_to, (key, len(offsets), totals[key])
        assert (len(landed), len(quarantined)) == (totals[key]["landed"], totals[key]["quarantined"]), key
        app = f"tradelake:{topic}@{topic_id}:{partition}"
        assert last_offset(tables["_batches"], app) == committed_to - 1, f"_batches log: {app}"
        for name, rows in ((topic, landed), ("_quarantine", quarantined)):
            version = last_offset(tables[name], app)
            assert not rows or (version is not None and version >= max(rows)), f"{name} log: {app} at {version}"

    for (topic, partition), hw in hws.items():
        if hw == 0:
            continue
        assert topic in current, f"{topic} has records but no _streams row"
        spans = ranges.get((topic, current[topic], partition), [])
        landed_to = max((last for *_, last in spans), default=-1) + 1
        assert landed_to == hw, f"{topic}[{partition}]: the lake committed up to {landed_to}, the broker has {hw}"
    return hws
