"""When the lake is maintained: ``maintenance_schedule`` runs ``lake_maintenance`` on
``TRADELAKE_MAINTENANCE_CRON`` (UTC, default ``17 * * * *``: hourly, away from the full hour the
daily build starts on), read when the code location loads."""

import os

import dagster as dg

from pipelines.defs.maintenance.assets import MAINTENANCE_KEY

MAINTENANCE_JOB = "maintenance"
MAINTENANCE_SCHEDULE = "maintenance_schedule"
CRON_VARIABLE = "TRADELAKE_MAINTENANCE_CRON"
DEFAULT_CRON = "17 * * * *"

maintenance_job = dg.define_asset_job(
    MAINTENANCE_JOB,
    selection=[MAINTENANCE_KEY],
    description="Compact, checkpoint and vacuum the lake's Delta tables.",
)


def maintenance_schedule(cron: str) -> dg.ScheduleDefinition:
    return dg.ScheduleDefinition(
        name=MAINTENANCE_SCHEDULE,
        job=maintenance_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Maintain the lake's Delta tables (lake_maintenance) on TRADELAKE_MAINTENANCE_CRON.",
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions(
        jobs=[maintenance_job], schedules=[maintenance_schedule(os.environ.get(CRON_VARIABLE) or DEFAULT_CRON)]
    )
