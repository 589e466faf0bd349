"""The personal-data scan of the adversarial e2e test finds what it looks for, in each format
where a byte scan alone would miss it: a clean scan must mean clean, never "not looked at"."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from tests.pii_scan import scan, scan_text, variants

PLANTED = ("Zelda Quartermain", "zelda.quartermain@example.org", "+44 20 7946 0958")


def test_variants_cover_case_spacing_and_digits():
    found = variants(PLANTED)
    assert {"zelda quartermain", "quartermain", "zelda.quartermain", "+442079460958", "442079460958"} <= set(found)
    assert scan_text("Call ZELDA.QUARTERMAIN@EXAMPLE.ORG", PLANTED)
    assert scan_text(b"tel:442079460958", PLANTED)
    assert not scan_text("nothing personal here: 2026-11-23, gw_e6e5fd29f054", PLANTED)


def test_each_format_is_decoded(tmp_path: Path):
    # Parquet: a binary column in compressed pages
    pq.write_table(
        pa.table({"raw": pa.array([b"x" * 100 + b"Zelda Quartermain" * 50], pa.binary())}),
        tmp_path / "part-0.parquet",
        compression="zstd",
    )
    # DuckDB: strings compressed in its own file
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema finance")
        con.execute("create table finance.t as select 'call +44 20 7946 0958 ' || range::varchar as s from range(5000)")
        con.execute("checkpoint")
    # SQLite, as Dagster's storage
    with sqlite3.connect(tmp_path / "runs.db") as con:
        con.execute("create table event_logs (event text)")
        con.execute('insert into event_logs values (\'{"email": "zelda.quartermain@example.org"}\')')
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "dbt.log").write_text("failed row: Quartermain\n")

    where = {(f.path.name, f.where.split()[0]) for f in scan(tmp_path, PLANTED)}
    assert {
        ("part-0.parquet", "parquet"),
        ("warehouse.duckdb", "duckdb"),
        ("runs.db", "sqlite"),
        ("dbt.log", "bytes"),
    } <= where
    assert ("warehouse.duckdb", "bytes") not in where, "DuckDB compresses strings: only reading tables finds them"
