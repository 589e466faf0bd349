"""The jobs the automation runs: a micro-batch (landing and what depends on it) and a full build."""

import dagster as dg

from pipelines.defs.dbt.assets import DBT_OP_NAME, DbtBuildConfig
from pipelines.defs.landing.assets import LANDING_GROUP
from pipelines.defs.maintenance.assets import MAINTENANCE_GROUP
from pipelines.defs.operations.assets import PUBLISHED_TABLE_KEY

MICRO_BATCH_JOB = "micro_batch"
FULL_BUILD_JOB = "full_build"

micro_batch_job = dg.define_asset_job(
    MICRO_BATCH_JOB,
    # what was published (lake/published) feeds the ops change models too: those read it
    selection=dg.AssetSelection.groups(LANDING_GROUP).downstream()
    | dg.AssetSelection.assets(PUBLISHED_TABLE_KEY).downstream(include_self=False),
    description=(
        "Land the topics up to their high watermarks, check their contracts, build what depends on them, "
        "publish the derived events."
    ),
)

full_build_job = dg.define_asset_job(
    FULL_BUILD_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(MAINTENANCE_GROUP),
    config=dg.RunConfig(ops={DBT_OP_NAME: DbtBuildConfig(full_refresh=True)}),
    description="Land every topic, then rebuild every dbt model from scratch (dbt build --full-refresh).",
)
