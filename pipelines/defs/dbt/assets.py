"""The dbt models as assets (``@dbt_assets``), dbt tests as their asset checks, run by ``dbt build``.

``dbt build`` (models, tests, unit tests, in DAG order) is streamed through Dagster, so each dbt
test reports as an asset check of its model. As ``tradelake build``, it writes a copy of the
warehouse published when dbt succeeds (``pipelines.warehouse.building``: one build at a time,
readers never blocked). Incremental models are rebuilt from scratch when asked
(``full_refresh`` config, the daily build) or when the lake was emptied and refilled since the
last build (``pipelines.build.lake_replaced``, shared with ``tradelake build``).

dbt's environment: dagster-dbt starts dbt with this process's environment, and
``DbtCliResource.cli`` takes no other (dagster-dbt 0.29; its maintainers declined an ``env``
argument, dagster-io/dagster#29656, pointing to a temporary ``os.environ`` instead). So the lake's
variables, ``pipelines.build.dbt_environment``, are in the environment Dagster is started with
(``pipelines.ui.ui_environment``: ``tradelake ui``, ``pipelines.materialize``), and a run whose
environment lacks or contradicts any of them for the ``tradelake`` resource's lake fails before
dbt starts, naming them, rather than have dbt build another warehouse.
"""

import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from pipelines.build import DBT_PROJECT_DIR, dbt_environment, dbt_executable, ensure_published_table, lake_replaced
from pipelines.defs.automation.freshness import mart_freshness_policy
from pipelines.defs.dbt.project import dbt_project
from pipelines.defs.dbt.translator import TradelakeDbtTranslator
from pipelines.defs.resources import TradelakeResource
from pipelines.errors import TradelakeError
from pipelines.settings import Settings
from pipelines.warehouse import building

DBT_OP_NAME = "dbt_models"
PARTIAL_PARSE = "partial_parse.msgpack"


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild incremental models from scratch (``dbt build --full-refresh``)."""


def missing_dbt_environment(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """The variables of ``dbt_environment(settings)`` that ``env`` (default: this process's
    environment) lacks or sets otherwise; names only, some are credentials."""
    env = os.environ if env is None else env
    return sorted(name for name, value in dbt_environment(settings).items() if env.get(name) != value)


def _seed_partial_parse(runs: Path, target: Path) -> None:
    """Start a run from this lake's last parse state: dbt's partial parsing is only valid for the
    profile it was made with, and the profile holds the lake's path (the manifest prepared at
    load time may come from another one); without it every micro-batch would re-parse fully."""
    target.mkdir(parents=True, exist_ok=True)
    if (runs / PARTIAL_PARSE).exists():
        shutil.copyfile(runs / PARTIAL_PARSE, target / PARTIAL_PARSE)


def _keep_partial_parse(target: Path, runs: Path) -> None:
    if (target / PARTIAL_PARSE).exists():
        tmp = runs / f".{PARTIAL_PARSE}.{uuid.uuid4().hex[:6]}"
        shutil.copyfile(target / PARTIAL_PARSE, tmp)
        tmp.replace(runs / PARTIAL_PARSE)


def build_dbt_assets(project: DbtProject, mart_freshness: dg.FreshnessPolicy) -> dg.AssetsDefinition:
    # Read here rather than passed as a path: dagster-dbt caches manifests by path for the life
    # of the process, which would hide a re-parsed project from a long-lived process.
    manifest = json.loads(project.manifest_path.read_text())

    @dbt_assets(
        manifest=manifest,
        project=project,
        name=DBT_OP_NAME,
        dagster_dbt_translator=TradelakeDbtTranslator(
            settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True),
            mart_freshness=mart_freshness,
        ),
    )
    def dbt_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, tradelake: TradelakeResource, config: DbtBuildConfig
    ) -> Iterator[Any]:
        settings = tradelake.settings()
        missing = missing_dbt_environment(settings)
        if missing:
            raise TradelakeError(
                f"dbt would not build {settings.home}: this run's environment, which dbt inherits, lacks or sets "
                f"otherwise {', '.join(missing)}; start Dagster with 'tradelake ui', which sets them"
            )
        full_refresh = config.full_refresh
        runs = settings.home / "dagster" / "dbt"
        target = runs / f"{context.run.run_id[:8]}-{uuid.uuid4().hex[:6]}"
        _seed_partial_parse(runs, target)
        ensure_published_table(settings)
        with building(settings) as warehouse:  # published once dbt's stream ends without an error
            if not full_refresh and lake_replaced(settings, warehouse):
                context.log.info("the lake was refilled since the last build: rebuilding incremental models")
                full_refresh = True
            args = ["build", *(["--full-refresh"] if full_refresh else [])]
            yield from dbt.cli(args, context=context, target_path=target).stream()
        _keep_partial_parse(target, runs)
        # Artifacts of a failed build are kept (the error names them); a good one leaves nothing.
        shutil.rmtree(target, ignore_errors=True)

    return dbt_models


def dbt_definitions(
    project_dir: Path = DBT_PROJECT_DIR, mart_freshness: dg.FreshnessPolicy | None = None
) -> dg.Definitions:
    """The dbt assets of the project in ``project_dir`` and the ``dbt`` resource that runs them;
    ``mart_freshness`` default: ``TRADELAKE_MART_FRESHNESS_MINUTES`` (``mart_freshness_policy``)."""
    project = dbt_project(project_dir)
    return dg.Definitions(
        assets=[build_dbt_assets(project, mart_freshness or mart_freshness_policy())],
        resources={"dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable())},
    )


@dg.definitions
def defs() -> dg.Definitions:
    return dbt_definitions()
