"""Landing as assets: one asset per catalog topic, all materialized by one micro-batch run.

``land_topics`` runs one ``Lander(...).run(follow=False)``: every selected topic is landed up
to the high watermarks read when the run starts, exactly once (each Delta table's log records
the offsets it has committed, see pipelines/lake). Each topic's materialization carries what
that run did to it, read back from the lake's committed state: records landed / quarantined /
tombstones and offset range per partition (the run's ``_batches`` rows), lag left, bytes of
the data files the run added to the topic's table and its row count (from the Delta log, no
data file is read), rate, the batches written (read back by the contract checks) and the
table's schema.

Two more assets of the same run are the lake's own tables, which every landing run appends
to and which dbt reads as sources: ``landing/batches`` (the ``_batches`` table: one row per
micro-batch and partition) and ``landing/quarantine`` (the ``_quarantine`` table: rejected
records of every topic).

Subsetting: selecting some topics lands only those topics (each partition's committed offset
is independent); selecting only ``batches``/``quarantine`` lands every topic.
"""

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.catalog import TOPICS
from pipelines.defs.resources import TradelakeResource
from pipelines.lake.schemas import BATCHES_TABLE, QUARANTINE_TABLE
from pipelines.lake.tables import Lake
from pipelines.landing.ingest import IngestStats, Lander
from pipelines.settings import Settings
from pipelines.status import partition_status

LANDING_GROUP = "landing"
BATCHES_KEY = dg.AssetKey([LANDING_GROUP, "batches"])
QUARANTINE_KEY = dg.AssetKey([LANDING_GROUP, "quarantine"])
COUNTS = ("records", "landed", "quarantined", "tombstones")
_BATCH_COLUMNS = ["batch_id", "topic", "partition", "first_offset", "last_offset", *COUNTS]


def topic_key(topic: str) -> dg.AssetKey:
    """The asset of a Kafka topic: ``landing/<topic>``, e.g. ``landing/marketplace.jobs``."""
    return dg.AssetKey([LANDING_GROUP, topic])


TOPIC_BY_KEY: dict[dg.AssetKey, str] = {topic_key(t.name): t.name for t in TOPICS}


def _topic_spec(name: str, key: str, partitions: int, is_cdc: bool) -> dg.AssetSpec:
    kind = "Debezium change events" if is_cdc else "events"
    return dg.AssetSpec(
        key=topic_key(name),
        group_name=LANDING_GROUP,
        description=(
            f"Kafka topic `{name}` ({kind}, key `{key}`, {partitions} partition(s)) landed in the Delta table "
            f"`<lake>/{name}` (partitioned by `_ingest_date`): one row per valid record with the lineage columns; "
            "records breaking the topic's contract go to quarantine."
        ),
        kinds={"kafka", "delta"},
        metadata={"topic": name, "message_key": key, "partitions": partitions},
        tags={"tradelake/layer": "landing"},
    )


def landing_specs() -> list[dg.AssetSpec]:
    specs = [_topic_spec(t.name, t.key, t.partitions, t.is_cdc) for t in TOPICS]
    specs.append(
        dg.AssetSpec(
            key=BATCHES_KEY,
            group_name=LANDING_GROUP,
            description=(
                "The lake's `_batches` Delta table: one row per micro-batch and topic-partition (offset range, "
                "records landed / quarantined / tombstones, the Kafka topic ID, the contract validation results). "
                "Its commit carries the batch's offsets; audit.ingestion_completeness reconciles it."
            ),
            kinds={"delta"},
            tags={"tradelake/layer": "landing"},
        )
    )
    specs.append(
        dg.AssetSpec(
            key=QUARANTINE_KEY,
            group_name=LANDING_GROUP,
            description=(
                "Records rejected by the data contracts, every topic (the lake's `_quarantine` Delta table): "
                "lineage, redacted raw bytes, the rules broken and a readable reason."
            ),
            kinds={"delta"},
            tags={"tradelake/layer": "landing"},
        )
    )
    return specs


def _last_batch(lake: Lake) -> int:
    """The newest committed batch id (0 when nothing has been committed)."""
    batches = lake.read(BATCHES_TABLE, ["batch_id"])
    return 0 if batches is None else pc.max(batches["batch_id"]).as_py() or 0


def run_landing(settings: Settings, topics: Iterable[str] | None = None) -> tuple[IngestStats, list[dict[str, Any]]]:
    """Land ``topics`` (default: all) once; return the stats and the ``_batches`` rows this run committed."""
    selected = set(topics) if topics is not None else {t.name for t in TOPICS}
    lake = Lake(settings.lake)
    before = _last_batch(lake)
    stats = Lander(settings, topics=[t.name for t in TOPICS if t.name in selected]).run(follow=False)
    committed = lake.read(BATCHES_TABLE, _BATCH_COLUMNS, where=f"batch_id > {int(before)}")
    return stats, [] if committed is None else committed.to_pylist()


def log_files(lake: Lake, name: str) -> pa.Table | None:
    """A table's live data files as its Delta log lists them (size, rows, column stats), without reading them."""
    dt = lake.table(name)
    return None if dt is None else pa.table(dt.get_add_actions(flatten=True))


def row_count(files: pa.Table | None) -> int:
    return 0 if files is None else pc.sum(files["num_records"]).as_py() or 0


def bytes_of_batches(files: pa.Table | None, batches: list[int]) -> int:
    """Bytes of the data files holding only rows of ``batches`` (what a run added, until compaction)."""
    if files is None or not batches:
        return 0
    ours = pc.and_(
        pc.greater_equal(files["min._batch_id"], batches[0]), pc.less_equal(files["max._batch_id"], batches[-1])
    )
    return pc.sum(files.filter(ours)["size_bytes"]).as_py() or 0


