"""The Dagster code location run in process on temp lakes fed by the embedded broker.

No mocks: real broker (Tansu over TCP), real simulator traffic, the definitions exactly as
``dagster dev`` loads them (resources from the environment), real dbt build on DuckDB.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from unittest import mock

import dagster as dg
import duckdb
import pytest

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.build import dbt_environment
from pipelines.catalog import TOPIC_NAMES
from pipelines.definitions import defs as code_location
from pipelines.defs.automation.jobs import MICRO_BATCH_JOB
from pipelines.defs.automation.sensors import LAG_SENSOR
from pipelines.defs.contracts.checks import CHECK_NAME
from pipelines.defs.dbt.assets import DBT_OP_NAME
from pipelines.defs.landing.assets import BATCHES_KEY, QUARANTINE_KEY, run_landing, topic_key
from pipelines.defs.maintenance.assets import MAINTENANCE_KEY
from pipelines.materialize import materialize_all
from pipelines.produce import simulate
from pipelines.settings import Settings
from pipelines.simulator import SimulationConfig
from pipelines.status import partition_status
from tests.conftest import TEST_PII_KEY
from tests.e2e.lake_checks import assert_exactly_once

pytestmark = pytest.mark.e2e

MART_KEYS = {
    dg.AssetKey(["pricing", "price_bands"]),
    dg.AssetKey(["rankings", "tradesperson_rankings"]),
    dg.AssetKey(["finance", "payment_reconciliation"]),
    dg.AssetKey(["finance", "reconciliation_summary"]),
    dg.AssetKey(["audit", "ingestion_completeness"]),
    dg.AssetKey(["audit", "quarantine"]),
    dg.AssetKey(["audit", "lifecycle_violations"]),
}


@contextmanager
def lake_environment(settings: Settings) -> Iterator[None]:
    """The environment ``tradelake ui`` gives Dagster, pointing at a test lake."""
    env = {
        **dbt_environment(settings),
        "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
        "TRADELAKE_PII_KEY": TEST_PII_KEY,
    }
    with mock.patch.dict(os.environ, env):
        os.environ.pop("TRADELAKE_KAFKA_CONFIG", None)
        os.environ.pop("TRADELAKE_CONTRACTS", None)
        yield


def new_lake(root: Path, broker: EmbeddedBroker) -> Settings:
    settings = Settings.load(
        env={"TRADELAKE_PII_KEY": TEST_PII_KEY}, home=str(root / "lake"), bootstrap_servers=broker.bootstrap_servers
    )
    kafka.ensure_topics(settings)
    return settings


@dataclass
class BuiltLake:
    home: Path
    success: bool
    all_assets: set[dg.AssetKey]
    all_checks: set[dg.AssetCheckKey]
    materialized: dict[dg.AssetKey, dict]
    evaluations: dict[dg.AssetCheckKey, dg.AssetCheckEvaluation]
    records_per_topic: dict[str, int]
    summary: str


_BUILT: dict[Path, BuiltLake] = {}


def build_lake_through_dagster(root: Path) -> BuiltLake:
    """Simulate → materialize every asset and check in process; the warehouse stays under root.

    Memoized per root: the notebook tests read the same warehouse (built once per session).
    """
    if root in _BUILT:
        return _BUILT[root]
    with EmbeddedBroker(root / "broker") as broker:
        settings = new_lake(root, broker)
        report = simulate(settings, SimulationConfig(events=12_000, seed=7))
        # As `tradelake demo` would: recorded in the lake's own instance, which `tradelake ui` serves.
        done = materialize_all(settings)
        assert_exactly_once(settings)
    graph = code_location().resolve_asset_graph()
    with dg.DagsterInstance.from_config(str(settings.home / "dagster")) as instance:
        materializations = instance.get_records_for_run(done.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        checks = instance.get_records_for_run(done.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    evaluations = [r.event_log_entry.dagster_event.event_specific_data for r in checks.records]
    built = BuiltLake(
        home=settings.home,
        success=done.success,
        # maintenance runs on its own schedule; declared tables (lake/published) are written by an asset
        all_assets={k for k in graph.get_all_asset_keys() if graph.get(k).is_executable} - {MAINTENANCE_KEY},
        all_checks=set(graph.asset_check_keys),
        materialized={r.asset_key: dict(r.asset_materialization.metadata) for r in materializations.records},
        evaluations={dg.AssetCheckKey(e.asset_key, e.check_name): e for e in evaluations},
        records_per_topic=dict(report.records_per_topic),
        summary=done.summary(),
    )
    _BUILT[root] = built
    return built


@pytest.fixture(scope="session")
def dagster_built_lake(tmp_path_factory: pytest.TempPathFactory) -> BuiltLake:
    return build_lake_through_dagster(tmp_path_factory.getbasetemp() / "dagster-built-lake")


def test_the_whole_graph_materializes_in_process(dagster_built_lake: BuiltLake):
    built = dagster_built_lake
    assert built.success
    assert set(built.materialized) == built.all_assets, "every asset materialized"
    assert MAINTENANCE_KEY not in built.materialized, "maintenance runs on its schedule, not with the data"
    assert set(built.evaluations) == built.all_checks, "every check evaluated"
    assert set(built.materialized) >= MART_KEYS

    for topic in TOPIC_NAMES:
        check = built.evaluations[dg.AssetCheckKey(topic_key(topic), CHECK_NAME)]
        assert check.passed, check.description
        md = built.materialized[topic_key(topic)]
        assert md["records"].value == built.records_per_topic[topic]
        assert md["records"].value == md["landed"].value + md["quarantined"].value + md["tombstones"].value
        assert md["lag"].value == 0
        assert md["bytes_written"].value > 0 and md["records_per_second"].value > 0
        assert md["first_batch"].value >= 1
        offsets = md["offset_range"].value
        assert sum(last - first + 1 for first, last in offsets.values()) == md["records"].value
    dbt_errors = [
        e
        for k, e in built.evaluations.items()
        if k.name != CHECK_NAME and not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    ]
    assert not dbt_errors, [e.check_name for e in dbt_errors]

    assert built.summary.startswith("Dagster run") and "succeeded" in built.summary
    with dg.DagsterInstance.from_config(str(built.home / "dagster")) as instance:
        runs = instance.get_run_records()
        assert len(runs) == 1 and runs[0].dagster_run.is_success, "recorded where `tradelake ui` looks"
        assert instance.get_latest_materialization_event(dg.AssetKey(["finance", "payment_reconciliation"]))

    with duckdb.connect(str(built.home / "warehouse.duckdb"), read_only=True) as con:
        assert con.sql("select count(*) from finance.payment_reconciliation").fetchone()[0] > 0
        landed = con.sql("select sum(landed) from audit.ingestion_completeness").fetchone()[0]
    assert landed == sum(built.materialized[topic_key(t)]["landed"].value for t in TOPIC_NAMES)


def produce_buggy_bids(settings: Settings, count: int) -> None:
    """A bids-service release that sends EUR, which the bid.placed v2 contract does not allow."""
    producer = kafka.producer(settings)
    for i in range(count):
        value = {
            "event_id": str(uuid.UUID(int=0xB0B0_0000 + i)),
            "event_type": "bid.placed",
            "event_time": "2026-11-04T09:30:00.000Z",
            "schema_version": 2,
            "producer": "bids-service/2.5.0",
            "bid_id": f"bid_eur_{i:05d}",
            "job_id": f"job_{i:06d}",
            "tradesperson_id": "tp_0001",
            "amount_cents": 12_500,
            "currency": "EUR",
            "includes_materials": False,
        }
        producer.produce("marketplace.bids", key=value["job_id"], value=json.dumps(value))
    assert producer.flush(30) == 0


def test_a_contract_failure_blocks_the_dbt_build(tmp_path: Path):
    with EmbeddedBroker(tmp_path / "broker") as broker:
        settings = new_lake(tmp_path, broker)
        simulate(settings, SimulationConfig(events=3_000, seed=3))
        produce_buggy_bids(settings, 200)
        with lake_environment(settings), dg.instance_for_test() as instance:
            defs = code_location()
            # the job the lag sensor runs: landing, its contract checks, then dbt
            result = defs.resolve_job_def(MICRO_BATCH_JOB).execute_in_process(instance=instance, raise_on_error=False)
        assert_exactly_once(settings)  # the batch is landed and quarantined all the same

    assert not result.success
    contract = {e.asset_key: e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_NAME}
    assert set(contract) == {topic_key(t) for t in TOPIC_NAMES}
    failed = contract.pop(topic_key("marketplace.bids"))
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert "currency is USD or CAD" in failed.metadata["failures"].value
    assert "beyond their mostly" in failed.description
    assert all(e.passed for e in contract.values()), "only the broken producer's topic fails"

    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {topic_key(t) for t in TOPIC_NAMES} | {BATCHES_KEY, QUARANTINE_KEY} == materialized, "only landing ran"
    started = {e.step_key for e in result.all_events if e.event_type_value == "STEP_START"}
    assert DBT_OP_NAME not in started
    assert not (settings.home / "warehouse.duckdb").exists()


def test_the_lag_sensor_requests_a_micro_batch_with_lag_and_skips_without(tmp_path: Path):
    with EmbeddedBroker(tmp_path / "broker") as broker:
        settings = new_lake(tmp_path, broker)
        with lake_environment(settings), dg.instance_for_test() as instance:
            defs = code_location()
            sensor = defs.resolve_sensor_def(LAG_SENSOR)
            assert sensor.minimum_interval_seconds == 30

            def tick():
                return sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))

            skipped = tick()
            assert isinstance(skipped, dg.SkipReason) and "no lag" in skipped.skip_message

            simulate(settings, SimulationConfig(events=1_500, seed=5))
            request = tick()
            assert isinstance(request, dg.RunRequest)
            selection = set(request.asset_selection)
            assert {topic_key(t) for t in TOPIC_NAMES} | {BATCHES_KEY, QUARANTINE_KEY} | MART_KEYS <= selection
            assert tick().run_key == request.run_key, "the same lag is requested once"

            # A subset run lands only the selected topic; the sensor then asks for the others only.
            subset = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, asset_selection=[topic_key("marketplace.jobs")]
            )
            assert {e.asset_key for e in subset.get_asset_materialization_events()} == {topic_key("marketplace.jobs")}
            lag = {r.topic: r.lag for r in partition_status(settings)}
            assert lag["marketplace.jobs"] == 0 and lag["fleet.gps"] > 0
            request = tick()
            assert isinstance(request, dg.RunRequest)
            assert topic_key("marketplace.jobs") not in request.asset_selection
            assert topic_key("fleet.gps") in request.asset_selection
            assert dg.AssetKey(["staging", "stg_fleet__gps"]) in request.asset_selection

            run_landing(settings)
            skipped = tick()
            assert isinstance(skipped, dg.SkipReason) and "no lag" in skipped.skip_message

    # No broker configured or registered: the sensor says why it cannot tell, the tick does not fail.
    with lake_environment(replace(settings, bootstrap_servers=None)), dg.instance_for_test() as instance:
        skipped = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
    assert isinstance(skipped, dg.SkipReason) and "cannot read the topics' lag" in skipped.skip_message
