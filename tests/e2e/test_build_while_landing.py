"""``tradelake build`` running again and again while ``ingest --follow`` lands: the incremental
staging models end up with every committed event, none skipped, whatever the interleaving.

What the lake committed is read with ``deltalake`` directly; the warehouse with DuckDB.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import duckdb
import pytest
from deltalake import DeltaTable

from tests.conftest import cli_env, run_cli

pytestmark = pytest.mark.e2e


def _committed_distinct(lake_url: str, topic: str, key: str) -> int:
    table = DeltaTable(f"{lake_url}/{topic}").to_pyarrow_table(columns=[key])
    return len(set(table[key].to_pylist()))


def test_builds_during_follow_never_skip_a_committed_batch(lake):
    env = cli_env(lake)
    cli = [sys.executable, "-m", "pipelines.cli"]
    # Small batches, committed often, so that builds fall between (and during) many commits.
    follow = subprocess.Popen(
        [*cli, "ingest", "--follow", "--batch-size", "2000", "--flush-interval", "1", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    producer = subprocess.Popen(
        [*cli, "simulate", "--events", "60000", "--seed", "8", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    builds = 0
    try:
        deadline = time.monotonic() + 240
        while (producer.poll() is None or builds < 3) and time.monotonic() < deadline:
            if not os.path.isdir(f"{lake.lake.url}/_batches"):
                time.sleep(0.5)
                continue
            result = run_cli("build", settings=lake)
            assert result.returncode == 0, result.stderr[-2000:]
            builds += 1
        assert producer.wait(timeout=60) == 0, producer.stderr.read()
        time.sleep(3)  # the last records are committed within the flush interval
    finally:
        follow.send_signal(signal.SIGTERM)
        assert follow.wait(timeout=60) == 0, follow.stderr.read()
    assert builds >= 3, "several builds ran while landing"
    final = run_cli("build", settings=lake)
    assert final.returncode == 0, final.stderr[-2000:]
    with duckdb.connect(str(lake.home / "warehouse.duckdb"), read_only=True) as con:
        gps = con.sql("select count(*) from staging.stg_fleet__gps").fetchone()[0]
        ledger = con.sql("select count(*) from staging.stg_payments__ledger").fetchone()[0]
    assert gps == _committed_distinct(lake.lake.url, "fleet.gps", "event_id") > 0
    assert ledger == _committed_distinct(lake.lake.url, "payments.ledger", "event_id") > 0