def topic_metadata(
    lake: Lake,
    topic: str,
    stats: IngestStats,
    committed: list[dict[str, Any]],
    lag: dict[int, int],
) -> dict[str, Any]:
    """What one landing run did to one topic, as materialization metadata."""
    rows = [r for r in committed if r["topic"] == topic]
    batches = sorted({r["batch_id"] for r in rows})
    counts = {k: sum(r[k] for r in rows) for k in COUNTS}
    offsets: dict[str, list[int]] = {}
    for r in sorted(rows, key=lambda r: (r["partition"], r["first_offset"])):
        span = offsets.setdefault(str(r["partition"]), [r["first_offset"], r["last_offset"]])
        span[1] = max(span[1], r["last_offset"])
    files = log_files(lake, topic)
    metadata: dict[str, Any] = {
        **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
        "offset_range": dg.MetadataValue.json(offsets),
        "lag": dg.MetadataValue.int(sum(lag.values())),
        "lag_by_partition": dg.MetadataValue.json({str(p): n for p, n in sorted(lag.items())}),
        "bytes_written": dg.MetadataValue.int(bytes_of_batches(files, batches)),
        "records_per_second": dg.MetadataValue.float(
            round(counts["records"] / stats.seconds, 1) if stats.seconds else 0.0
        ),
        "batches": dg.MetadataValue.int(len(batches)),
        "quarantine_rules": dg.MetadataValue.json(dict(Counter(stats.quarantine_rules.get(topic, {})).most_common())),
        "warning_rules": dg.MetadataValue.json(dict(Counter(stats.warning_rules.get(topic, {})).most_common())),
        "dagster/row_count": dg.MetadataValue.int(row_count(files)),
        "path": dg.MetadataValue.path(lake.uri(topic)),
    }
    if batches:
        # Read back by the contract checks: the validation results of exactly these batches.
        metadata["first_batch"] = dg.MetadataValue.int(batches[0])
        metadata["last_batch"] = dg.MetadataValue.int(batches[-1])
    dt = lake.table(topic)
    if dt is not None:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in pa.schema(dt.schema().to_arrow())]
        )
    return metadata


def _lag_by_topic(settings: Settings, topics: Iterable[str]) -> dict[str, dict[int, int]]:
    wanted = set(topics)
    lag: dict[str, dict[int, int]] = {}
    for row in partition_status(settings):
        if row.topic in wanted and row.lag is not None:
            lag.setdefault(row.topic, {})[row.partition] = row.lag
    return lag


@dg.multi_asset(
    name="land_topics",
    specs=landing_specs(),
    can_subset=True,
    description="One micro-batch run: land the selected Kafka topics up to their current high watermarks.",
)
def land_topics(context: dg.AssetExecutionContext, tradelake: TradelakeResource) -> Iterator[dg.MaterializeResult]:
    selected = context.selected_asset_keys
    # Only the selected assets may be reported (Dagster refuses any other after the data is
    # committed), even when a run selecting only batches/quarantine lands every topic.
    reported = [t for k, t in TOPIC_BY_KEY.items() if k in selected]
    topics = reported or list(TOPIC_BY_KEY.values())
    settings = tradelake.settings()
    lake = Lake(settings.lake)
    context.log.info(f"landing {len(topics)} topic(s) into {settings.lake.url}")
    stats, committed = run_landing(settings, topics)
    lag = _lag_by_topic(settings, topics)
    context.log.info(
        f"landed {stats.records:,} records in {stats.batches} batch(es), {stats.seconds:.1f}s: "
        f"{stats.landed:,} landed, {stats.quarantined:,} quarantined, {stats.tombstones:,} tombstones"
    )
    for topic in reported:
        yield dg.MaterializeResult(
            asset_key=topic_key(topic), metadata=topic_metadata(lake, topic, stats, committed, lag.get(topic, {}))
        )
    batches = sorted({r["batch_id"] for r in committed})
    if BATCHES_KEY in selected:
        yield dg.MaterializeResult(
            asset_key=BATCHES_KEY,
            metadata={
                "batches": dg.MetadataValue.int(len(batches)),
                "first_batch": dg.MetadataValue.int(batches[0]) if batches else dg.MetadataValue.null(),
                "last_batch": dg.MetadataValue.int(batches[-1]) if batches else dg.MetadataValue.null(),
                "records": dg.MetadataValue.int(stats.records),
                "dagster/row_count": dg.MetadataValue.int(row_count(log_files(lake, BATCHES_TABLE))),
                "path": dg.MetadataValue.path(lake.uri(BATCHES_TABLE)),
            },
        )
    if QUARANTINE_KEY in selected:
        files = log_files(lake, QUARANTINE_TABLE)
        yield dg.MaterializeResult(
            asset_key=QUARANTINE_KEY,
            metadata={
                "quarantined": dg.MetadataValue.int(stats.quarantined),
                "quarantined_by_topic": dg.MetadataValue.json(
                    {t: c["quarantined"] for t, c in sorted(stats.per_topic.items()) if c["quarantined"]}
                ),
                "bytes_written": dg.MetadataValue.int(bytes_of_batches(files, batches)),
                "dagster/row_count": dg.MetadataValue.int(row_count(files)),
                "path": dg.MetadataValue.path(lake.uri(QUARANTINE_TABLE)),
            },
        )
