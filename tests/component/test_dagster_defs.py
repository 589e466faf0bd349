"""The Dagster definitions without a broker: the project layout, graph shape, groups, checks,
automation, freshness, dbt discovery."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest

from pipelines import ui
from pipelines.build import DBT_PROJECT_DIR, dbt_environment
from pipelines.catalog import TOPIC_NAMES
from pipelines.definitions import defs as code_location
from pipelines.defs.automation.freshness import FRESHNESS_VARIABLE, mart_freshness_policy
from pipelines.defs.automation.jobs import FULL_BUILD_JOB, MICRO_BATCH_JOB
from pipelines.defs.automation.sensors import DEFAULT_SENSOR_INTERVAL, INTERVAL_VARIABLE, LAG_SENSOR
from pipelines.defs.contracts.checks import CHECK_NAME, STRUCTURAL, evaluate_contract, wilson_lower_bound
from pipelines.defs.dbt.assets import DBT_OP_NAME, dbt_definitions, missing_dbt_environment
from pipelines.defs.dbt.translator import LAYER_TAG, MART_LAYER, TradelakeDbtTranslator
from pipelines.defs.landing.assets import BATCHES_KEY, LANDING_GROUP, QUARANTINE_KEY, topic_key
from pipelines.defs.maintenance.assets import MAINTENANCE_GROUP, MAINTENANCE_KEY
from pipelines.defs.operations.assets import PUBLISH_KEY
from pipelines.defs.resources import defs as shared_resources
from pipelines.errors import TradelakeError
from pipelines.settings import Settings

REPO = Path(__file__).resolve().parents[2]
DBT_GROUPS = {"staging", "intermediate", "dimensions", "pricing", "rankings", "finance", "audit", "operations"}
MART_GROUPS = {"pricing", "rankings", "finance", "audit", "operations"}
DOMAINS = {"landing", "contracts", "dbt", "automation", "maintenance", "operations"}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return code_location()


@pytest.fixture(scope="module")
def graph(defs: dg.Definitions):
    return defs.resolve_asset_graph()


def _without_lake_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("TRADELAKE_", "KAFKA_", "DAGSTER_"))}


def test_importing_the_code_location_and_every_defs_module_reads_no_environment():
    code = """
import importlib, os, pkgutil
read = []

