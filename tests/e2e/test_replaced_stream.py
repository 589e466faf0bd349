"""A replaced stream is never read as a continuation: broker restarts (the embedded broker keeps
data in memory only) and recreated topics are refused with one line, nothing of the new stream
lands by mistake, and ``--reset-topic`` lands the new stream beside the old.

The lake is checked with ``deltalake`` directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka.admin import NewTopic
from deltalake import DeltaTable

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.settings import Settings
from tests.conftest import TEST_PII_KEY, cli_env, run_cli

pytestmark = pytest.mark.e2e

TOPIC = "marketplace.reviews"


def _produce(settings: Settings, n: int, tag: str, topic: str = TOPIC) -> None:
    producer = kafka.producer(settings)
    for i in range(n):
        producer.produce(topic, key=f"{tag}-{i}".encode(), value=f'{{"tag": "{tag}", "i": {i}}}'.encode())
    assert producer.flush(30) == 0


def _lake_rows(settings: Settings, topic: str = TOPIC) -> list[tuple[int, int]]:
    """(partition, offset) of every row the lake holds for ``topic`` (landed or quarantined)."""
    url = settings.lake.url
    columns = ["_topic", "_partition", "_offset"]
    rows = DeltaTable(f"{url}/{topic}").to_pyarrow_table(columns=columns).to_pylist()
    rows += DeltaTable(f"{url}/_quarantine").to_pyarrow_table(columns=columns).to_pylist()
    return sorted((r["_partition"], r["_offset"]) for r in rows if r["_topic"] == topic)


def _versions(settings: Settings) -> dict[str, int]:
    url = settings.lake.url
    return {name: DeltaTable(f"{url}/{name}").version() for name in sorted(os.listdir(url))}


def _error_line(result) -> str:
    lines = [x for x in result.stderr.splitlines() if x.strip()]
    assert result.returncode != 0
    assert lines and lines[-1].startswith("tradelake: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


def _restart(tmp_path, port: int, name: str) -> EmbeddedBroker:
    broker = EmbeddedBroker(tmp_path / name, port=port)
    broker.__enter__()
    return broker


def test_a_restarted_broker_is_refused_before_once_and_nothing_new_lands(tmp_path):
    first = EmbeddedBroker(tmp_path / "b1")
    with first:
        settings = Settings.load(
            env={"TRADELAKE_PII_KEY": TEST_PII_KEY},
            home=str(tmp_path / "home"),
            bootstrap_servers=first.bootstrap_servers,
        )
        kafka.ensure_topics(settings)
        _produce(settings, 300, "old")
        assert run_cli("ingest", "--once", settings=settings).returncode == 0
        before = _lake_rows(settings)
        assert len(before) == 300
    second = _restart(tmp_path, first.port, "b2")
    try:
        kafka.ensure_topics(settings)
        _produce(settings, 900, "new")  # past the old high watermarks: offsets alone cannot tell
        versions = _versions(settings)
        line = _error_line(run_cli("ingest", "--once", settings=settings))
        assert "is not the stream this lake was fed from" in line and "--reset-topic" in line
        assert "TRADELAKE_HOME" in line
        assert _versions(settings) == versions, "nothing committed from the new stream"
    finally:
        second.__exit__(None, None, None)


def test_a_broker_restart_during_follow_stops_it_and_lands_nothing_of_the_new_stream(tmp_path):
    first = EmbeddedBroker(tmp_path / "b1")
    first.__enter__()
    second = None
    settings = Settings.load(
        env={"TRADELAKE_PII_KEY": TEST_PII_KEY}, home=str(tmp_path / "home"), bootstrap_servers=first.bootstrap_servers
    )
    kafka.ensure_topics(settings)
    env = cli_env(settings)
    follow = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--follow", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _produce(settings, 200, "old")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (
            not os.path.isdir(f"{settings.lake.url}/_batches") or len(_lake_rows(settings)) < 200
        ):
            time.sleep(0.3)
        assert len(_lake_rows(settings)) == 200, "the old stream is landed"
        first.__exit__(None, None, None)
        second = _restart(tmp_path, first.port, "b2")
        kafka.ensure_topics(settings)
        _produce(settings, 2_000, "new")
        try:
            rc = follow.wait(timeout=90)
        except subprocess.TimeoutExpired:
            follow.send_signal(signal.SIGTERM)
            follow.wait(timeout=30)
            raise AssertionError("follow carried on against a replaced stream") from None
        stderr = follow.stderr.read()
        assert rc != 0
        last = [x for x in stderr.splitlines() if x.strip()][-1]
        assert last.startswith("tradelake: error: ") and "is not the stream this lake was fed from" in last, stderr
        assert "Traceback" not in stderr
        assert len(_lake_rows(settings)) == 200, "nothing of the new stream landed"
    finally:
        if follow.poll() is None:
            follow.kill()
        (second or first).__exit__(None, None, None)


def test_a_topic_recreated_with_other_partitions_is_refused_and_reset_topic_lands_it_beside(lake):
    _produce(lake, 300, "old")
    assert run_cli("ingest", "--once", settings=lake).returncode == 0
    old = _lake_rows(lake)
    client = kafka.admin(lake)
    for f in client.delete_topics([TOPIC]).values():
        f.result()
    time.sleep(0.5)
    for f in client.create_topics([NewTopic(TOPIC, 5, 1)]).values():
        f.result()
    _produce(lake, 500, "new")
    versions = _versions(lake)
    line = _error_line(run_cli("ingest", "--once", settings=lake))
    assert TOPIC in line and "topic ID" in line
    assert _versions(lake) == versions

    result = run_cli("ingest", "--once", "--reset-topic", TOPIC, settings=lake)
    assert result.returncode == 0, result.stderr
    streams = DeltaTable(f"{lake.lake.url}/_streams").to_pyarrow_table().to_pylist()
    mine = sorted((r for r in streams if r["topic"] == TOPIC), key=lambda r: r["since"])
    assert [r["reason"].split(":")[0] for r in mine] == ["first seen", "reset"]
    assert mine[1]["partitions"] == 5 and mine[0]["topic_id"] != mine[1]["topic_id"]
    rows = DeltaTable(f"{lake.lake.url}/{TOPIC}").to_pyarrow_table(columns=["_key"])["_key"].to_pylist()
    quarantined = DeltaTable(f"{lake.lake.url}/_quarantine").to_pyarrow_table(columns=["_topic", "_key"]).to_pylist()
    keys = rows + [r["_key"] for r in quarantined if r["_topic"] == TOPIC]
    assert sorted(keys) == sorted([f"old-{i}" for i in range(300)] + [f"new-{i}" for i in range(500)])
    assert len(old) == 300
    again = run_cli("ingest", "--once", settings=lake)
    assert again.returncode == 0, again.stderr
    assert len(keys) == 800 and "landed 0 records" in again.stdout
