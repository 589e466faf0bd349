"""A transactional producer (commits and aborts) beside a plain one on one topic: ingest and build green.

Transaction markers take offsets no record comes from, so a partition's offsets are not its
records; completeness checks that the batches' ranges tile each partition instead (see
audit.ingestion_completeness). What the lake must hold is what an independent read_committed
consumer reads from the broker, each record exactly once — checked with ``deltalake`` directly.

The embedded broker (Tansu) writes the markers but does not filter aborted records for a
read_committed consumer (docs/decisions.md): they are delivered, so they land. The test asserts
that, so that a broker that filters them shows up here.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from itertools import cycle

import duckdb
import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from pipelines.catalog import TOPICS
from pipelines.settings import Settings
from pipelines.simulator import Simulation, SimulationConfig
from tests.conftest import run_cli
from tests.e2e.lake_checks import last_offset, open_table, read_table

pytestmark = pytest.mark.e2e

TOPIC = "marketplace.jobs"
PARTITIONS = next(t.partitions for t in TOPICS if t.name == TOPIC)
Offsets = set[tuple[int, int]]  # (partition, offset)


def _values(count: int, seed: int) -> list[bytes]:
    """Valid simulated records of the topic (no malformed ones: every record lands)."""
    sim = Simulation(SimulationConfig(events=count * 50, seed=seed, malformed_rate=0.0, redelivery_rate=0.0))
    values = [r.value for r in sim.records() if r.topic == TOPIC][:count]
    assert len(values) == count
    return values


def _produce(settings: Settings, values: list[bytes], run: str) -> dict[str, set[bytes]]:
    """Interleave plain records, committed transactions and aborted ones, spread over the partitions.

    Each partition ends with a plain record, so its high watermark is one past a record's offset.
    Returns the values sent per kind.
    """
    conf = {"bootstrap.servers": settings.bootstrap_servers}
    plain = Producer(conf)
    tx = Producer({**conf, "transactional.id": f"tradelake-test-{run}"})
    tx.init_transactions(30)
    sent: dict[str, set[bytes]] = {"plain": set(), "committed": set(), "aborted": set()}
    chunks = [values[i : i + 5] for i in range(0, len(values) - PARTITIONS, 5)]
    for chunk, kind in zip(chunks, cycle(["plain", "committed", "aborted", "committed"]), strict=False):
        if kind == "plain":
            for i, v in enumerate(chunk):
                plain.produce(TOPIC, value=v, partition=i % PARTITIONS)
            assert plain.flush(30) == 0
        else:
            tx.begin_transaction()
            for i, v in enumerate(chunk):
                tx.produce(TOPIC, value=v, partition=i % PARTITIONS)
            tx.flush(30)
            tx.commit_transaction(30) if kind == "committed" else tx.abort_transaction(30)
        sent[kind] |= set(chunk)
    for p, v in enumerate(values[-PARTITIONS:]):
        plain.produce(TOPIC, value=v, partition=p)
        sent["plain"].add(v)
    assert plain.flush(30) == 0
    return sent


def _read_committed(settings: Settings) -> tuple[dict[tuple[int, int], bytes], dict[int, int]]:
    """What an independent read_committed consumer reads: (partition, offset) -> value, and the end offsets."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "independent-reader",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTITIONS)])
    seen: dict[tuple[int, int], bytes] = {}
    ends: dict[int, int] = {}
    deadline = time.monotonic() + 30
    while len(ends) < PARTITIONS and time.monotonic() < deadline:
        for m in consumer.consume(500, timeout=0.5):
            if m.error() is None:
                seen[(m.partition(), m.offset())] = m.value()
            elif m.error().code() == KafkaError._PARTITION_EOF:
                ends[m.partition()] = m.offset()
    consumer.close()
    assert len(ends) == PARTITIONS, "the reader did not reach the end of every partition"
    return seen, ends


def _lake_offsets(settings: Settings) -> Counter:
    """Every (partition, offset) the topic table and the quarantine hold, with how many rows hold it."""
    held: Counter = Counter()
    for name in (TOPIC, "_quarantine"):
        rows = read_table(settings, name, ["_topic", "_partition", "_offset"]).to_pylist()
        held.update((r["_partition"], r["_offset"]) for r in rows if r["_topic"] == TOPIC)
    return held


def _check_batches_tile(settings: Settings, ends: dict[int, int]) -> None:
    """Each partition's _batches ranges begin at 0 and right after one another, up to the end."""
    rows = sorted(read_table(settings, "_batches").to_pylist(), key=lambda r: r["batch_id"])
    for p in range(PARTITIONS):
        spans = [(r["start_offset"], r["first_offset"], r["last_offset"]) for r in rows if r["partition"] == p]
        assert len(spans) > 1, "several batches, so ranges meet at batch boundaries"
        expected = 0
        for start, first, last in spans:
            assert start == expected and start <= first <= last, (p, spans)
            expected = last + 1
        assert expected == ends[p]
        app = f"tradelake:{TOPIC}@{rows[0]['topic_id']}:{p}"
        assert last_offset(open_table(settings, "_batches"), app) == ends[p] - 1


def test_a_transactional_topic_lands_what_read_committed_reads_exactly_once_and_builds(lake: Settings):
    values = _values(150, seed=21)
    sent = _produce(lake, values[:90], run="first")
    first = run_cli("ingest", "--once", "--batch-size", "7", settings=lake)
    assert first.returncode == 0, first.stderr
    sent_later = _produce(lake, values[90:], run="second")  # resumes past the markers after the first run
    second = run_cli("ingest", "--once", "--batch-size", "7", settings=lake)
    assert second.returncode == 0, second.stderr
    build = run_cli("build", settings=lake)
    assert build.returncode == 0, build.stdout + build.stderr

    seen, ends = _read_committed(lake)
    held = _lake_offsets(lake)
    assert set(held) == set(seen), "the lake holds exactly the records a read_committed consumer reads"
    assert all(n == 1 for n in held.values()), "each exactly once"
    landed = read_table(lake, TOPIC, ["_partition", "_offset", "event_id"]).to_pylist()
    by_offset = {(r["_partition"], r["_offset"]): r["event_id"] for r in landed}
    assert {k: json.loads(seen[k])["event_id"] for k in by_offset} == by_offset, "each at its own offset"
    _check_batches_tile(lake, ends)

    kinds = {k: sent[k] | sent_later[k] for k in sent}
    delivered = set(seen.values())
    assert kinds["plain"] | kinds["committed"] <= delivered
    # The embedded broker's limitation: aborted records reach read_committed consumers (a
    # conforming broker filters them out: delivered & aborted would be empty).
    assert kinds["aborted"] <= delivered

    markers = sum(ends.values()) - len(seen)
    assert markers > 0, "the transactions' markers take offsets"
    with duckdb.connect(str(lake.home / "warehouse.duckdb"), read_only=True) as con:
        rows = con.sql(
            "select records, offset_gaps, range_breaks, duplicate_offsets, quarantined_rows, quarantined"
            f" from audit.ingestion_completeness where topic = '{TOPIC}'"
        ).fetchall()
    assert len(rows) == PARTITIONS
    assert sum(r[0] for r in rows) == len(seen)
    assert sum(r[1] for r in rows) == markers, "every marker is an offset gap, reported"
    assert all(r[2] == r[3] == 0 and r[4] == r[5] for r in rows)
