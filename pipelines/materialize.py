"""Materialize the whole asset graph once, recorded in the lake's Dagster instance.

For ``tradelake demo`` (or any script) that wants what the Dagster UI would do — land every
topic, evaluate the contract checks, ``dbt build`` with the dbt tests as checks — and wants
``tradelake ui`` to show it afterwards: runs, materializations with their metadata, check
results. The instance is ``$TRADELAKE_HOME/dagster`` (the one ``tradelake ui`` serves); the
definitions and resources are exactly the code location's.

The run executes in a process of its own (``python -m pipelines.materialize``) started with the
environment ``tradelake ui`` gives Dagster (``pipelines.ui.ui_environment``): the resources read
the lake from it, and dbt, which dagster-dbt starts with the run's environment, too. The
caller's environment is left as it was. The child writes the run's summary to a file the
parent reads back.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from pipelines.errors import TradelakeError
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

    def summary(self) -> str:
        state = "succeeded" if self.success else "FAILED"
        line = (
            f"Dagster run {self.run_id[:8]} {state}: {self.materialized} assets materialized, "
            f"{self.checks_passed} checks passed, {self.checks_warned} warned, {self.checks_failed} failed"
        )
        return line + (f" ({', '.join(self.failed_checks[:5])})" if self.failed_checks else "")


def materialize_all(
    settings: Settings, kafka_config: str | None = None, log_level: str = "INFO", output: TextIO | None = None
) -> MaterializeSummary:
    """Run every asset and check of the code location once against ``settings``' lake and broker.

    ``log_level`` is the console's (standard error); the run's full event log is kept in the
    instance (the UI). ``output``: a file for the run's standard output, dbt's streamed lines
    (default: this process's).
    """
    from pipelines.ui import prepare_dagster_home, ui_environment

    prepare_dagster_home(settings)
    env = ui_environment(settings, kafka_config)
    if settings.pii_key:
        env["TRADELAKE_PII_KEY"] = settings.pii_key.decode()
    with tempfile.TemporaryDirectory(prefix="tradelake-materialize-") as tmp:
        summary = Path(tmp) / "summary.json"
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.materialize", "--log-level", log_level, "--summary", str(summary)],
            env=env,
            stdout=output,
        )
        if done.returncode != 0 or not summary.exists():
            raise TradelakeError(f"the Dagster run did not complete (exit status {done.returncode}; see above)")
        fields = json.loads(summary.read_text())
    return MaterializeSummary(**{**fields, "failed_checks": tuple(fields["failed_checks"])})


def run_in_this_process(log_level: str) -> MaterializeSummary:
    """The child's part: the run, in this process, on the instance of ``$DAGSTER_HOME``."""
    import dagster as dg

    from pipelines.definitions import defs as location
    from pipelines.defs.maintenance.assets import MAINTENANCE_KEY

    with dg.DagsterInstance.get() as instance:
        defs = location()
        graph = defs.resolve_asset_graph()
        # maintenance runs on its schedule; declared tables (lake/published) are written by an asset
        everything = {k for k in graph.get_all_asset_keys() if graph.get(k).is_executable} - {MAINTENANCE_KEY}
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
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.materialize", description=__doc__.splitlines()[0])
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--summary", required=True, help="file to write the run's summary to (JSON)")
    args = parser.parse_args(argv)
    try:
        done = run_in_this_process(args.log_level)
    except TradelakeError as e:
        print(f"tradelake: error: {e}", file=sys.stderr)
        return e.exit_code
    Path(args.summary).write_text(json.dumps(asdict(done)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
