"""The dbt project (``dbt/``) as Dagster assets: models are assets, dbt tests are asset checks.

Asset keys are the relations themselves, ``<schema>/<model>`` (``staging/stg_fleet__gps``,
``pricing/price_bands`` …). One rule maps a model to its group: the folder the model file is
in (``models/staging`` → ``staging``, ``models/marts/finance`` → ``finance``), which the
project also uses as the relation's schema. dbt sources are the landing assets: a source
table whose ``meta.topic`` names a Kafka topic is ``landing/<topic>``, and the lake's own
tables (source ``lake``) are ``landing/batches`` and ``landing/quarantine``, so the global
graph reads topic → staging → dimensions/marts. A model file added under ``dbt/models/``
shows up with no Python change: the manifest is re-parsed whenever the project changed.

Manifest: ``prepare_manifest`` runs ``dbt parse`` when ``target/manifest.json`` is missing or
older than any file of the project (models, macros, tests, yml …), under a file lock. That
is done when the definitions are loaded (``dagster dev`` reloads, code servers, tests), so no
manual step is ever needed and a clean clone works; an unchanged project costs one
directory walk. ``DbtProject.prepare_if_dev`` was not used because it only acts under
``dagster dev`` and re-parses on every load.

Runs: ``dbt build`` (models, tests, unit tests, in DAG order) streamed through Dagster, so
each dbt test reports as an asset check of its model. dbt reads ``TRADELAKE_HOME`` from its
environment (profiles.yml, sources): the run passes the home of the ``tradelake`` resource.
Incremental models are rebuilt from scratch when asked (``full_refresh`` config, the daily
build) or when the lake was emptied and refilled since the last build
(``pipelines.build.lake_replaced``, shared with ``tradelake build``).
"""

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from pipelines.build import dbt_environment, lake_replaced, process_environment
from pipelines.defs.landing import BATCHES_KEY, QUARANTINE_KEY, topic_key
from pipelines.defs.resources import TradelakeResource
from pipelines.errors import TradelakeError

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt"
DBT_OP_NAME = "dbt_models"
LAYER_TAG = "tradelake/layer"
MART_LAYER = "mart"
DEFAULT_GROUP = "dbt"
# Marts must be rebuilt at least daily (the daily full build, plus slack); evaluated by
# Dagster's freshness daemon and shown on each mart.
MART_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=24))
# The lake's bookkeeping tables, declared in the dbt source named "lake".
LAKE_SOURCES = {"batches": BATCHES_KEY, "quarantine": QUARANTINE_KEY}
# Paths of a dbt project that are outputs, not sources, for the manifest's freshness.
_NOT_PROJECT_FILES = {"target", "logs", "dbt_packages"}


class TradelakeDbtTranslator(DagsterDbtTranslator):
    """Relations as keys, folders as groups, sources as the landing assets, fresh marts."""

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.tags.get(LAYER_TAG) == MART_LAYER:
            spec = dg.apply_freshness_policy(spec, MART_FRESHNESS)
        return spec

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            meta = {**(dbt_resource_props.get("config") or {}).get("meta", {}), **dbt_resource_props.get("meta", {})}
            if meta.get("topic"):
                return topic_key(str(meta["topic"]))
            if dbt_resource_props["source_name"] == "lake" and dbt_resource_props["name"] in LAKE_SOURCES:
                return LAKE_SOURCES[dbt_resource_props["name"]]
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return model_folder(dbt_resource_props)

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        fqn = dbt_resource_props.get("fqn", [])
        layer = MART_LAYER if len(fqn) > 2 and fqn[1] == "marts" else model_folder(dbt_resource_props)
        return {**super().get_tags(dbt_resource_props), LAYER_TAG: layer}


def model_folder(dbt_resource_props: Mapping[str, Any]) -> str:
    """The folder the model's file is in (fqn = [project, *folders, name]); root models: ``dbt``."""
    fqn = dbt_resource_props.get("fqn", [])
    return str(fqn[-2]) if len(fqn) > 2 else DEFAULT_GROUP


