"""The analysts' and finance's notebooks run top to bottom against a Dagster-built warehouse;
``tradelake export`` takes a mart to CSV or Parquet."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from pathlib import Path

import duckdb
import nbformat
import papermill
import pytest

from pipelines.errors import TradelakeError
from pipelines.export import export
from pipelines.settings import Settings
from tests.e2e.test_dagster import BuiltLake, build_lake_through_dagster

pytestmark = pytest.mark.e2e

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
# What each notebook must conclude, printed by its own cells.
EXPECTED = {
    "pricing": "price bands, weeks",
    "rankings": "ranked (at least one completed job)",
    "reconciliation": "every total ties to the gateway",
    "audit": "every partition balanced: True",
    "operations": "each once: True",
}


@pytest.fixture(scope="session")
def warehouse_lake(tmp_path_factory: pytest.TempPathFactory) -> BuiltLake:
    # Same root as test_dagster.py's fixture: the lake is built once per session.
    built = build_lake_through_dagster(tmp_path_factory.getbasetemp() / "dagster-built-lake")
    assert built.success
    return built


def test_every_notebook_is_tested():
    assert {p.stem for p in NOTEBOOKS.glob("*.ipynb")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs_top_to_bottom(name: str, warehouse_lake: BuiltLake, tmp_path: Path):
    warehouse = warehouse_lake.home / "warehouse.duckdb"
    before = warehouse.stat().st_mtime_ns
    out = tmp_path / f"{name}.ipynb"
    papermill.execute_notebook(
        str(NOTEBOOKS / f"{name}.ipynb"),
        str(out),
        parameters={"warehouse": str(warehouse)},
        kernel_name="python3",
        cwd=str(NOTEBOOKS),
        progress_bar=False,
        log_output=False,
    )
    nb = nbformat.read(out, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert EXPECTED[name] in text, text
    if name == "pricing":
        assert _labelled_weeks(text) == _weeks_of_the_bands(warehouse), "one bar per week, each under its own Monday"
    images = [o["data"]["image/png"] for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 2, "plots where a person would rather look than read"
    for i, png in enumerate(images):  # kept beside the executed notebook for a look
        (tmp_path / f"{name}-{i}.png").write_bytes(base64.b64decode(png))
    assert warehouse.stat().st_mtime_ns == before, "notebooks open the warehouse read-only"


def _labelled_weeks(text: str) -> list[str]:
    """The x labels of the "Jobs posted per week" chart, as the notebook read them back from its axis."""
    found = re.search(r"^weeks labelled: (.*)$", text, re.MULTILINE)
    assert found, "the weekly chart prints its labels"
    return found.group(1).split(", ")


def _weeks_of_the_bands(warehouse: Path) -> list[str]:
    """Every Monday from the first week of pricing.price_bands to its last."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        weeks = [w for (w,) in con.sql("select distinct week_start from pricing.price_bands order by 1").fetchall()]
    assert weeks and all(w.weekday() == 0 for w in weeks), weeks
    span = (weeks[-1] - weeks[0]).days // 7 + 1
    return [(weeks[0] + timedelta(weeks=i)).isoformat() for i in range(span)]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_takes_a_mart_to_a_file(fmt: str, warehouse_lake: BuiltLake, tmp_path: Path):
    settings = Settings.load(env={}, home=str(warehouse_lake.home))
    done = export(settings, "finance.payment_reconciliation", fmt, tmp_path / f"recon.{fmt}")
    reader = "read_csv_auto" if fmt == "csv" else "read_parquet"
    rows, statuses = duckdb.sql(f"select count(*), count(distinct status) from {reader}('{done.path}')").fetchone()
    assert rows == done.rows > 0 and statuses >= 2
    # a staging view (exported only when asked) reads the lake's Delta tables when queried (delta_scan)
    view = export(
        settings, "staging.stg_gateway__settlements", fmt, tmp_path / f"settlements.{fmt}", include_staging=True
    )
    assert view.rows > 0
    with pytest.raises(TradelakeError, match=r"no relation finance\.nope"):
        export(settings, "finance.nope", fmt, tmp_path / "x")
    with pytest.raises(TradelakeError, match=r"schema\.table"):
        export(settings, "payment_reconciliation; drop", fmt, tmp_path / "x")
    with pytest.raises(TradelakeError, match="no warehouse"):
        export(Settings.load(env={}, home=str(tmp_path / "empty")), "finance.payment_reconciliation", fmt)
