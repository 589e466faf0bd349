"""docs/grafana-dashboard.json charts what pipelines/metrics.py exports: every query names metrics
and labels the module has (a renamed metric or label fails here), every exported metric is
charted, and the dashboard is an importable Grafana 10+ one on a ``${DS_PROMETHEUS}`` datasource."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from pipelines.metrics import RunMetrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
METRIC = re.compile(r"\btradelake_\w+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHERS = re.compile(r"\{([^}]*)\}")
LEGEND = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every sample name a runner exports -> its label names (one of each reported)."""
    metrics = RunMetrics(topics=["marketplace.jobs"])
    metrics.batch_committed({"marketplace.jobs": {"records": 1, "landed": 1}}, seconds=0.01)
    metrics.set_lag({("marketplace.jobs", 0): 1})
    metrics.build_finished(1.0, ok=True, marts=["pricing.price_bands"])
    names: dict[str, set[str]] = {}
    for family in metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                names.setdefault(sample.name, set()).update(sample.labels)
    return names


def panels(dashboard: dict) -> list[dict]:
    return [p for p in dashboard["panels"] if p["type"] != "row"]


def queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable."""
    out = [(p["title"], t["expr"]) for p in panels(dashboard) for t in p["targets"]]
    out += [(f"${v['name']}", v["query"]["query"]) for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return out


def test_every_query_uses_metrics_and_labels_the_module_exports(dashboard: dict, exported: dict) -> None:
    for where, expr in queries(dashboard):
        used = METRIC.findall(expr)
        assert used, f"{where}: {expr} charts no tradelake metric"
        unknown = [m for m in used if m not in exported]
        assert not unknown, f"{where}: {unknown} not exported by pipelines.metrics"
        labels = set().union(*(exported[m] for m in used))
        named = {
            label.strip()
            for group in GROUPING.findall(expr) + re.findall(r"label_values\(\w+,\s*(\w+)\)", expr)
            for label in group.split(",")
            if label.strip()
        }
        named |= {m.split("=")[0].strip(" !~") for group in MATCHERS.findall(expr) for m in group.split(",") if m}
        assert named <= labels, f"{where}: labels {sorted(named - labels)} not on {used}"
    for p in panels(dashboard):
        for t in p["targets"]:
            legend = set(LEGEND.findall(t["legendFormat"]))
            grouped = {label.strip() for group in GROUPING.findall(t["expr"]) for label in group.split(",")}
            assert legend <= grouped, f"{p['title']}: legend {legend} beyond the query's labels {grouped}"


def test_every_exported_metric_is_charted(dashboard: dict, exported: dict) -> None:
    charted = {m for _, expr in queries(dashboard) for m in METRIC.findall(expr)}
    families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in exported}
    uncharted = {f for f in families if not any(re.sub(r"_(total|bucket|sum|count)$", "", m) == f for m in charted)}
    assert not uncharted


def test_the_issue_panels_are_there(dashboard: dict) -> None:
    exprs = {p["title"]: " ".join(t["expr"] for t in p["targets"]) for p in panels(dashboard)}
    assert "tradelake_lag_records" in exprs["Lag by topic"]
    assert "rate(tradelake_records_total" in exprs["Records/s by outcome"]
    assert "histogram_quantile(0.5" in exprs["Batch commit latency"]
    assert "histogram_quantile(0.95" in exprs["Batch commit latency"]
    assert "time() - max(tradelake_last_commit_timestamp_seconds)" in exprs["Seconds since last commit"]
    assert "tradelake_dbt_build_seconds" in exprs["dbt build duration"]
    assert "time() - max(tradelake_dbt_last_success_timestamp_seconds)" in exprs["Since last successful build"]
    assert "tradelake_mart_age_seconds" in exprs["Mart age"]


def test_an_importable_grafana_10_dashboard_on_the_prometheus_variable(dashboard: dict) -> None:
    assert dashboard["schemaVersion"] >= 38  # Grafana 10.0
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "DS_PROMETHEUS")
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for p in dashboard["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"{p['title']} overlaps another panel"
        cells |= mine
    for p in panels(dashboard):
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"] and all(t["datasource"] == DATASOURCE for t in p["targets"]), p["title"]
        for t in p["targets"]:
            assert t["expr"].count("(") == t["expr"].count(")"), t["expr"]
