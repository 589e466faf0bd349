"""Several ``ingest --follow`` processes of one consumer group share a lake, exactly once.

Real broker (the embedded Tansu, cooperative-sticky assignment), real Delta tables, real
processes killed and paused; the lake is checked with ``deltalake`` directly
(``lake_checks.assert_exactly_once``). Landing's sessions time out after 6 s: rebalances take seconds.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections import defaultdict

import pytest

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks
from tests.conftest import cli_env, run_cli
from tests.e2e.lake_checks import assert_exactly_once, open_table, read_table

pytestmark = pytest.mark.e2e


def _env(lake: Settings, group: str = "tradelake-landing") -> dict[str, str]:
    return cli_env(lake) | {"TRADELAKE_CONSUMER_GROUP": group}


def _follow(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--follow", "-q", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _produce(lake: Settings, events: int, seed: int, rate: int | None = None) -> subprocess.Popen:
    paced = ["--rate", str(rate)] if rate else []
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "simulate", "--events", str(events), "--seed", str(seed), "-q", *paced],
        env=cli_env(lake),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _partitions(lake: Settings) -> list[tuple[str, int]]:
    metadata = kafka.admin(lake).list_topics(timeout=10).topics
    return [(t, p) for t in TOPIC_NAMES if t in metadata for p in metadata[t].partitions]


def _landed_to(lake: Settings) -> dict[tuple[str, int], int]:
    """Per partition: the next offset ``_batches`` has committed."""
    ends: dict[tuple[str, int], int] = defaultdict(int)
    for b in read_table(lake, "_batches", ["topic", "partition", "last_offset"]).to_pylist():
        key = (b["topic"], b["partition"])
        ends[key] = max(ends[key], b["last_offset"] + 1)
    return ends


def _wait_caught_up(lake: Settings, processes: list[subprocess.Popen], timeout: float) -> None:
    """Until the lake has committed every partition up to its high watermark."""
    hws = high_watermarks(lake, _partitions(lake))
    deadline = time.monotonic() + timeout
    while True:
        for p in processes:
            assert p.poll() is None, p.stderr.read()
        landed = _landed_to(lake)
        behind = {k: (landed.get(k, 0), hw) for k, hw in hws.items() if landed.get(k, 0) < hw}
        if not behind:
            return
        assert time.monotonic() < deadline, f"not caught up: {sorted(behind.items())[:3]}"
        time.sleep(1)


def _stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        p.send_signal(signal.SIGTERM)
    for p in processes:
        assert p.wait(timeout=60) == 0, p.stderr.read()


def _assert_batch_ids_rise_per_partition(lake: Settings) -> None:
    """Within a partition, batch ids increase with offsets (staging's incremental filter rests on
    it), and no batch id is used by two processes (one batch: one ingested_at)."""
    rows = read_table(lake, "_batches", ["batch_id", "topic", "partition", "first_offset", "ingested_at"]).to_pylist()
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    when: dict[int, set] = defaultdict(set)
    for r in rows:
        by_partition[(r["topic"], r["partition"])].append((r["first_offset"], r["batch_id"]))
        when[r["batch_id"]].add(r["ingested_at"])
    for key, spans in by_partition.items():
        ids = [b for _, b in sorted(spans)]
        assert ids == sorted(set(ids)), f"{key}: batch ids do not rise with offsets: {ids[:10]}"
    shared = [b for b, times in when.items() if len(times) > 1]
    assert not shared, f"batch ids used by two batches: {shared[:5]}"


def test_processes_share_partitions_through_kills_and_scaling_exactly_once(lake):
    """Three processes, one killed mid-batch, a fourth started, down to one, back up to two —
    all while records are produced (16 s at 4,000 records/s)."""
    env = _env(lake)
    args = ("--batch-size", "2000", "--flush-interval", "2")
    processes = [_follow(env, *args) for _ in range(3)]
    first_three = {p.pid for p in processes}
    time.sleep(8)  # the group forms (Tansu's first join takes half the session timeout)
    producer = _produce(lake, 64_000, 7, rate=4_000)
    try:
        time.sleep(4)
        victim = processes.pop(1)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        processes.append(_follow(env, *args))
        time.sleep(4)
        _stop(processes[1:])  # scale down to one: the leavers commit what they hold, then go
        processes = processes[:1]
        time.sleep(3)
        processes.append(_follow(env, *args))  # and back up to two
    finally:
        assert producer.wait(timeout=300) == 0, producer.stderr.read()
    _wait_caught_up(lake, processes, timeout=120)
    _stop(processes)
    assert_exactly_once(lake)
    _assert_batch_ids_rise_per_partition(lake)
    # Each take of partitions is a fence commit naming its process ("host:pid") in the table's history.
    takers = {
        int(h["tradelake.owner"].rsplit(":", 1)[1])
        for h in open_table(lake, "_batches").history()
        if h.get("tradelake.operation") == "fence"
    }
    assert first_three <= takers, f"not all three first processes took partitions: {first_three - takers}"


def test_a_paused_process_commits_nothing_after_its_partitions_moved(lake):
    env = _env(lake)
    # The zombie holds what it consumes for 12 s before its batch closes (flush interval 20 s).
    zombie = _follow(env, "--flush-interval", "20")
    time.sleep(8)
    producer = _produce(lake, 5_000, 3)
    assert producer.wait(timeout=120) == 0, producer.stderr.read()
    time.sleep(2)  # consumed, not committed
    assert len(read_table(lake, "_batches", ["batch_id"])) == 0, "the zombie committed before it was paused"
    zombie.send_signal(signal.SIGSTOP)
    try:
        owner = _follow(env, "--flush-interval", "2")
        _wait_caught_up(lake, [owner], timeout=90)  # past the zombie's session timeout: all moved
        versions = {t: open_table(lake, t).version() for t in ("_batches", "_quarantine", *TOPIC_NAMES)}
    finally:
        zombie.send_signal(signal.SIGCONT)
    assert zombie.wait(timeout=60) != 0
    error = zombie.stderr.read().strip().splitlines()
    assert len(error) == 1 and error[0].startswith("tradelake: error: refusing to commit"), error
    assert {t: open_table(lake, t).version() for t in versions} == versions, "the zombie committed"
    _stop([owner])
    assert_exactly_once(lake)
    _assert_batch_ids_rise_per_partition(lake)


def test_a_second_consumer_group_on_one_lake_is_refused(lake):
    first = run_cli("ingest", "--once", "-q", env=_env(lake, "group-a"), settings=lake)
    assert first.returncode == 0, first.stderr
    second = run_cli("ingest", "--once", "-q", env=_env(lake, "group-b"), settings=lake)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "landed by consumer group 'group-a', not 'group-b'" in lines[0], lines
