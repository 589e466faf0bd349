"""Landing as assets: one asset per catalog topic, all materialized by one micro-batch run.

``land_topics`` runs one ``Lander(...).run(follow=False)``: every selected topic is landed up
to the high watermarks read when the run starts, exactly once (the lake's ledger is the
commit point, see pipelines/landing). Each topic's materialization carries what that run did
to it: records landed / quarantined / tombstones, offset range per partition, lag left,
bytes written, rate, the batches written (read back by the contract checks) and the landed
schema.

Two more assets of the same run describe the lake's own bookkeeping, which every landing run
appends to and which dbt reads as sources: ``landing/ledger`` (one manifest per micro-batch)
and ``landing/quarantine`` (rejected records of every topic).

Subsetting: selecting some topics lands only those topics (each partition's position is
independent in the ledger); selecting only ``ledger``/``quarantine`` lands every topic.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.catalog import TOPICS
from pipelines.defs.resources import TradelakeResource
from pipelines.landing.ingest import IngestStats, Lander
from pipelines.landing.ledger import Ledger, batch_file_name
from pipelines.settings import Settings
from pipelines.status import partition_status

LANDING_GROUP = "landing"
LEDGER_KEY = dg.AssetKey([LANDING_GROUP, "ledger"])
QUARANTINE_KEY = dg.AssetKey([LANDING_GROUP, "quarantine"])


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
            f"Kafka topic `{name}` ({kind}, key `{key}`, {partitions} partition(s)) landed as Parquet "
            f"micro-batches in `$TRADELAKE_HOME/landing/{name}/`: one row per valid record with the lineage "
            "columns; records breaking the topic's contract go to quarantine."
        ),
        kinds={"kafka", "parquet"},
        metadata={"topic": name, "message_key": key, "partitions": partitions},
        tags={"tradelake/layer": "landing"},
    )


def landing_specs() -> list[dg.AssetSpec]:
    specs = [_topic_spec(t.name, t.key, t.partitions, t.is_cdc) for t in TOPICS]
    specs.append(
        dg.AssetSpec(
            key=LEDGER_KEY,
            group_name=LANDING_GROUP,
            description=(
                "The lake's ledger `$TRADELAKE_HOME/_ledger/`: one manifest per micro-batch (offset range and "
                "records landed / quarantined / tombstones per topic-partition). Its rename is the commit point "
                "of exactly-once landing; audit.ingestion_completeness reconciles it."
            ),
            kinds={"parquet"},
            tags={"tradelake/layer": "landing"},
        )
    )
    specs.append(
        dg.AssetSpec(
            key=QUARANTINE_KEY,
            group_name=LANDING_GROUP,
            description=(
                "Records rejected by the data contracts, every topic (`$TRADELAKE_HOME/quarantine/<topic>/`): "
                "lineage, redacted raw bytes, the rules broken and a readable reason."
            ),
            kinds={"parquet"},
            tags={"tradelake/layer": "landing"},
        )
    )
    return specs


def run_landing(settings: Settings, topics: Iterable[str] | None = None) -> tuple[IngestStats, list[dict[str, Any]]]:
    """Land ``topics`` (default: all) once; return the stats and the ledger rows this run committed."""
    selected = set(topics) if topics is not None else {t.name for t in TOPICS}
    first_batch = Ledger(settings.home).next_batch_id()
    lander = Lander(settings, topics=[t.name for t in TOPICS if t.name in selected])
    stats = lander.run(follow=False)
    committed = [r for r in Ledger(settings.home).manifests().to_pylist() if r["batch_id"] >= first_batch]
    return stats, committed


def _file_bytes(home: Path, topic: str, batch_ids: Iterable[int]) -> int:
    total = 0
    for b in batch_ids:
        for kind in ("landing", "quarantine"):
            path = home / kind / topic / batch_file_name(b)
            if path.exists():
                total += path.stat().st_size
    return total


def topic_metadata(
    settings: Settings,
    topic: str,
    stats: IngestStats,
    committed: list[dict[str, Any]],
    lag: dict[int, int],
    totals: dict[str, int],
    schema: Any = None,
) -> dict[str, Any]:
    """What one landing run did to one topic, as materialization metadata."""
    rows = [r for r in committed if r["topic"] == topic]
    batches = sorted({r["batch_id"] for r in rows})
    counts = {k: sum(r[k] for r in rows) for k in ("records", "landed", "quarantined", "tombstones")}
    offsets: dict[str, list[int]] = {}
    for r in sorted(rows, key=lambda r: (r["partition"], r["first_offset"])):
        span = offsets.setdefault(str(r["partition"]), [r["first_offset"], r["last_offset"]])
        span[1] = max(span[1], r["last_offset"])
    metadata: dict[str, Any] = {
        **{k: dg.MetadataValue.int(v) for k, v in counts.items()},
        "offset_range": dg.MetadataValue.json(offsets),
        "lag": dg.MetadataValue.int(sum(lag.values())),
        "lag_by_partition": dg.MetadataValue.json({str(p): n for p, n in sorted(lag.items())}),
        "bytes_written": dg.MetadataValue.int(_file_bytes(settings.home, topic, batches)),
        "records_per_second": dg.MetadataValue.float(
            round(counts["records"] / stats.seconds, 1) if stats.seconds else 0.0
        ),
        "batches": dg.MetadataValue.int(len(batches)),
        "quarantine_rules": dg.MetadataValue.json(dict(Counter(stats.quarantine_rules.get(topic, {})).most_common())),
        "dagster/row_count": dg.MetadataValue.int(totals.get(topic, 0)),
        "path": dg.MetadataValue.path(str(settings.home / "landing" / topic)),
    }
    if batches:
        # Read back by the contract checks: the validation results of exactly these batches.
        metadata["first_batch"] = dg.MetadataValue.int(batches[0])
        metadata["last_batch"] = dg.MetadataValue.int(batches[-1])
    if schema is not None:
        metadata["dagster/column_schema"] = dg.TableSchema(
            columns=[dg.TableColumn(name=f.name, type=str(f.type)) for f in schema]
        )
    return metadata


def _lag_by_topic(settings: Settings, topics: Iterable[str]) -> dict[str, dict[int, int]]:
    wanted = set(topics)
    lag: dict[str, dict[int, int]] = defaultdict(dict)
    for row in partition_status(settings):
        if row.topic in wanted and row.lag is not None:
            lag[row.topic][row.partition] = row.lag
    return lag


def _totals(manifests: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per topic, every record the lake has represented so far (all committed batches)."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in manifests:
        for k in ("records", "landed", "quarantined", "tombstones"):
            totals[r["topic"]][k] += r[k]
    return totals


@dg.multi_asset(
    name="land_topics",
    specs=landing_specs(),
    can_subset=True,
    description="One micro-batch run: land the selected Kafka topics up to their current high watermarks.",
)
def land_topics(context: dg.AssetExecutionContext, tradelake: TradelakeResource) -> Iterator[dg.MaterializeResult]:
    selected = context.selected_asset_keys
    topics = [t for k, t in TOPIC_BY_KEY.items() if k in selected] or list(TOPIC_BY_KEY.values())
    settings = tradelake.settings()
    context.log.info(f"landing {len(topics)} topic(s) into {settings.home}")
    stats, committed = run_landing(settings, topics)
    lag = _lag_by_topic(settings, topics)
    manifests = Ledger(settings.home).manifests().to_pylist()
    totals = _totals(manifests)
    schemas = _landed_schemas(settings, topics)
    context.log.info(
        f"landed {stats.records:,} records in {stats.batches} batch(es), {stats.seconds:.1f}s: "
        f"{stats.landed:,} landed, {stats.quarantined:,} quarantined, {stats.tombstones:,} tombstones"
    )
    for topic in topics:
        yield dg.MaterializeResult(
            asset_key=topic_key(topic),
            metadata=topic_metadata(
                settings,
                topic,
                stats,
                committed,
                lag.get(topic, {}),
                {t: c["landed"] for t, c in totals.items()},
                schemas.get(topic),
            ),
        )
    batches = sorted({r["batch_id"] for r in committed})
    if LEDGER_KEY in selected:
        yield dg.MaterializeResult(
            asset_key=LEDGER_KEY,
            metadata={
                "batches": dg.MetadataValue.int(len(batches)),
                "first_batch": dg.MetadataValue.int(batches[0]) if batches else dg.MetadataValue.null(),
                "last_batch": dg.MetadataValue.int(batches[-1]) if batches else dg.MetadataValue.null(),
                "records": dg.MetadataValue.int(stats.records),
                "dagster/row_count": dg.MetadataValue.int(len(manifests)),
                "path": dg.MetadataValue.path(str(settings.home / "_ledger")),
            },
        )
    if QUARANTINE_KEY in selected:
        yield dg.MaterializeResult(
            asset_key=QUARANTINE_KEY,
            metadata={
                "quarantined": dg.MetadataValue.int(stats.quarantined),
                "quarantined_by_topic": dg.MetadataValue.json(
                    {t: c["quarantined"] for t, c in sorted(stats.per_topic.items()) if c["quarantined"]}
                ),
                "dagster/row_count": dg.MetadataValue.int(sum(c["quarantined"] for c in totals.values())),
                "path": dg.MetadataValue.path(str(settings.home / "quarantine")),
            },
        )


def _landed_schemas(settings: Settings, topics: Iterable[str]) -> dict[str, Any]:
    """The landed Parquet schema of each topic (batch 0 holds it, written by every run)."""
    import pyarrow.parquet as pq

    schemas = {}
    for topic in topics:
        path = settings.home / "landing" / topic / batch_file_name(0)
        if path.exists():
            schemas[topic] = pq.read_schema(path)
    return schemas


def defs() -> dg.Definitions:
    return dg.Definitions(assets=[land_topics])
