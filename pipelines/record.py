"""What landing and dbt do outside a Dagster run, recorded in the Dagster instance anyway.

``tradelake run`` (and ``tradelake build``) land and build without launching Dagster runs —
a run's launch alone costs ~10 s, too slow for marts that are seconds old. So that the UI
still shows the live history whoever did the work, every committed batch and every dbt build
is reported to the instance as runless events (``DagsterInstance.report_runless_asset_event``):
materializations of the landing assets and the dbt models, the contract checks and the dbt
tests as asset check evaluations, with the same asset keys and check names the code location
declares.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.defs.contracts.checks import CHECK_NAME, evaluate_contract, mostly_by_rule
from pipelines.defs.landing.assets import BATCHES_KEY, QUARANTINE_KEY, topic_key
from pipelines.defs.operations.assets import PUBLISH_KEY, publish_metadata
from pipelines.defs.resources import ContractPolicy
from pipelines.landing.committer import RoutedBatch
from pipelines.publish import PublishResult
from pipelines.settings import Settings

log = logging.getLogger("tradelake")

RUNNER_TAG = "tradelake/recorded_by"


@contextmanager
def dagster_instance(settings: Settings) -> Iterator[dg.DagsterInstance]:
    """The lake's Dagster instance (``$TRADELAKE_HOME/dagster``, as ``tradelake ui`` uses)."""
    from pipelines.ui import prepare_dagster_home

    with dg.DagsterInstance.from_config(str(prepare_dagster_home(settings))) as instance:
        yield instance


class Recorder:
    """Reports landing batches and dbt builds to one Dagster instance."""

    def __init__(self, instance: dg.DagsterInstance, recorded_by: str) -> None:
        self.instance = instance
        self.recorded_by = recorded_by
        self.policy = ContractPolicy()
        self.declared = mostly_by_rule()

    def _report(self, event: dg.AssetMaterialization | dg.AssetCheckEvaluation) -> None:
        self.instance.report_runless_asset_event(event)

    def batch(self, batch: RoutedBatch, commit_seconds: float, lag: dict[tuple[str, int], int]) -> None:
        """One committed batch: a materialization per topic it touched, its contract check, the lake tables."""
        for t in batch.topics.values():
            topic_lag = sum(n for (topic, _), n in lag.items() if topic == t.topic)
            key = topic_key(t.topic)
            self._report(
                dg.AssetMaterialization(
                    asset_key=key,
                    description=f"batch {batch.batch_id} committed by {self.recorded_by}",
                    metadata={
                        "first_batch": batch.batch_id,
                        "last_batch": batch.batch_id,
                        "records": t.records,
                        "landed": sum(t.landed.values()),
                        "quarantined": sum(t.quarantined.values()),
                        "tombstones": sum(t.tombstones.values()),
                        "lag": topic_lag,  # plotted over time by the UI (a numeric metadata series)
                        "commit_seconds": round(commit_seconds, 3),
                        RUNNER_TAG: self.recorded_by,
                    },
                )
            )
            evaluation = evaluate_contract(
                t.topic,
                [(batch.batch_id, t.validation)],
                self.declared,
                confidence=self.policy.confidence,
            )
            self._report(
                dg.AssetCheckEvaluation(
                    asset_key=key,
                    check_name=CHECK_NAME,
                    passed=evaluation.passed,
                    severity=evaluation.severity,
                    description=evaluation.describe(),
                    metadata=evaluation.metadata(self.policy),
                )
            )
        records = sum(t.records for t in batch.topics.values())
        for key in (BATCHES_KEY, QUARANTINE_KEY):
            self._report(
                dg.AssetMaterialization(
                    asset_key=key,
                    metadata={"batch_id": batch.batch_id, "records": records, RUNNER_TAG: self.recorded_by},
                )
            )

    def publish(self, result: PublishResult) -> None:
        """One publish run: a materialization of the derived events' asset with what it sent."""
        metadata = {**publish_metadata(result), "recorded_by": dg.MetadataValue.text(self.recorded_by)}
        self._report(dg.AssetMaterialization(asset_key=PUBLISH_KEY, metadata=metadata))

    def build(self, target: Path) -> list[str]:
        """One dbt build, from its ``run_results.json`` and ``manifest.json``: every model built
        is a materialization, every test an asset check evaluation. Returns the marts refreshed
        (``schema.name`` of the models under ``models/marts/`` that succeeded)."""
        results = _load(target / "run_results.json")
        manifest = _load(target / "manifest.json")
        if results is None or manifest is None:
            return []
        nodes = manifest.get("nodes", {})
        marts = []
        for result in results.get("results", []):
            node = nodes.get(result.get("unique_id"))
            if node is None:
                continue
            status = result.get("status")
            if node["resource_type"] in ("model", "seed", "snapshot") and status == "success":
                self._report(
                    dg.AssetMaterialization(
                        asset_key=dg.AssetKey([node["schema"], node["name"]]),
                        metadata={
                            "execution_seconds": round(float(result.get("execution_time") or 0), 3),
                            "dagster/row_count": _rows(result),
                            RUNNER_TAG: self.recorded_by,
                        },
                    )
                )
                if len(node.get("fqn", [])) > 2 and node["fqn"][1] == "marts":
                    marts.append(f"{node['schema']}.{node['name']}")
            elif node["resource_type"] == "test" and (model := _tested_model(node, nodes)) is not None:
                failures = int(result.get("failures") or 0)
                self._report(
                    dg.AssetCheckEvaluation(
                        asset_key=dg.AssetKey([model["schema"], model["name"]]),
                        check_name=node["name"],
                        passed=status == "pass",
                        severity=dg.AssetCheckSeverity.WARN if status == "warn" else dg.AssetCheckSeverity.ERROR,
                        metadata={"status": str(status), "failures": failures, RUNNER_TAG: self.recorded_by},
                    )
                )
        return marts


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _rows(result: dict[str, Any]) -> int:
    value = (result.get("adapter_response") or {}).get("rows_affected")
    return int(value) if isinstance(value, int) else 0


def _tested_model(test: dict[str, Any], nodes: dict[str, Any]) -> dict[str, Any] | None:
    """The model a dbt test belongs to (dagster-dbt attaches a test's check to it)."""
    attached = test.get("attached_node")
    candidates = [attached] if attached else [n for n in test.get("depends_on", {}).get("nodes", [])]
    for unique_id in candidates:
        node = nodes.get(unique_id)
        if node is not None and node["resource_type"] in ("model", "seed", "snapshot"):
            return node
    return None
