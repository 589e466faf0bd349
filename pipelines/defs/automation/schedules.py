"""The daily full build."""

import dagster as dg

from pipelines.defs.automation.jobs import full_build_job

daily_full_build = dg.ScheduleDefinition(
    name="daily_full_build",
    job=full_build_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:00 UTC: land everything and rebuild all models with --full-refresh.",
)
