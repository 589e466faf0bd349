"""Commit on time: on a quiet stream, every consumed record reaches the Delta tables within the
flush interval, without a next batch to push it — checked with ``deltalake`` directly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable

from pipelines import kafka
from pipelines.status import partition_status
from pipelines.watermarks import high_watermarks
from tests.conftest import cli_env

pytestmark = pytest.mark.e2e

FLUSH_INTERVAL = 5.0


def _committed_records(lake_url: str, topic: str) -> int:
    """Records of ``topic`` the lake has committed, per its ``_batches`` table."""
    try:
        rows = DeltaTable(f"{lake_url}/_batches").to_pyarrow_table(columns=["topic", "records"]).to_pylist()
    except Exception:  # not created yet
        return 0
    return sum(r["records"] for r in rows if r["topic"] == topic)


def _has_taken_partitions(lake_url: str) -> bool:
    """The consumer group has assigned the follower its partitions and it has taken them in the
    lake (its batch-id reservation is in ``_batches``'s log): from now on it consumes."""
    try:
        return DeltaTable(f"{lake_url}/_batches").transaction_version("tradelake:batch-ids") is not None
    except Exception:  # not created yet
        return False


def _landed_offsets(lake_url: str, topic: str) -> list[tuple[int, int]]:
    """(partition, offset) of every landed or quarantined row of ``topic``."""
    columns = ["_topic", "_partition", "_offset"]
    rows = DeltaTable(f"{lake_url}/{topic}").to_pyarrow_table(columns=columns).to_pylist()
    rows += DeltaTable(f"{lake_url}/_quarantine").to_pyarrow_table(columns=columns).to_pylist()
    return sorted((r["_partition"], r["_offset"]) for r in rows if r["_topic"] == topic)


def _mapped_files(pid: int) -> set[str]:
    """The files process ``pid`` has mapped (its code and libraries)."""
    with open(f"/proc/{pid}/maps") as f:
        return {parts[5] for line in f if len(parts := line.split(maxsplit=5)) == 6 and parts[5].startswith("/")}


def test_a_quiet_streams_burst_is_committed_within_the_flush_interval(lake):
    env = cli_env(lake)
    follow = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--follow", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        lake_url = lake.lake.url
        deadline = time.monotonic() + 60
        while not _has_taken_partitions(lake_url) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)  # landing has started and is waiting on an empty topic
        assert follow.poll() is None, follow.stderr.read().decode()
        topic = "marketplace.reviews"
        producer = kafka.producer(lake)
        burst = 4_999  # under a batch: only the flush interval can commit it
        for i in range(burst):
            producer.produce(topic, key=b"tp-%d" % i, value=b'{"not": "a review %d"}' % i)
        producer.flush(30)
        produced = time.monotonic()
        while _committed_records(lake_url, topic) < burst and time.monotonic() - produced < 4 * FLUSH_INTERVAL:
            time.sleep(0.1)
        waited = time.monotonic() - produced
        # Nothing else arrives and follow is still running: only the flush interval commits.
        assert _committed_records(lake_url, topic) == burst, f"not committed after {waited:.1f}s"
        assert waited <= FLUSH_INTERVAL + 1.0, f"committed after {waited:.1f}s, flush interval {FLUSH_INTERVAL}s"
        partitions = sorted(kafka.admin(lake).list_topics(timeout=10).topics[topic].partitions)
        hws = high_watermarks(lake, [(topic, p) for p in partitions])
        assert _landed_offsets(lake_url, topic) == [(p, o) for p in partitions for o in range(hws[(topic, p)])]
        assert sum(hws.values()) == burst
        lags = {(s.topic, s.partition): s.lag for s in partition_status(lake) if s.topic == topic}
        assert lags and set(lags.values()) == {0}, f"status agrees: nothing left to land ({lags})"
        # Having routed, quarantined and committed, the process has not loaded pandas (35-45 MiB
        # of RSS landing does not use: ``pipelines.landing.process``).
        mapped = _mapped_files(follow.pid)
        assert any("/pyarrow/" in f for f in mapped) and any("/deltalake/" in f for f in mapped), "maps read"
        assert not [f for f in mapped if "/pandas/" in f]
    finally:
        follow.send_signal(signal.SIGTERM)
        assert follow.wait(timeout=60) == 0, follow.stderr.read().decode()