class Watched(dict):
    def __getitem__(self, k):
        read.append(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        read.append(k)
        return super().get(k, default)

    def __contains__(self, k):
        read.append(k)
        return super().__contains__(k)

os.environ = Watched(os.environ)
import pipelines.definitions as d
import pipelines.defs
modules = [m.name for m in pkgutil.walk_packages(pipelines.defs.__path__, "pipelines.defs.")]
for name in modules:
    importlib.import_module(name)
ours = sorted({k for k in read if k.startswith(("TRADELAKE_", "KAFKA_"))})
assert not ours, ours
assert not any(k.startswith(("TRADELAKE_", "KAFKA_")) for k in os.environ)
print(type(d.defs).__name__, len(modules))
"""
    env = _without_lake_environment()
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    kind, modules = done.stdout.split()
    assert kind == "LazyDefinitions"  # built when Dagster loads the location
    assert int(modules) >= 15


def test_the_definitions_are_the_defs_folder_one_folder_per_domain(defs):
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["dg"]
    assert project["directory_type"] == "project"
    assert project["project"]["root_module"] == "pipelines"
    assert project["project"]["defs_module"] == "pipelines.defs"
    assert project["project"]["code_location_target_module"] == ui.CODE_LOCATION == "pipelines.definitions"
    assert project["project"]["code_location_name"] == ui.LOCATION_NAME
    folder = REPO / "pipelines" / "defs"
    assert {p.name for p in folder.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == DOMAINS
    folder_of = {
        topic_key(TOPIC_NAMES[0]): "landing",
        dg.AssetKey(["pricing", "price_bands"]): "dbt",
        MAINTENANCE_KEY: "maintenance",
        PUBLISH_KEY: "operations",
    }
    for key, domain in folder_of.items():
        module = defs.resolve_assets_def(key).op.compute_fn.decorated_fn.__module__
        assert module.startswith(f"pipelines.defs.{domain}."), (key, module)


def test_dagster_and_dg_find_the_code_location_from_the_repository_root():
    env = _without_lake_environment() | {
        "VIRTUAL_ENV": sys.prefix,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    validate = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validate.returncode == 0, validate.stdout[-3000:] + validate.stderr[-3000:]
    assert f"Validation successful for code location {ui.LOCATION_NAME}" in validate.stdout + validate.stderr
    listed = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "list", "defs", "--json"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stdout[-3000:] + listed.stderr[-3000:]
    found = json.loads(listed.stdout)
    assert {a["group_name"] for a in found["assets"]} == {LANDING_GROUP, MAINTENANCE_GROUP} | DBT_GROUPS
    assert {j["name"] for j in found["jobs"]} >= {MICRO_BATCH_JOB, FULL_BUILD_JOB}
    assert [s["name"] for s in found["sensors"]] == [LAG_SENSOR]
    assert {s["name"] for s in found["schedules"]} == {"daily_full_build", "maintenance_schedule"}
    assert {r["name"] for r in found["resources"]} == {"tradelake", "contract_policy", "dbt"}


def test_the_code_location_loads_without_any_lake_configured(monkeypatch):
    for name in ("TRADELAKE_HOME", "KAFKA_BOOTSTRAP_SERVERS", "TRADELAKE_KAFKA_CONFIG", INTERVAL_VARIABLE):
        monkeypatch.delenv(name, raising=False)
    loaded = code_location()
    dg.Definitions.validate_loadable(loaded)
    assert loaded.resources["tradelake"].home == dg.EnvVar("TRADELAKE_HOME")


def test_every_topic_is_a_landing_asset_with_a_blocking_contract_check(defs, graph):
    landing = defs.resolve_assets_def(topic_key(TOPIC_NAMES[0]))
    assert landing.can_subset
    assert set(landing.keys) == {topic_key(t) for t in TOPIC_NAMES} | {BATCHES_KEY, QUARANTINE_KEY}
    for topic in TOPIC_NAMES:
        node = graph.get(topic_key(topic))
        assert node.group_name == LANDING_GROUP
        spec = graph.get_check_spec(dg.AssetCheckKey(topic_key(topic), CHECK_NAME))
        assert spec.blocking


def test_dbt_models_are_grouped_by_folder_and_sources_are_the_landing_assets(defs, graph):
    dbt_assets = defs.resolve_assets_def(dg.AssetKey(["pricing", "price_bands"]))
    groups = {graph.get(k).group_name for k in dbt_assets.keys}
    assert groups >= DBT_GROUPS
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text())
    for node in manifest["nodes"].values():
        if node["resource_type"] != "model":
            continue
        key = dg.AssetKey([node["schema"], node["name"]])
        folder = Path(node["original_file_path"]).parent.name
        assert graph.get(key).group_name == folder, node["original_file_path"]
    # topic → staging → marts: every topic feeds a staging model, every mart reads from landing.
    for topic in TOPIC_NAMES:
        children = graph.get(topic_key(topic)).child_keys
        assert any(graph.get(c).group_name == "staging" for c in children), topic
    for key in dbt_assets.keys:
        if graph.get(key).group_name in MART_GROUPS:
            upstream = graph.upstream_key_iterator(key)
            assert any(graph.get(k).group_name == LANDING_GROUP for k in upstream), key


def test_dbt_tests_are_asset_checks_and_marts_have_a_freshness_policy(defs, graph):
    dbt_assets = defs.resolve_assets_def(dg.AssetKey(["pricing", "price_bands"]))
    assert dbt_assets.op.name == DBT_OP_NAME
    dbt_checks = [k for k in graph.asset_check_keys if k.name != CHECK_NAME]
    assert len(dbt_checks) > 50
    default = dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=15), warn_window=timedelta(minutes=5))
    for key in dbt_assets.keys:
        node = graph.get(key)
        is_mart = node.group_name in MART_GROUPS
        assert (node.tags.get(LAYER_TAG) == MART_LAYER) == is_mart, key
        assert node.freshness_policy == (default if is_mart else None), key


def test_the_mart_freshness_slo_comes_from_the_environment_at_load_time(monkeypatch):
    monkeypatch.setenv(FRESHNESS_VARIABLE, "2,10")
    loaded = code_location().resolve_asset_graph()
    policy = loaded.get(dg.AssetKey(["finance", "payment_reconciliation"])).freshness_policy
    assert policy == dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=10), warn_window=timedelta(minutes=2))
    assert loaded.get(dg.AssetKey(["staging", "stg_fleet__gps"])).freshness_policy is None
    only_fail = mart_freshness_policy({FRESHNESS_VARIABLE: "30"})
    assert only_fail == dg.FreshnessPolicy.time_window(fail_window=timedelta(minutes=30))
    for wrong in ("15,5", "0.5", "5,5", "soon", "1,2,3"):
        with pytest.raises(TradelakeError, match=f"^{FRESHNESS_VARIABLE}='{wrong}': expected minutes as WARN,FAIL"):
            mart_freshness_policy({FRESHNESS_VARIABLE: wrong})


def test_the_dbt_step_runs_only_with_dbt_s_environment_for_the_lake(tmp_path: Path):
    settings = Settings.load(env={}, home=str(tmp_path / "lake"))
    assert missing_dbt_environment(settings, ui.ui_environment(settings)) == [], "tradelake ui hands dbt the lake"
    assert missing_dbt_environment(settings, dbt_environment(settings)) == []
    other = Settings.load(env={}, home=str(tmp_path / "other"))
    assert "TRADELAKE_HOME" in missing_dbt_environment(settings, ui.ui_environment(other))
    partial = {k: v for k, v in dbt_environment(settings).items() if k != "TRADELAKE_WAREHOUSE"}
    assert missing_dbt_environment(settings, partial) == ["TRADELAKE_WAREHOUSE"]


def test_the_translator_rule_covers_any_folder():
    t = TradelakeDbtTranslator()
    model = {"resource_type": "model", "name": "m", "schema": "ops", "fqn": ["tradelake", "marts", "ops", "m"]}
    assert t.get_asset_key(model) == dg.AssetKey(["ops", "m"])
    assert t.get_group_name(model) == "ops"
    assert t.get_group_name({**model, "fqn": ["tradelake", "m"]}) == "dbt"
    source = {"resource_type": "source", "source_name": "fleet", "name": "gps", "meta": {"topic": "fleet.gps"}}
    assert t.get_asset_key(source) == topic_key("fleet.gps")
    lake = {"resource_type": "source", "source_name": "lake", "name": "batches", "meta": {}}
    assert t.get_asset_key(lake) == BATCHES_KEY


def _copy_dbt_project(to: Path) -> Path:
    shutil.copytree(DBT_PROJECT_DIR, to, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages", ".user.yml"))
    return to


def _dbt_graph(project: Path):
    """The dbt domain of another dbt project, with the resources its assets need."""
    return dg.Definitions.merge(dbt_definitions(project), shared_resources()).resolve_asset_graph()


def test_a_model_file_added_under_models_appears_with_no_python_change(tmp_path: Path):
    project = _copy_dbt_project(tmp_path / "dbt")
    before = _dbt_graph(project)
    manifest = project / "target" / "manifest.json"
    assert manifest.exists(), "manifest produced without a manual step"
    parsed_at = manifest.stat().st_mtime_ns
    dbt_definitions(project)
    assert manifest.stat().st_mtime_ns == parsed_at, "an unchanged project is not parsed again"
    new_key = dg.AssetKey(["finance", "zz_payouts_by_currency"])
    assert new_key not in before.get_all_asset_keys()

    (project / "models" / "marts" / "finance" / "zz_payouts_by_currency.sql").write_text(
        "select currency, sum(payout_cents) as payout_cents\n"
        "from {{ ref('payment_reconciliation') }}\ngroup by currency\n"
    )
    after = _dbt_graph(project)
    node = after.get(new_key)
    assert node.group_name == "finance"
    assert node.parent_keys == {dg.AssetKey(["finance", "payment_reconciliation"])}
    assert node.freshness_policy is not None, "a new mart is a mart: it gets the marts' freshness policy"


def test_automation_sensor_schedule_and_jobs(defs):
    sensor = defs.resolve_sensor_def(LAG_SENSOR)
    assert sensor.minimum_interval_seconds == DEFAULT_SENSOR_INTERVAL == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = defs.resolve_schedule_def("daily_full_build")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.job_name == FULL_BUILD_JOB
    assert defs.resolve_job_def(FULL_BUILD_JOB).run_config["ops"][DBT_OP_NAME] == {"config": {"full_refresh": True}}
    graph = defs.resolve_asset_graph()
    executable = {k for k in graph.get_all_asset_keys() if graph.get(k).is_executable}
    everything_but_maintenance = executable - {MAINTENANCE_KEY}
    assert set(defs.resolve_job_def(MICRO_BATCH_JOB).asset_layer.executable_asset_keys) == everything_but_maintenance
    assert set(defs.resolve_job_def(FULL_BUILD_JOB).asset_layer.executable_asset_keys) == everything_but_maintenance


def test_the_sensor_interval_comes_from_the_environment_at_load_time(monkeypatch):
    monkeypatch.setenv(INTERVAL_VARIABLE, "7")
    assert code_location().resolve_sensor_def(LAG_SENSOR).minimum_interval_seconds == 7


def test_dagster_yaml_configures_a_small_local_instance(tmp_path: Path, monkeypatch):
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copyfile(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    try:
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 1
        assert instance.get_settings("telemetry") == {"enabled": False}
        assert Path(instance.root_directory) == home
    finally:
        instance.dispose()
    assert list(home.iterdir()), "storage under DAGSTER_HOME"


def _validation(batch: int, topic: str, judged: int, failures: dict[str, int], **extra) -> tuple[int, dict]:
    """A batch id and the topic's validation result of that batch, as ``_batches.validation`` holds it."""
    return batch, {
        "topic": topic,
        "landed": judged - max(failures.values(), default=0),
        "quarantined": max(failures.values(), default=0),
        "tombstones": 0,
        "suites": [
            {
                "suite": f"{topic}__x.v1",
                "statistics": {"evaluated_rows": judged},
                "results": [
                    {"rule": rule, "unexpected_count": n, "severity": extra.get("severity", "critical")}
                    for rule, n in failures.items()
                ],
            }
        ],
        "no_contract": extra.get("no_contract", {}),
    }


def test_contract_evaluation_sums_batches_and_applies_mostly():
    docs = [_validation(1, "t", 100, {"a": 3, "b": 0}), _validation(2, "t", 100, {"a": 4, "b": 0})]
    passed = evaluate_contract("t", docs, {}, default_mostly=0.95)
    assert passed.passed and passed.batches == [1, 2] and passed.records == 200
    failed = evaluate_contract("t", docs, {}, default_mostly=0.97)  # 7/200 = 3.5% > 3%
    assert not failed.passed and failed.severity == dg.AssetCheckSeverity.ERROR
    assert [r.rule for r in failed.failing] == ["a"]
    declared = evaluate_contract("t", docs, {("t__x.v1", "a"): 0.9}, default_mostly=0.999)
    assert declared.passed, "a rule's own mostly wins over the default"


def test_contract_evaluation_warnings_and_structural_failures():
    warn = evaluate_contract("t", [_validation(1, "t", 10, {"w": 5}, severity="warning")], {}, 0.95)
    assert not warn.passed and warn.severity == dg.AssetCheckSeverity.WARN
    structural = evaluate_contract("t", [_validation(1, "t", 10, {}, no_contract={"value is valid JSON": 3})], {}, 0.95)
    assert not structural.passed and structural.failing[0].suite == STRUCTURAL
    nothing = evaluate_contract("t", [], {}, 0.95)
    assert nothing.passed and nothing.batches == [] and "nothing to judge" in nothing.describe()


def test_contract_rules_fail_on_evidence_not_on_one_record_of_a_rare_event_type():
    one_of_eleven = [_validation(1, "t", 11, {"a": 1})]
    assert not evaluate_contract("t", one_of_eleven, {}, 0.95).passed, "the plain share: 9% > 5%"
    assert evaluate_contract("t", one_of_eleven, {}, 0.95, confidence=0.95).passed
    most = [_validation(1, "t", 400, {"a": 300})]
    assert not evaluate_contract("t", most, {}, 0.95, confidence=0.95).passed
    assert wilson_lower_bound(1, 11, 0.95) < 0.05 < wilson_lower_bound(4, 5, 0.95)
    assert wilson_lower_bound(50, 1000, 0.0) == 0.05
    assert wilson_lower_bound(0, 0, 0.95) == 0.0
