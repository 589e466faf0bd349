"""Automation: continuous micro-batches on lag, a daily full build, freshness on the marts.

- ``landing_lag_sensor`` (every ``minimum_interval_seconds``, default 30 s) reads each
  partition's lag (high watermark − the offsets the lake's ``_batches`` table has committed,
  as ``tradelake status`` does). When any topic lags it requests a ``micro_batch`` run of the
  lagging topics' landing assets, the lake's ``_batches`` and ``_quarantine`` tables, and
  everything downstream of them (their contract checks, then ``dbt build`` of
  the affected models: incremental models only process the new batches). It skips while a
  micro-batch run is queued or running, and does not request the same lag twice (the run key
  is the lagging partitions' positions and high watermarks), so a failed run is retried when
  new records arrive or from the UI. Unreachable broker: it skips and says why.
- ``daily_full_build`` (03:00 UTC): every asset, with ``dbt build --full-refresh``.
- Marts (models under ``models/marts/``) carry a freshness policy (``pipelines.defs.dbt``,
  ``MART_FRESHNESS``): ``WARN`` when not rebuilt for 24 h, ``FAIL`` after 26 h (the daily build
  plus slack). Dagster's freshness daemon evaluates it and the UI shows each mart's state;
  ``FreshnessPolicy`` is 1.13's successor of the superseded ``build_last_update_freshness_checks``.

``tradelake ingest --follow`` remains the way to land continuously without Dagster.
"""

import hashlib
from collections import defaultdict

import dagster as dg

from pipelines.defs.dbt import DBT_OP_NAME, DbtBuildConfig
from pipelines.defs.landing import BATCHES_KEY, LANDING_GROUP, QUARANTINE_KEY, topic_key
from pipelines.defs.maintenance import MAINTENANCE_GROUP
from pipelines.defs.resources import TradelakeResource
from pipelines.errors import TradelakeError
from pipelines.status import PartitionStatus, partition_status

MICRO_BATCH_JOB = "micro_batch"
FULL_BUILD_JOB = "full_build"
LAG_SENSOR = "landing_lag_sensor"
DEFAULT_SENSOR_INTERVAL = 30
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]

micro_batch_job = dg.define_asset_job(
    MICRO_BATCH_JOB,
    selection=dg.AssetSelection.groups(LANDING_GROUP).downstream(),
    description="Land the topics up to their high watermarks, check their contracts, build what depends on them.",
)

full_build_job = dg.define_asset_job(
    FULL_BUILD_JOB,
    selection=dg.AssetSelection.all() - dg.AssetSelection.groups(MAINTENANCE_GROUP),
    config=dg.RunConfig(ops={DBT_OP_NAME: DbtBuildConfig(full_refresh=True)}),
    description="Land every topic, then rebuild every dbt model from scratch (dbt build --full-refresh).",
)

daily_full_build = dg.ScheduleDefinition(
    name="daily_full_build",
    job=full_build_job,
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every day at 03:00 UTC: land everything and rebuild all models with --full-refresh.",
)


def lag_by_topic(rows: list[PartitionStatus]) -> dict[str, int]:
    lag: dict[str, int] = defaultdict(int)
    for r in rows:
        if r.lag:
            lag[r.topic] += r.lag
    return dict(lag)


def _run_key(rows: list[PartitionStatus]) -> str:
    state = sorted((r.topic, r.partition, r.landed_up_to, r.high_watermark) for r in rows if r.lag)
    return "lag-" + hashlib.sha256(repr(state).encode()).hexdigest()[:16]


def build_lag_sensor(minimum_interval_seconds: int = DEFAULT_SENSOR_INTERVAL) -> dg.SensorDefinition:
    @dg.sensor(
        name=LAG_SENSOR,
        job=micro_batch_job,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            "Requests a micro-batch run (landing of the lagging topics, their contract checks, the dbt models "
            "downstream) whenever a topic has records beyond what the lake has landed."
        ),
    )
    def landing_lag_sensor(
        context: dg.SensorEvaluationContext, tradelake: TradelakeResource
    ) -> dg.RunRequest | dg.SkipReason:
        try:
            rows = partition_status(tradelake.settings())
        except TradelakeError as e:
            return dg.SkipReason(f"cannot read the topics' lag: {e}")
        lag = lag_by_topic(rows)
        if not lag:
            return dg.SkipReason("no lag: every topic is landed up to its high watermark")
        active = context.instance.get_run_records(
            filters=dg.RunsFilter(job_name=MICRO_BATCH_JOB, statuses=_ACTIVE), limit=1
        )
        if active:
            return dg.SkipReason(
                f"{sum(lag.values()):,} records of lag; run {active[0].dagster_run.run_id[:8]} is still landing"
            )
        roots = [topic_key(t) for t in sorted(lag)] + [BATCHES_KEY, QUARANTINE_KEY]
        selected = dg.AssetSelection.assets(*roots).downstream().resolve(context.repository_def.asset_graph)
        summary = ", ".join(f"{t} {n:,}" for t, n in sorted(lag.items()))
        context.log.info(f"lag: {summary}")
        return dg.RunRequest(
            run_key=_run_key(rows),
            asset_selection=sorted(selected),
            tags={"tradelake/trigger": "lag", "tradelake/lagging_topics": ",".join(sorted(lag))},
        )

    return landing_lag_sensor


def defs(minimum_interval_seconds: int = DEFAULT_SENSOR_INTERVAL) -> dg.Definitions:
    return dg.Definitions(
        jobs=[micro_batch_job, full_build_job],
        schedules=[daily_full_build],
        sensors=[build_lag_sensor(minimum_interval_seconds)],
    )
