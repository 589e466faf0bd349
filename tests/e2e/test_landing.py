"""Simulator → broker → ingest --once: exact counts, lineage, and no personal data in clear."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq
from confluent_kafka import TopicPartition

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES, TOPICS
from pipelines.landing.router import LINEAGE_FIELDS
from pipelines.produce import simulate
from pipelines.simulator import SimulationConfig
from tests.conftest import run_cli
from tests.e2e.lake_checks import assert_exactly_once


def test_simulate_then_ingest_once_lands_every_record_exactly_once(lake):
    report = simulate(lake, SimulationConfig(events=20_000, seed=7, malformed_rate=0.01))
    result = run_cli("ingest", "--once", "--batch-size", "4000", settings=lake)
    assert result.returncode == 0, result.stderr

    hws = assert_exactly_once(lake)
    per_topic = {t: sum(hw for (topic, _), hw in hws.items() if topic == t) for t in TOPIC_NAMES}
    assert per_topic == {t: report.records_per_topic.get(t, 0) for t in TOPIC_NAMES}
    assert all(per_topic.values()), "every catalog topic carries traffic"
    assert "landed" in result.stdout and "quarantined by rule" in result.stdout

    lineage = [name for name, _ in LINEAGE_FIELDS]
    for f in (lake.home / "landing").glob("*/*.parquet"):
        assert set(lineage) <= set(pq.read_schema(f).names)
    quarantined = duckdb.sql(f"select count(*) from '{lake.home}/quarantine/*/*.parquet'").fetchone()[0]
    assert quarantined >= sum(report.malformed.values()) * 0.9  # every malformed class is caught
    tombstones = sum(report.tombstones_per_topic.values())
    assert tombstones >= 1

    # the consumer group ends at the high watermarks too (lag dashboards read it)
    group = kafka.consumer(lake)
    try:
        committed = group.committed([TopicPartition(t, p) for t, p in hws], timeout=10)
    finally:
        group.close()
    assert {(tp.topic, tp.partition): tp.offset for tp in committed if hws[(tp.topic, tp.partition)]} == {
        k: hw for k, hw in hws.items() if hw
    }


def test_a_second_ingest_lands_nothing_again(lake):
    simulate(lake, SimulationConfig(events=3_000, seed=3))
    first = run_cli("ingest", "--once", settings=lake)
    second = run_cli("ingest", "--once", settings=lake)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "landed 0 records" in second.stdout
    assert_exactly_once(lake)


def _all_text(home: Path) -> list[bytes]:
    """Every byte under the lake, with Parquet files decoded (their pages are compressed)."""
    blobs = []
    for f in home.rglob("*"):
        if not f.is_file():
            continue
        blobs.append(f.read_bytes())
        if f.suffix == ".parquet":
            blobs.append(str(pq.read_table(f).to_pylist()).encode())
    return blobs


def test_personal_data_is_never_written_in_clear(lake):
    report = simulate(lake, SimulationConfig(events=5_000, seed=11, malformed_rate=0.05))
    result = run_cli("ingest", "--once", settings=lake)
    assert result.returncode == 0, result.stderr
    canaries = [v.encode() for v in report.canaries_flat()]
    assert canaries, "the simulator names its canaries"
    blobs = _all_text(lake.home)
    for canary in canaries:
        for blob in blobs:
            assert canary not in blob, f"{canary!r} found in clear"
        assert canary not in result.stdout.encode() + result.stderr.encode()
    hashed = duckdb.sql(
        f"select count(*) from '{lake.home}/landing/cdc.public.customers/*.parquet' where after_email_hash is not null"
    ).fetchone()[0]
    assert hashed > 0, "the keyed hash is kept as a join key"


def test_status_shows_lag_then_catches_up(lake):
    report = simulate(lake, SimulationConfig(events=2_000, seed=9))
    before = run_cli("status", settings=lake)
    assert before.returncode == 0, before.stderr
    lags = [int(line.split()[4].replace(",", "")) for line in before.stdout.splitlines()[1:]]
    assert len(lags) == sum(t.partitions for t in TOPICS), before.stdout
    assert sum(lags) == report.total_records

    assert run_cli("ingest", "--once", settings=lake).returncode == 0
    after = run_cli("status", settings=lake)
    hws = assert_exactly_once(lake)
    for line in after.stdout.splitlines()[1:]:
        topic, partition, hw, landed_to, lag, *_ = line.split()
        assert (int(hw.replace(",", "")), int(landed_to.replace(",", "")), lag) == (
            hws[(topic, int(partition))],
            hws[(topic, int(partition))],
            "0",
        )

    no_broker = run_cli("status", env={"TRADELAKE_HOME": str(lake.home)})
    assert no_broker.returncode == 0 and "ledger only" in no_broker.stderr
    assert "fleet.gps" in no_broker.stdout
