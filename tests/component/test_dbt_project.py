"""The dbt project itself: it parses, builds on an empty lake (every Delta table created, no
commit of data yet), documents every model and every column it really produces, keeps source()
in staging, and passes sqlfluff."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.build import DBT_PROJECT_DIR, build, run_dbt
from pipelines.settings import Settings
from pipelines.warehouse import building
from tests.component.dbt_lake import empty_lake

REPO = DBT_PROJECT_DIR.parent
MARTS = {
    "pricing": {"price_bands"},
    "rankings": {"tradesperson_rankings"},
    "finance": {"payment_reconciliation", "reconciliation_summary"},
    "audit": {"ingestion_completeness", "quarantine", "lifecycle_violations"},
    "ops": {
        "job_status",
        "job_timeline",
        "truck_positions",
        "customer_notification_changes",
        "reconciliation_break_changes",
        "ranking_changes",
    },
}


@pytest.fixture(scope="module")
def documented(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """(manifest, catalog) of the project built on an empty lake and documented."""
    settings = empty_lake(tmp_path_factory.mktemp("dbt") / "lake")
    build(settings)
    with building(settings):  # docs generate opens the warehouse: a build's attempt, like any dbt command
        run_dbt(settings, "docs generate")
    target = settings.home / "dbt" / "target"
    return json.loads((target / "manifest.json").read_text()), json.loads((target / "catalog.json").read_text())


def models(manifest: dict) -> dict[str, dict]:
    return {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["package_name"] == "tradelake"
    }


def test_dbt_parse_writes_no_file_into_the_repository(tmp_path: Path):
    before = sorted(p.relative_to(DBT_PROJECT_DIR) for p in DBT_PROJECT_DIR.rglob("*"))
    settings = Settings.load(env={}, home=str(tmp_path / "lake"))
    run_dbt(settings, "parse")
    assert (settings.home / "dbt" / "target" / "manifest.json").exists()
    assert sorted(p.relative_to(DBT_PROJECT_DIR) for p in DBT_PROJECT_DIR.rglob("*")) == before


def test_every_model_and_declared_column_is_described(documented):
    manifest, _ = documented
    for uid, node in models(manifest).items():
        assert node["description"].strip(), f"{uid} has no description"
        assert node["columns"], f"{uid} documents no column"
        for name, column in node["columns"].items():
            assert column["description"].strip(), f"{uid}.{name} has no description"
    for uid, source in manifest["sources"].items():
        assert source["description"].strip(), f"{uid} has no description"


def test_documented_columns_are_exactly_the_columns_built(documented):
    """The catalog (what the warehouse really holds) and the docs name the same columns."""
    manifest, catalog = documented
    for uid, node in models(manifest).items():
        built = {c.lower() for c in catalog["nodes"][uid]["columns"]}
        assert set(node["columns"]) == built, uid


def test_marts_have_the_contract_names(documented):
    manifest, catalog = documented
    relations = {(n["schema"], n["name"]) for n in models(manifest).values()}
    assert {(schema, name) for schema, names in MARTS.items() for name in names} <= relations
    assert {("dimensions", "dim_customers"), ("dimensions", "dim_tradespeople")} <= relations
    assert {catalog["nodes"][uid]["metadata"]["schema"] for uid in models(manifest)} >= set(MARTS)


def test_source_is_only_used_by_staging_one_model_per_source(documented):
    manifest, _ = documented
    used: dict[str, list[str]] = {}
    for node in models(manifest).values():
        sources = [d for d in node["depends_on"]["nodes"] if d.startswith("source.")]
        folder = Path(node["original_file_path"]).parts[1]
        assert bool(sources) == (folder == "staging"), node["name"]
        for source in sources:
            used.setdefault(source, []).append(node["name"])
    assert set(used) == set(manifest["sources"])
    assert all(len(names) == 1 for names in used.values()), used


def test_the_big_staging_models_are_incremental_on_event_id(documented):
    manifest, _ = documented
    by_name = {n["name"]: n for n in models(manifest).values()}
    for name in ("stg_fleet__gps", "stg_payments__ledger"):
        config = by_name[name]["config"]
        assert (config["materialized"], config["unique_key"]) == ("incremental", "event_id")


def test_unit_tests_cover_the_stated_rules(documented):
    manifest, _ = documented
    tested = {n["model"] for n in manifest["unit_tests"].values()}
    assert tested >= {
        "payment_reconciliation",
        "int_tradespeople_rated",
        "int_appointments_summarised",
        "stg_marketplace__bids",
        "job_status",
        "job_timeline",
        "truck_positions",
        "ranking_changes",
    }


def test_sqlfluff_lint_passes():
    result = subprocess.run(
        [sys.executable, "-m", "sqlfluff", "lint", "dbt/models", "--nofail", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    violations = [
        f"{f['filepath']}:{v['start_line_no']} {v['code']} {v['description']}"
        for f in json.loads(result.stdout)
        for v in f["violations"]
    ]
    assert not violations, "\n".join(violations)
