"""Readers never block the pipeline, and the pipeline never breaks a reader: a process holding
the warehouse open read-only and querying a mart in a loop, throughout several ``tradelake
build`` runs (two of them at once, one failing), through the real CLI, dbt and DuckDB files.

Both build paths: ``tradelake build`` and the Dagster run's dbt step.
What a reader must see: every query succeeds and is consistent (the reconciliation summary adds
up to the reconciliation it summarises, in the same query), its open connection keeps the build
it opened, and a new connection reads the latest published build. A failed build leaves the
published warehouse byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest
from deltalake import DeltaTable

from pipelines.materialize import materialize_all
from pipelines.settings import Settings
from pipelines.warehouse import BUILDING_DIR
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

# One reading of the marts: gateway references reconciled, the summary's total of them (equal in
# any one build), and the staged ledger rows (incremental: they grow with every build that lands more).
STATE = (
    "select (select count(*) from finance.payment_reconciliation),"
    " (select sum(payments)::bigint from finance.reconciliation_summary),"
    " (select count(*) from staging.stg_payments__ledger)"
)
# The reader: an analyst's session that never reconnects until told to (a line on stdin).
READER = f"""
import json, sys, threading, time
import duckdb

stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
con = duckdb.connect(sys.argv[1], read_only=True)
print(json.dumps({{"ready": con.execute({STATE!r}).fetchone()}}), flush=True)
seen, queries = set(), 0
while not stop.is_set():
    seen.add(con.execute({STATE!r}).fetchone())
    queries += 1
    time.sleep(0.05)
con.close()
with duckdb.connect(sys.argv[1], read_only=True) as again:
    after = again.execute({STATE!r}).fetchone()
print(json.dumps({{"queries": queries, "seen": sorted(seen), "after": after}}), flush=True)
"""


def _ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr[-3000:]


def _land(lake: Settings, seed: int) -> None:
    _ok(run_cli("simulate", "--events", "3000", "--seed", str(seed), "-q", settings=lake))
    _ok(run_cli("ingest", "--once", "-q", settings=lake))


def _state(warehouse: Path) -> list[int]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        refs, summed, ledger = con.execute(STATE).fetchone()
    assert refs == summed > 0
    return [refs, summed, ledger]


def _fingerprint(path: Path) -> tuple[int, str]:
    return path.stat().st_ino, hashlib.sha256(path.read_bytes()).hexdigest()


@contextmanager
def reader_holding(warehouse: Path) -> Iterator[dict]:
    """The reader process for the block, holding ``warehouse`` open from the start; the dict it
    yields gets the reader's report (``queries``, ``seen``, ``after``) when the block ends."""
    first = _state(warehouse)
    reader = subprocess.Popen(
        [sys.executable, "-c", READER, str(warehouse)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    report: dict = {}
    try:
        assert reader.stdout is not None
        assert json.loads(reader.stdout.readline()) == {"ready": first}
        yield report
    finally:
        out, err = reader.communicate("stop\n", timeout=60)
    assert reader.returncode == 0, err[-3000:]
    report |= json.loads(out.splitlines()[-1])
    assert report["queries"] > 10, "the reader kept querying while the builds ran"
    assert report["seen"] == [first], "every query of the open connection read the build it opened, consistent"
    assert report["after"] == _state(warehouse), "reconnected, the reader reads the latest build"


def test_a_reader_holding_the_warehouse_open_through_builds(lake: Settings, tmp_path: Path):
    warehouse = lake.home / "warehouse.duckdb"
    _land(lake, seed=1)
    _ok(run_cli("build", "-q", settings=lake))
    first = _state(warehouse)

    with reader_holding(warehouse) as report:
        for seed in (2, 3):
            _land(lake, seed)
            _ok(run_cli("build", "-q", settings=lake))
        _land(lake, seed=4)
        with ThreadPoolExecutor(2) as pool:  # two builds at once: the second waits for the first
            for done in list(pool.map(lambda _: run_cli("build", "-q", settings=lake), range(2))):
                _ok(done)
        built = _state(warehouse)
        assert built[2] > first[2], "the builds staged the rows landed since the first"

        # A failed build: a data file the lake's log references is lost (a faulty clean-up), so
        # dbt cannot read the topic and its tests fail. The published warehouse stays as it was.
        published = _fingerprint(warehouse)
        lost = DeltaTable(lake.lake.table_uri("marketplace.jobs")).file_uris()[-1].removeprefix("file://")
        shutil.move(lost, tmp_path / "lost.parquet")
        try:
            failed = run_cli("build", "-q", settings=lake)
        finally:
            shutil.move(tmp_path / "lost.parquet", lost)
        errors = [line for line in failed.stderr.splitlines() if line.startswith("tradelake: error: ")]
        assert failed.returncode != 0 and len(errors) == 1, failed.stderr[-3000:]
        assert errors[0].startswith("tradelake: error: dbt build failed: ") and "IO Error" in errors[0]
        assert _fingerprint(warehouse) == published
        assert not (lake.home / BUILDING_DIR).exists(), "the failed attempt is deleted"
    assert report["after"] == built


def test_the_dagster_dbt_build_beside_a_reader(lake: Settings):
    """The Dagster run (landing, contract checks, dbt through dagster-dbt's dbt process) builds
    and publishes while a reader holds the warehouse open."""
    warehouse = lake.home / "warehouse.duckdb"
    _land(lake, seed=1)
    _ok(run_cli("build", "-q", settings=lake))
    first = _state(warehouse)
    with reader_holding(warehouse) as report:
        _ok(run_cli("simulate", "--events", "3000", "--seed", "2", "-q", settings=lake))
        done = materialize_all(lake, log_level="WARNING")
        assert done.success, done.summary()
    assert report["after"][2] > first[2], "the Dagster build published the rows it landed"
    assert not (lake.home / BUILDING_DIR).exists()
