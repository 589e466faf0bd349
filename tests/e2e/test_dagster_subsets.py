"""Dagster runs that select only the lake's own landing tables (``landing/batches``, ``landing/quarantine``).

Landing is one multi-asset: such a run still lands every topic (their offsets are independent
of the selection), but it must report only the assets it was asked for — a materialization of
an unselected asset is a ``DagsterInvariantViolationError`` raised after the data is committed.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.definitions import defs as code_location
from pipelines.defs.landing.assets import BATCHES_KEY, QUARANTINE_KEY
from pipelines.produce import simulate
from pipelines.simulator import SimulationConfig
from pipelines.status import partition_status
from tests.e2e.lake_checks import assert_exactly_once
from tests.e2e.test_dagster import lake_environment, new_lake

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("selected", [BATCHES_KEY, QUARANTINE_KEY], ids=["batches", "quarantine"])
def test_a_run_selecting_only_a_lake_table_succeeds_and_reports_only_it(tmp_path: Path, selected: dg.AssetKey):
    with EmbeddedBroker(tmp_path / "broker") as broker:
        settings = new_lake(tmp_path, broker)
        report = simulate(settings, SimulationConfig(events=800, seed=11, malformed_rate=0.05))
        with lake_environment(settings), dg.instance_for_test() as instance:
            job = code_location().resolve_implicit_global_asset_job_def()
            result = job.execute_in_process(instance=instance, asset_selection=[selected], raise_on_error=False)
        assert result.success, [e.message for e in result.all_events if e.is_failure]
        assert {e.asset_key for e in result.get_asset_materialization_events()} == {selected}
        # every topic was landed all the same, exactly once
        assert all(r.lag == 0 for r in partition_status(settings))
        assert_exactly_once(settings)
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    if selected == BATCHES_KEY:
        assert metadata["records"].value == sum(report.records_per_topic.values())
    else:
        assert metadata["quarantined"].value > 0
