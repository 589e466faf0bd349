"""The Dagster definitions without a broker: graph shape, groups, checks, automation, dbt discovery."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from pipelines.catalog import TOPIC_NAMES
from pipelines.definitions import build_definitions
from pipelines.defs.automation import DEFAULT_SENSOR_INTERVAL, FULL_BUILD_JOB, LAG_SENSOR, MICRO_BATCH_JOB
from pipelines.defs.contracts import CHECK_NAME, STRUCTURAL, evaluate_contract, wilson_lower_bound
from pipelines.defs.dbt import DBT_OP_NAME, DBT_PROJECT_DIR, LAYER_TAG, MART_LAYER, TradelakeDbtTranslator
from pipelines.defs.landing import BATCHES_KEY, LANDING_GROUP, QUARANTINE_KEY, topic_key
from pipelines.defs.maintenance import MAINTENANCE_KEY

REPO = Path(__file__).resolve().parents[2]
DBT_GROUPS = {"staging", "dimensions", "pricing", "rankings", "finance", "audit"}
MART_GROUPS = {"pricing", "rankings", "finance", "audit"}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions()


@pytest.fixture(scope="module")
def graph(defs: dg.Definitions):
    return defs.resolve_asset_graph()


def test_importing_the_code_location_reads_no_environment():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELAKE_", "KAFKA_", "DAGSTER_"))}
    code = (
        "import os, pipelines.definitions as d\n"
        "assert not any(k.startswith(('TRADELAKE_', 'KAFKA_')) for k in os.environ)\n"
        "print(type(d.defs).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "LazyDefinitions"  # built when Dagster loads the location


def test_the_code_location_loads_without_any_lake_configured(monkeypatch):
    for name in ("TRADELAKE_HOME", "KAFKA_BOOTSTRAP_SERVERS", "TRADELAKE_KAFKA_CONFIG", "TRADELAKE_SENSOR_INTERVAL"):
        monkeypatch.delenv(name, raising=False)
    module = importlib.import_module("pipelines.definitions")
    loaded = module.defs()
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
    for key in dbt_assets.keys:
        node = graph.get(key)
        is_mart = node.group_name in MART_GROUPS
        assert (node.tags.get(LAYER_TAG) == MART_LAYER) == is_mart, key
        assert (node.freshness_policy is not None) == is_mart, key


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


def test_a_model_file_added_under_models_appears_with_no_python_change(tmp_path: Path):
    project = _copy_dbt_project(tmp_path / "dbt")
    before = build_definitions(dbt_project_dir=project).resolve_asset_graph()
    manifest = project / "target" / "manifest.json"
    assert manifest.exists(), "manifest produced without a manual step"
    parsed_at = manifest.stat().st_mtime_ns
    build_definitions(dbt_project_dir=project)
    assert manifest.stat().st_mtime_ns == parsed_at, "an unchanged project is not parsed again"
    new_key = dg.AssetKey(["finance", "zz_payouts_by_currency"])
    assert new_key not in before.get_all_asset_keys()

    (project / "models" / "marts" / "finance" / "zz_payouts_by_currency.sql").write_text(
        "select currency, sum(payout_cents) as payout_cents\n"
        "from {{ ref('payment_reconciliation') }}\ngroup by currency\n"
    )
    after = build_definitions(dbt_project_dir=project).resolve_asset_graph()
    node = after.get(new_key)
    assert node.group_name == "finance"
    assert node.parent_keys == {dg.AssetKey(["finance", "payment_reconciliation"])}
    assert node.freshness_policy is not None, "a new mart is a mart: it gets the marts' freshness policy"


def test_automation_sensor_schedule_and_jobs(defs):
    sensor = defs.resolve_sensor_def(LAG_SENSOR)
    assert sensor.minimum_interval_seconds == DEFAULT_SENSOR_INTERVAL == 30
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert build_definitions(sensor_interval_seconds=5).resolve_sensor_def(LAG_SENSOR).minimum_interval_seconds == 5
    schedule = defs.resolve_schedule_def("daily_full_build")
    assert schedule.cron_schedule == "0 3 * * *" and schedule.job_name == FULL_BUILD_JOB
    assert defs.resolve_job_def(FULL_BUILD_JOB).run_config["ops"][DBT_OP_NAME] == {"config": {"full_refresh": True}}
    everything_but_maintenance = set(defs.resolve_asset_graph().get_all_asset_keys()) - {MAINTENANCE_KEY}
    assert set(defs.resolve_job_def(MICRO_BATCH_JOB).asset_layer.executable_asset_keys) == everything_but_maintenance
    assert set(defs.resolve_job_def(FULL_BUILD_JOB).asset_layer.executable_asset_keys) == everything_but_maintenance


def test_the_sensor_interval_comes_from_the_environment_at_load_time(monkeypatch):
    monkeypatch.setenv("TRADELAKE_SENSOR_INTERVAL", "7")
    loaded = importlib.import_module("pipelines.definitions").defs()
    assert loaded.resolve_sensor_def(LAG_SENSOR).minimum_interval_seconds == 7


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