def _newest_project_mtime(project_dir: Path) -> float:
    newest = (project_dir / "dbt_project.yml").stat().st_mtime
    for root, dirs, files in os.walk(project_dir):
        here = Path(root)
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (here == project_dir and d in _NOT_PROJECT_FILES)]
        newest = max(newest, here.stat().st_mtime)  # a deleted or renamed file changes its folder
        for f in files:
            if not f.startswith("."):
                with contextlib.suppress(FileNotFoundError):
                    newest = max(newest, (here / f).stat().st_mtime)
    return newest


def manifest_is_current(project: DbtProject) -> bool:
    manifest = project.manifest_path
    return manifest.exists() and manifest.stat().st_mtime >= _newest_project_mtime(project.project_dir)


def _dbt_executable() -> str:
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


def prepare_manifest(project: DbtProject) -> Path:
    """``dbt parse`` into the project's target path unless the manifest is newer than the project."""
    if manifest_is_current(project):
        return project.manifest_path
    target = project.project_dir / project.target_path
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".dagster-parse.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be parsing the same project
        if not manifest_is_current(project):
            env = {
                **os.environ,
                # profiles.yml and the sources read it; parsing opens no file under it.
                "TRADELAKE_HOME": os.environ.get("TRADELAKE_HOME") or str(target / "parse-home"),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
            }
            done = subprocess.run(
                [
                    _dbt_executable(),
                    "parse",
                    "--quiet",
                    "--project-dir",
                    str(project.project_dir),
                    "--profiles-dir",
                    str(project.profiles_dir),
                    "--target-path",
                    str(target),
                    "--log-path",
                    str(target),
                ],
                cwd=project.project_dir,
                env=env,
                capture_output=True,
                text=True,
            )
            if done.returncode != 0 or not project.manifest_path.exists():
                output = (done.stdout + done.stderr).strip().splitlines()[-20:]
                raise TradelakeError(f"dbt parse failed in {project.project_dir}:\n" + "\n".join(output))
    return project.manifest_path


PARTIAL_PARSE = "partial_parse.msgpack"


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


class DbtBuildConfig(dg.Config):
    full_refresh: bool = False
    """Rebuild incremental models from scratch (``dbt build --full-refresh``)."""


def build_dbt_assets(project: DbtProject) -> dg.AssetsDefinition:
    # Read here rather than passed as a path: dagster-dbt caches manifests by path for the life
    # of the process, which would hide a re-parsed project from a long-lived process.
    manifest = json.loads(prepare_manifest(project).read_text())

    @dbt_assets(
        manifest=manifest,
        project=project,
        name=DBT_OP_NAME,
        dagster_dbt_translator=TradelakeDbtTranslator(
            settings=DagsterDbtTranslatorSettings(enable_asset_checks=True, enable_code_references=True)
        ),
    )
    def dbt_models(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, tradelake: TradelakeResource, config: DbtBuildConfig
    ) -> Iterator[Any]:
        settings = tradelake.settings()
        home = settings.home
        full_refresh = config.full_refresh
        if not full_refresh and lake_replaced(settings):
            context.log.info("the lake was emptied and refilled since the last build: rebuilding incremental models")
            full_refresh = True
        runs = home / "dagster" / "dbt"
        target = runs / f"{context.run.run_id[:8]}-{uuid.uuid4().hex[:6]}"
        _seed_partial_parse(runs, target)
        args = ["build", *(["--full-refresh"] if full_refresh else [])]
        with process_environment(dbt_environment(settings)):
            invocation = dbt.cli(args, context=context, target_path=target)
        yield from invocation.stream()
        _keep_partial_parse(target, runs)
        # Artifacts of a failed build are kept (the error names them); a good one leaves nothing.
        shutil.rmtree(target, ignore_errors=True)

    return dbt_models


def mart_keys(assets: dg.AssetsDefinition) -> list[dg.AssetKey]:
    """The marts (models under ``models/marts/``): the assets analysts and finance read."""
    return sorted(spec.key for spec in assets.specs if spec.tags.get(LAYER_TAG) == MART_LAYER)


def defs(project_dir: Path | None = None) -> dg.Definitions:
    project = DbtProject(project_dir=project_dir or DBT_PROJECT_DIR)
    return dg.Definitions(
        assets=[build_dbt_assets(project)],
        resources={"dbt": DbtCliResource(project_dir=project, dbt_executable=_dbt_executable())},
    )
