"""The lake's tables and their columns, in one place.

One Delta table per topic (valid rows: the contract's columns plus the SPEC §3 lineage),
``_quarantine`` (rejected records of every topic, raw bytes redacted, the rules they broke)
and ``_batches`` (per micro-batch and partition: the offset range and how each record is
represented). Every table is partitioned by ``_ingest_date`` (the UTC date of
``_ingested_at``), so compaction and vacuum work day by day and a closed day never changes.
"""

from __future__ import annotations

import pyarrow as pa

PARTITION_COLUMN = "_ingest_date"

LINEAGE_FIELDS = [
    ("_topic", pa.string()),
    ("_partition", pa.int32()),
    ("_offset", pa.int64()),
    ("_key", pa.string()),  # the Kafka key as text; one that is not UTF-8 with \xNN escapes
    ("_key_bytes", pa.binary()),  # the key's bytes when they are not UTF-8 (else null): lossless
    ("_kafka_timestamp", pa.timestamp("ms", tz="UTC")),
    ("_ingested_at", pa.timestamp("us", tz="UTC")),
    ("_batch_id", pa.int64()),
]
LINEAGE_TYPES = dict(LINEAGE_FIELDS)
PARTITION_FIELD = (PARTITION_COLUMN, pa.date32())

QUARANTINE_TABLE = "_quarantine"
BATCHES_TABLE = "_batches"

QUARANTINE_SCHEMA = pa.schema(
    [
        *LINEAGE_FIELDS,
        ("event_type", pa.string()),
        ("schema_version", pa.int64()),
        ("contract", pa.string()),
        ("rules", pa.list_(pa.string())),
        ("reason", pa.string()),
        ("raw", pa.binary()),
        PARTITION_FIELD,
    ]
)

BATCHES_SCHEMA = pa.schema(
    [
        ("batch_id", pa.int64()),
        ("topic", pa.string()),
        ("topic_id", pa.string()),  # the Kafka topic ID of the stream these offsets belong to
        ("partition", pa.int32()),
        # Where the batch's consumption of the partition began: the previous batch's last offset + 1
        # (0 for a new stream). Offsets from here to last_offset that hold no record are gaps
        # (transaction markers, aborted or compacted records). Null in rows written before it existed.
        ("start_offset", pa.int64()),
        # Offsets from start_offset on that had expired when the batch began (below the partition's
        # low watermark: retention, deleted records): records the lake never read, lost to it.
        # Null in rows written before it existed (read as 0).
        ("expired_offsets", pa.int64()),
        ("first_offset", pa.int64()),
        ("last_offset", pa.int64()),
        ("records", pa.int64()),
        ("landed", pa.int64()),
        ("quarantined", pa.int64()),
        ("tombstones", pa.int64()),
        ("last_record_sha256", pa.string()),  # key and value of the record at last_offset
        ("validation", pa.string()),  # the topic's GX-shaped validation result of this batch (JSON)
        ("ingested_at", pa.timestamp("us", tz="UTC")),
        PARTITION_FIELD,
    ]
)

RAW_SCHEMA = pa.schema(
    [
        ("partition", pa.int32()),
        ("offset", pa.int64()),
        ("key", pa.binary()),
        ("value", pa.binary()),
        ("timestamp", pa.int64()),  # ms since the epoch; negative when the broker gave none
    ]
)


def topic_schema(columns: list[tuple[str, pa.DataType]]) -> pa.Schema:
    """A topic table's schema: lineage, the contract's landed columns, the date partition."""
    return pa.schema([*LINEAGE_FIELDS, *columns, PARTITION_FIELD])


PII_KEYS_TABLE = "_pii_keys"

# The personal-data key the lake's hashes are made with (pipelines.pii_key): one row at first
# use, one per ``tradelake pii-key rotate``; the latest row is the key now.
PII_KEYS_SCHEMA = pa.schema(
    [
        ("fingerprint", pa.string()),  # HMAC-SHA256 of a fixed label under the key (never the key)
        ("since", pa.timestamp("us", tz="UTC")),
        ("from_batch", pa.int64()),  # the first batch hashed with this key
        ("reason", pa.string()),  # 'first use' or 'rotated'
    ]
)

STREAMS_TABLE = "_streams"

# One row each time the lake starts reading a stream: a topic first seen, or a topic reset
# with ``tradelake ingest --reset-topic`` (a recreated topic has a new Kafka topic ID).
STREAMS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("topic_id", pa.string()),
        ("partitions", pa.int32()),
        ("since", pa.timestamp("us", tz="UTC")),
        ("reason", pa.string()),  # 'first seen' or 'reset: <what changed>'
    ]
)

OWNERS_TABLE = "_owners"

# Who takes and gives up each partition (consumer groups, pipelines.landing.ownership): a row
# per partition each time a landing process takes it (after fencing it in every table it lands
# in: the epoch is the one its commits carry) and when it gives it up cleanly. A process killed
# gives nothing up: its last 'taken' rows stay until the next owner's. Read by ``status``.
OWNERS_SCHEMA = pa.schema(
    [
        ("topic", pa.string()),
        ("topic_id", pa.string()),
        ("partition", pa.int32()),
        ("epoch", pa.int64()),  # the ownership epoch (lake.tables.encode_version)
        ("owner", pa.string()),  # "<host>:<pid>" of the landing process
        ("event", pa.string()),  # 'taken' or 'released'
        ("changed_at", pa.timestamp("us", tz="UTC")),
    ]
)

PUBLISHED_TABLE = "_published"

# Every derived event `tradelake publish` sent (pipelines.publish): one row per event, committed
# after its Kafka transaction committed, and restored from the topics themselves when a publisher
# died between the two (docs/decisions.md, "Publishing derived events"). ``seq`` numbers the
# changes of one entity on one topic (1, 2, …): the event id is derived from (topic, entity, seq,
# state), so a change computed again after a crash gets the id it had.
PUBLISHED_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("topic", pa.string()),
        ("entity_id", pa.string()),  # job_id, gateway_ref or tradesperson_id
        ("seq", pa.int64()),
        ("state", pa.string()),  # the entity's state the event announces
        ("kafka_partition", pa.int32()),
        ("kafka_offset", pa.int64()),
        ("run_id", pa.int64()),  # the publish run that sent it
        ("published_at", pa.timestamp("us", tz="UTC")),
        PARTITION_FIELD,
    ]
)
