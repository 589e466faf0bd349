"""The lag sensor: a micro-batch run whenever a topic has records the lake has not landed
(see the package's docstring); its interval is ``TRADELAKE_SENSOR_INTERVAL`` (seconds, default
30), read when the code location loads."""

import hashlib
import os
from collections import defaultdict

import dagster as dg

from pipelines.defs.automation.jobs import MICRO_BATCH_JOB, micro_batch_job
from pipelines.defs.landing.assets import BATCHES_KEY, QUARANTINE_KEY, topic_key
from pipelines.defs.resources import TradelakeResource
from pipelines.errors import TradelakeError
from pipelines.landing.ingest import landing_owner
from pipelines.settings import env_number
from pipelines.status import PartitionStatus, describe_lag, partition_status

LAG_SENSOR = "landing_lag_sensor"
INTERVAL_VARIABLE = "TRADELAKE_SENSOR_INTERVAL"
DEFAULT_SENSOR_INTERVAL = 30
_ACTIVE = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]


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
        settings = tradelake.settings()
        owner = landing_owner(settings)
        try:
            rows = partition_status(settings)
        except TradelakeError as e:
            return dg.SkipReason(f"cannot read the topics' lag: {e}")
        lag = lag_by_topic(rows)
        if owner is not None:  # `tradelake run` or `ingest --follow` lands (and the runner builds) already
            behind = f"; lag per partition (owner): {describe_lag(rows)}" if lag else "; no lag"
            return dg.SkipReason(
                f"{owner} owns landing of this lake: it lands continuously, no micro-batch needed{behind}"
            )
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
        context.log.info(f"lag per partition (owner): {describe_lag(rows)}")
        return dg.RunRequest(
            run_key=_run_key(rows),
            asset_selection=sorted(selected),
            tags={"tradelake/trigger": "lag", "tradelake/lagging_topics": ",".join(sorted(lag))},
        )

    return landing_lag_sensor


@dg.definitions
def defs() -> dg.Definitions:
    interval = env_number(os.environ, INTERVAL_VARIABLE, DEFAULT_SENSOR_INTERVAL, minimum=1)
    return dg.Definitions(sensors=[build_lag_sensor(interval)])
