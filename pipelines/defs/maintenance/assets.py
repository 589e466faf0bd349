"""The lake's Delta tables maintained as an asset (``tradelake maintain`` in Dagster).

``lake_maintenance`` compacts each table's day partitions, checkpoints, vacuums and cleans the
log (``pipelines.lake.maintain``); its materializations record what each run did, table by
table. It has a group of its own (``maintenance``) and depends on no asset, so that no
micro-batch or full build runs it: compacting every 30 s would rewrite a day's files over and
over. Its job and schedule are in ``schedules.py``.
"""

import dagster as dg
from pydantic import Field

from pipelines.defs.resources import TradelakeResource
from pipelines.lake.maintain import DEFAULT_RETENTION_HOURS, DEFAULT_TARGET_SIZE, MaintenanceReport, run_maintenance

MAINTENANCE_KEY = dg.AssetKey("lake_maintenance")
MAINTENANCE_GROUP = "maintenance"


class MaintenanceConfig(dg.Config):
    retention_hours: int = Field(
        default=DEFAULT_RETENTION_HOURS,
        ge=DEFAULT_RETENTION_HOURS,
        description="Vacuum the files no version of this many last hours references (at least Delta's 7 days).",
    )
    target_file_mib: int = Field(default=DEFAULT_TARGET_SIZE // 2**20, ge=1, description="Compacted file size.")


def report_metadata(report: MaintenanceReport) -> dict[str, dg.MetadataValue]:
    rows = [
        f"| `{t.name}` | {t.files_before:,} | {t.files_after:,} | {t.bytes_after / 2**20:,.1f} "
        f"| {t.partitions_compacted:,} | {t.files_vacuumed:,} | {t.version_after:,} | {t.seconds:.1f} |"
        for t in report.tables
    ]
    header = "| table | files before | files after | MiB after | partitions compacted | vacuumed | version | s |"
    return {
        "tables": dg.MetadataValue.int(len(report.tables)),
        "files_before": dg.MetadataValue.int(sum(t.files_before for t in report.tables)),
        "files_after": dg.MetadataValue.int(sum(t.files_after for t in report.tables)),
        "files_vacuumed": dg.MetadataValue.int(sum(t.files_vacuumed for t in report.tables)),
        "bytes_after": dg.MetadataValue.int(sum(t.bytes_after for t in report.tables)),
        "retention_hours": dg.MetadataValue.int(report.retention_hours),
        "seconds": dg.MetadataValue.float(round(report.seconds, 3)),
        "by_table": dg.MetadataValue.md("\n".join([header, "|---|--:|--:|--:|--:|--:|--:|--:|", *rows])),
    }


@dg.asset(
    key=MAINTENANCE_KEY,
    group_name=MAINTENANCE_GROUP,
    kinds={"delta"},
    description=(
        "Maintenance of the lake's Delta tables (every topic, `_quarantine`, `_batches`, `_streams`): small files "
        "compacted per `_ingest_date` partition, a checkpoint, files older than the retention period that no "
        "version references vacuumed, expired log entries removed. Rows and committed offsets are unchanged."
    ),
    tags={"tradelake/layer": "landing"},
)
def lake_maintenance(
    context: dg.AssetExecutionContext, config: MaintenanceConfig, tradelake: TradelakeResource
) -> dg.MaterializeResult:
    report = run_maintenance(
        tradelake.settings(),
        retention_hours=config.retention_hours,
        target_size=config.target_file_mib * 2**20,
        on_table=lambda t: context.log.info(t.line()),
    )
    context.log.info(report.summary())
    return dg.MaterializeResult(metadata=report_metadata(report))
