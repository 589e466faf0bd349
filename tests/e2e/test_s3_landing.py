"""``tradelake simulate`` → broker → ``ingest --once`` → ``build`` with the lake on ``s3://``, against a
loopback S3 server (moto): the same exactly-once lake as on disk, checked with ``deltalake``
directly (``assert_exactly_once`` opens the tables with the lake's storage options)."""

from __future__ import annotations

import pyarrow.compute as pc
import pytest

from pipelines.catalog import TOPIC_NAMES
from pipelines.lake.duckdb_delta import connect
from tests.conftest import run_cli
from tests.e2e.lake_checks import assert_exactly_once, read_table

pytestmark = pytest.mark.e2e


def _land(s3_lake, s3_env, events: int, seed: int = 5) -> None:
    simulated = run_cli("simulate", "--events", str(events), "--seed", str(seed), settings=s3_lake, env=s3_env)
    assert simulated.returncode == 0, simulated.stderr
    ingested = run_cli("ingest", "--once", "--batch-size", "1500", settings=s3_lake, env=s3_env)
    assert ingested.returncode == 0, ingested.stderr  # also: no abort at exit (status 134)


def test_ingest_once_lands_every_record_exactly_once_on_s3(s3_lake, s3_env):
    _land(s3_lake, s3_env, 4_000)
    first = assert_exactly_once(s3_lake)
    _land(s3_lake, s3_env, 3_000, seed=6)  # a new process resumes from the offsets in the bucket's logs
    hws = assert_exactly_once(s3_lake)
    assert all(hws[key] > first[key] for key in first if key[0] == "marketplace.jobs")
    batches = read_table(s3_lake, "_batches", ["batch_id"])
    assert len(pc.unique(batches["batch_id"])) > 1, "several batches, several commits per table"
    assert not (s3_lake.home / "lake").exists(), "nothing was written to the local default lake"

    again = run_cli("ingest", "--once", settings=s3_lake, env=s3_env)
    assert again.returncode == 0, again.stderr
    assert "landed 0 records" in again.stdout
    assert assert_exactly_once(s3_lake) == hws


def test_build_reads_the_s3_lake_through_delta_scan(s3_lake, s3_env):
    _land(s3_lake, s3_env, 4_000)
    built = run_cli("build", settings=s3_lake, env=s3_env)
    assert built.returncode == 0, built.stdout + built.stderr

    batches = read_table(s3_lake, "_batches", ["records"])
    jobs = read_table(s3_lake, "marketplace.jobs", ["event_id"])
    with connect(s3_lake.lake, str(s3_lake.home / "warehouse.duckdb"), read_only=True) as con:  # views: delta_scan
        staged_records = con.sql("select sum(records) from staging.stg_lake__batches").fetchone()[0]
        staged_jobs = con.sql("select count(*) from staging.stg_marketplace__jobs").fetchone()[0]
        topics = {r[0] for r in con.sql("select distinct topic from staging.stg_lake__batches").fetchall()}
    assert staged_records == pc.sum(batches["records"]).as_py()
    assert staged_jobs == len(pc.unique(jobs["event_id"])) > 0, "one staging row per distinct committed event"
    assert topics == set(TOPIC_NAMES)
