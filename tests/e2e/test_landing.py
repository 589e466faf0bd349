"""Simulator → broker → ingest --once: exact counts, lineage, and no personal data in clear."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from confluent_kafka import TopicPartition

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES, TOPICS
from pipelines.lake.schemas import LINEAGE_FIELDS
from pipelines.produce import simulate
from pipelines.simulator import SimulationConfig
from tests.conftest import run_cli
from tests.e2e.lake_checks import assert_exactly_once, open_table, read_table


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
    for topic in TOPIC_NAMES:
        assert set(lineage) <= set(pa.schema(open_table(lake, topic).schema().to_arrow()).names), topic
    quarantined = len(read_table(lake, "_quarantine", ["_offset"]))
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
    """Every byte under the home (Delta logs included), with Parquet files decoded (their pages
    are compressed): data files and checkpoints, committed or not."""
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
    hashed = read_table(lake, "cdc.public.customers", ["after_email_hash"])["after_email_hash"]
    assert pc.sum(pc.is_valid(hashed)).as_py() > 0, "the keyed hash is kept as a join key"


def _lags(status_stdout: str) -> list[int]:
    return [int(line.split()[4].replace(",", "")) for line in status_stdout.splitlines()[1:]]


def test_status_needs_a_lake_then_shows_what_it_has_committed_and_the_lag(lake):
    simulate(lake, SimulationConfig(events=2_000, seed=9))
    no_lake = run_cli("status", settings=lake)
    assert no_lake.returncode != 0
    assert no_lake.stderr.strip().splitlines() == [
        f"tradelake: error: no lake at {lake.lake.url}; run 'tradelake ingest' first"
    ]

    assert run_cli("ingest", "--once", settings=lake).returncode == 0
    after = run_cli("status", settings=lake)
    assert after.returncode == 0, after.stderr
    hws = assert_exactly_once(lake)
    assert len(after.stdout.splitlines()) - 1 == sum(t.partitions for t in TOPICS), after.stdout
    for line in after.stdout.splitlines()[1:]:
        topic, partition, hw, landed_to, lag, *_ = line.split()
        assert (int(hw.replace(",", "")), int(landed_to.replace(",", "")), lag) == (
            hws[(topic, int(partition))],
            hws[(topic, int(partition))],
            "0",
        )

    more = simulate(lake, SimulationConfig(events=1_000, seed=10))
    behind = run_cli("status", settings=lake)
    assert behind.returncode == 0, behind.stderr
    assert sum(_lags(behind.stdout)) == more.total_records

    no_broker = run_cli("status", env={"TRADELAKE_HOME": str(lake.home)})
    assert no_broker.returncode == 0 and "what the lake has committed only" in no_broker.stderr
    assert "fleet.gps" in no_broker.stdout
