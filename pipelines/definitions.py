"""tradelake's Dagster code location: ``pipelines.definitions:defs``, as ``[tool.dg.project]`` in
pyproject.toml declares it, so ``dagster dev``, ``dagster definitions validate`` and ``dg list defs``
find it from the repository root (``tradelake ui`` runs ``dagster dev -m pipelines.definitions``).

The definitions are the defs folder, ``pipelines/defs/``, one folder per domain, loaded by
``load_from_defs_folder``. This module adds what belongs to the location as a whole: every job
runs with the in-process executor (2-core machines: one process per run, one step at a time).
Loading happens when Dagster loads the location, never at import; the environment is read
then (``TRADELAKE_SENSOR_INTERVAL``, ``TRADELAKE_MAINTENANCE_CRON``,
``TRADELAKE_MART_FRESHNESS_MINUTES``) or when a run or a sensor tick starts (``TRADELAKE_HOME``;
``KAFKA_BOOTSTRAP_SERVERS`` / ``TRADELAKE_KAFKA_CONFIG`` or the embedded broker).
"""

from pathlib import Path

import dagster as dg

PROJECT_ROOT = Path(__file__).resolve().parents[1]  # where pyproject.toml's [tool.dg] is


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=PROJECT_ROOT),
        dg.Definitions(executor=dg.in_process_executor),
    )
