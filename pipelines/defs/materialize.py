"""Materialize the whole asset graph once, in process, recorded in the lake's Dagster instance.

For ``tradelake demo`` (or any script) that wants what the Dagster UI would do — land every
topic, evaluate the contract checks, ``dbt build`` with the dbt tests as checks — and wants
``tradelake ui`` to show it afterwards: runs, materializations with their metadata, check
results. The instance is ``$TRADELAKE_HOME/dagster`` (the one ``tradelake ui`` serves); the
definitions and resources are exactly the code location's, configured through the
environment the UI would give them.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import dagster as dg

from pipelines.defs.maintenance import MAINTENANCE_KEY
from pipelines.settings import Settings


@dataclass(frozen=True)
class MaterializeSummary:
    run_id: str
    success: bool
    materialized: int
    checks_passed: int
    checks_warned: int
    checks_failed: int
    failed_checks: tuple[str, ...]  # failed with severity ERROR
    result: dg.ExecuteInProcessResult = field(repr=False, compare=False)

    def summary(self) -> str:
        state = "succeeded" if self.success else "FAILED"
        line = (
            f"Dagster run {self.run_id[:8]} {state}: {self.materialized} assets materialized, "
            f"{self.checks_passed} checks passed, {self.checks_warned} warned, {self.checks_failed} failed"
        )
        return line + (f" ({', '.join(self.failed_checks[:5])})" if self.failed_checks else "")


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def materialize_all(settings: Settings, kafka_config: str | None = None, log_level: str = "INFO") -> MaterializeSummary:
    """Run every asset and check of the code location once against ``settings``' lake and broker.

    ``log_level`` is the console's; the run's full event log is kept in the instance (the UI).
    """
    from pipelines.definitions import build_definitions
    from pipelines.ui import prepare_dagster_home, ui_environment

    home = prepare_dagster_home(settings)
    env = ui_environment(settings, kafka_config)
    if settings.pii_key:
        env["TRADELAKE_PII_KEY"] = settings.pii_key.decode()
    with _environment(env), dg.DagsterInstance.from_config(str(home)) as instance:
        defs = build_definitions()
        everything = set(defs.resolve_asset_graph().get_all_asset_keys()) - {MAINTENANCE_KEY}  # on its schedule
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            asset_selection=sorted(everything),
            instance=instance,
            raise_on_error=False,
            tags={"tradelake/trigger": "materialize_all"},
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
    evaluations = result.get_asset_check_evaluations()
    failed = tuple(
        f"{e.asset_key.to_user_string()}:{e.check_name}"
        for e in evaluations
        if not e.passed and e.severity == dg.AssetCheckSeverity.ERROR
    )
    warned = sum(1 for e in evaluations if not e.passed and e.severity != dg.AssetCheckSeverity.ERROR)
    return MaterializeSummary(
        run_id=result.run_id,
        success=result.success,
        materialized=len({e.asset_key for e in result.get_asset_materialization_events()}),
        checks_passed=len(evaluations) - len(failed) - warned,
        checks_warned=warned,
        checks_failed=len(failed),
        failed_checks=failed,
        result=result,
    )
