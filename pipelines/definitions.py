"""tradelake's Dagster code location: ``dagster dev -m pipelines.definitions`` (or ``tradelake ui``).

Thin on purpose: each domain builds its own definitions in ``pipelines/defs/`` and this module
merges them, adds the shared resources and runs every job in one process (2-core machines:
one step at a time, no process per step). Everything is built lazily when Dagster loads the
location, never at import; the resources read their environment when a run or a sensor tick
starts (``TRADELAKE_HOME``; ``KAFKA_BOOTSTRAP_SERVERS`` / ``TRADELAKE_KAFKA_CONFIG`` or the embedded
broker). ``TRADELAKE_SENSOR_INTERVAL`` (seconds, default 30) sets how often the lag sensor looks,
``TRADELAKE_MAINTENANCE_CRON`` (default ``17 * * * *``) when the lake's tables are maintained.
"""

from __future__ import annotations

import os

import dagster as dg

from pipelines.defs import automation, contracts, dbt, landing, maintenance
from pipelines.defs.resources import ContractPolicy, TradelakeResource


def build_definitions(
    dbt_project_dir: os.PathLike | None = None,
    sensor_interval_seconds: int = automation.DEFAULT_SENSOR_INTERVAL,
) -> dg.Definitions:
    """Every domain's definitions, merged (``dbt_project_dir``: another dbt project, for tests)."""
    return dg.Definitions.merge(
        landing.defs(),
        contracts.defs(),
        dbt.defs(dbt_project_dir),
        automation.defs(sensor_interval_seconds),
        maintenance.defs(),
        dg.Definitions(
            resources={
                "tradelake": TradelakeResource(home=dg.EnvVar("TRADELAKE_HOME")),
                "contract_policy": ContractPolicy(),
            },
            executor=dg.in_process_executor,
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    interval = os.environ.get("TRADELAKE_SENSOR_INTERVAL")
    return build_definitions(sensor_interval_seconds=int(interval) if interval else automation.DEFAULT_SENSOR_INTERVAL)
