"""Several ``ingest --follow`` processes of one consumer group share a lake, exactly once.

Real broker (the embedded Tansu, cooperative-sticky assignment), real Delta tables, real
processes killed and paused; the lake is checked with ``deltalake`` directly
(``lake_checks.assert_exactly_once``). Landing's sessions time out after 6 s: rebalances take seconds.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from confluent_kafka.admin import NewTopic

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES, TOPICS
from pipelines.settings import Settings
from pipelines.status import partition_status
from pipelines.watermarks import high_watermarks
from tests.conftest import TEST_PII_KEY, cli_env, run_cli
from tests.e2e.lake_checks import assert_exactly_once, open_table, read_table

pytestmark = pytest.mark.e2e


def _env(lake: Settings, group: str = "tradelake-landing") -> dict[str, str]:
    return cli_env(lake) | {"TRADELAKE_CONSUMER_GROUP": group}


@pytest.fixture(params=["local", "s3"])
def shared(request: pytest.FixtureRequest, tmp_path: Path, broker) -> tuple[Settings, dict[str, str]]:
    """A lake the group's processes share — on disk, or on the loopback S3 server (commits by
    conditional put) — and the environment its processes run in; the topics have 6 partitions
    (GPS 12; CDC keeps one), twice the catalog's."""
    s3 = request.getfixturevalue("s3_env") if request.param == "s3" else {}
    env = {"TRADELAKE_PII_KEY": TEST_PII_KEY, **s3}
    lake = Settings.load(env=env, home=str(tmp_path / "home"), bootstrap_servers=broker.bootstrap_servers)
    wide = [NewTopic(t.name, 1 if t.is_cdc else 2 * t.partitions, 1) for t in TOPICS]
    client = kafka.admin(lake)  # kept alive until the topics exist
    for future in client.create_topics(wide).values():
        future.result()
    return lake, _env(lake) | s3


# A follower that dumps its threads' stacks on SIGUSR1 (for a stall's report).
FOLLOWER = (
    "import faulthandler, signal, sys; faulthandler.register(signal.SIGUSR1, all_threads=True); "
    "from pipelines.cli import main; sys.exit(main())"
)


class Follower:
    """An ``ingest --follow`` process logging to a file (a pipe nobody reads would fill and block it)."""

    count = 0

    def __init__(self, env: dict[str, str], logs: Path, *args: str) -> None:
        Follower.count += 1
        self.log = logs / f"follower-{Follower.count}.log"
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-c", FOLLOWER, "ingest", "--follow", *args], env=env, stdout=out, stderr=out
            )
        self.pid = self.process.pid

    def owned(self) -> set[tuple[str, int]]:
        """The partitions it holds now, by its log's ``assigned``/``revoked`` lines."""
        held: set[tuple[str, int]] = set()
        for line in self.log.read_text().splitlines():
            words = line.split(" ", 2)
            if len(words) == 3 and words[1] in ("assigned", "revoked"):
                moved = {(t, int(p)) for t, p in PARTITION.findall(words[2])}
                held = held | moved if words[1] == "assigned" else held - moved
        return held

    def wait_consumed(self, records: int, timeout: float = 90) -> None:
        """Until its progress lines say it has consumed ``records``."""
        deadline = time.monotonic() + timeout
        while not any(int(n.replace(",", "")) >= records for n in CONSUMED.findall(self.log.read_text())):
            assert self.process.poll() is None and time.monotonic() < deadline, self.report()
            time.sleep(0.5)

    def report(self) -> str:
        return f"--- follower pid {self.pid} (exit {self.process.poll()}):\n" + self.log.read_text()[-6000:]


PARTITION = re.compile(r"([\w.]+)\[(\d+)\]")
CONSUMED = re.compile(r"ingest: ([\d,]+) records")


def _wait_settled(lake: Settings, followers: list[Follower], everyone: list[Follower], timeout: float = 90) -> None:
    """Until the live followers hold every partition, each once, each some, unchanged for 3 s.

    Between membership changes: Tansu 0.6 may never settle a group that two members leave at
    once, or that a member joins and leaves while it rebalances (docs/decisions.md); Kafka does.
    """
    partitions = set(_partitions(lake))
    deadline, since, last = time.monotonic() + timeout, time.monotonic(), None
    while True:
        held = [f.owned() for f in followers]
        state = sorted(map(sorted, held))
        if state != last:
            since, last = time.monotonic(), state
        each_once = set().union(*held) == partitions and sum(map(len, held)) == len(partitions)
        if each_once and all(held) and time.monotonic() - since >= 3:
            return
        assert time.monotonic() < deadline, f"the group did not settle\n{_report(everyone)}"
        time.sleep(0.5)


def _report(followers: list[Follower]) -> str:
    """Every follower's log, with the live ones' stacks."""
    for f in followers:
        if f.process.poll() is None:
            f.process.send_signal(signal.SIGUSR1)
    time.sleep(1)
    return "\n".join(f.report() for f in followers)


def _produce(lake: Settings, logs: Path, events: int, seed: int, rate: int | None = None) -> subprocess.Popen:
    paced = ["--rate", str(rate)] if rate else []
    command = [sys.executable, "-m", "pipelines.cli", "simulate", "-q", "--events", str(events), "--seed", str(seed)]
    with open(logs / "simulate.log", "w") as out:
        return subprocess.Popen(
            [*command, *paced],
            env=cli_env(lake),
            stdout=out,
            stderr=out,
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


def _wait_caught_up(lake: Settings, followers: list[Follower], timeout: float, everyone: list[Follower]) -> None:
    """Until the lake has committed every partition up to its high watermark (``everyone``: the
    followers whose logs a failure reports)."""
    hws = high_watermarks(lake, _partitions(lake))
    deadline = time.monotonic() + timeout
    while True:
        for f in followers:
            assert f.process.poll() is None, _report(everyone)
        landed = _landed_to(lake)
        behind = {k: (landed.get(k, 0), hw) for k, hw in hws.items() if landed.get(k, 0) < hw}
        if not behind:
            return
        assert time.monotonic() < deadline, f"not caught up: {sorted(behind.items())}\n{_report(everyone)}"
        time.sleep(1)


def _stop(followers: list[Follower], everyone: list[Follower]) -> None:
    for f in followers:
        f.process.send_signal(signal.SIGTERM)
    for f in followers:
        assert f.process.wait(timeout=60) == 0, _report(everyone)


def _assert_batch_ids_rise_per_partition(lake: Settings) -> None:
    """Within a partition, batch ids increase with offsets (staging's incremental filter rests on
    it) and each batch has one row: no two processes landed a partition under one id. (One batch
    id may have rows from two processes: a killed owner's partial batch, landed again by the
    processes that took its partitions, each its own.)"""
    rows = read_table(lake, "_batches", ["batch_id", "topic", "partition", "first_offset"]).to_pylist()
    by_partition: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for r in rows:
        by_partition[(r["topic"], r["partition"])].append((r["first_offset"], r["batch_id"]))
    for key, spans in by_partition.items():
        ids = [b for _, b in sorted(spans)]
        assert ids == sorted(set(ids)), f"{key}: batch ids do not rise with offsets, or repeat: {ids[:10]}"


def test_processes_share_partitions_through_kills_and_scaling_exactly_once(shared, tmp_path):
    """Three processes, one killed mid-batch, a fourth started, down to one, back up to two —
    all while records are produced (40 s at 3,000 records/s); each step once the group has settled."""
    lake, env = shared
    args = ("--batch-size", "2000", "--flush-interval", "2")
    followers = [Follower(env, tmp_path, *args) for _ in range(3)]
    everyone = list(followers)
    first_three = {f.pid for f in followers}
    _wait_settled(lake, followers, everyone)  # (Tansu's first join takes half the session timeout)
    producer = _produce(lake, tmp_path, 120_000, 7, rate=3_000)
    try:
        time.sleep(3)
        victim = followers.pop(1)
        victim.process.send_signal(signal.SIGKILL)  # mid-batch: batches close every 1.2 s
        victim.process.wait()
        followers.append(Follower(env, tmp_path, *args))
        everyone.append(followers[-1])
        _wait_settled(lake, followers, everyone)  # the victim's partitions moved (after its session timed out)
        while len(followers) > 1:  # scale down to one, a process at a time: each commits what it holds, then goes
            _stop([followers.pop()], everyone)
            _wait_settled(lake, followers, everyone)
        followers.append(Follower(env, tmp_path, *args))  # and back up to two
        everyone.append(followers[-1])
        _wait_settled(lake, followers, everyone)
    finally:
        assert producer.wait(timeout=300) == 0, (tmp_path / "simulate.log").read_text()
    _wait_caught_up(lake, followers, 120, everyone)
    # `status` names each partition's owner: the process whose log says it holds it
    holders = {key: f"{socket.gethostname()}:{f.pid}" for f in followers for key in f.owned()}
    assert {(r.topic, r.partition): r.owner for r in partition_status(lake)} == holders
    _stop(followers, everyone)
    assert {r.owner for r in partition_status(lake)} == {None}, "a clean stop gives every partition up"
    assert_exactly_once(lake)
    _assert_batch_ids_rise_per_partition(lake)
    # Each take of partitions is a fence commit naming its process ("host:pid") in the table's history.
    takers = {
        int(h["tradelake.owner"].rsplit(":", 1)[1])
        for h in open_table(lake, "_batches").history()
        if h.get("tradelake.operation") == "fence"
    }
    assert first_three <= takers, f"not all three first processes took partitions: {first_three - takers}"


def test_a_paused_process_commits_nothing_after_its_partitions_moved(shared, tmp_path):
    lake, env = shared
    # The zombie holds what it consumes for 12 s before its batch closes (flush interval 20 s).
    zombie = Follower(env, tmp_path, "--flush-interval", "20")
    producer = _produce(lake, tmp_path, 5_000, 3)
    assert producer.wait(timeout=120) == 0, (tmp_path / "simulate.log").read_text()
    zombie.wait_consumed(sum(high_watermarks(lake, _partitions(lake)).values()))
    assert len(read_table(lake, "_batches", ["batch_id"])) == 0, "the zombie committed before it was paused"
    zombie.process.send_signal(signal.SIGSTOP)
    try:
        owner = Follower(env, tmp_path, "-q", "--flush-interval", "2")
        _wait_caught_up(lake, [owner], 90, [owner])  # past the zombie's session timeout: all moved
        versions = {t: open_table(lake, t).version() for t in ("_batches", "_quarantine", *TOPIC_NAMES)}
    finally:
        zombie.process.send_signal(signal.SIGCONT)
    assert zombie.process.wait(timeout=150) != 0, zombie.report()
    errors = [line for line in zombie.log.read_text().splitlines() if line.startswith("tradelake: error:")]
    assert len(errors) == 1 and errors[0].startswith("tradelake: error: refusing to commit"), zombie.report()
    assert {t: open_table(lake, t).version() for t in versions} == versions, "the zombie committed"
    _stop([owner], [zombie, owner])
    assert_exactly_once(lake)
    _assert_batch_ids_rise_per_partition(lake)


def test_a_second_consumer_group_on_one_lake_is_refused(lake):
    first = run_cli("ingest", "--once", "-q", env=_env(lake, "group-a"), settings=lake)
    assert first.returncode == 0, first.stderr
    second = run_cli("ingest", "--once", "-q", env=_env(lake, "group-b"), settings=lake)
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "landed by consumer group 'group-a', not 'group-b'" in lines[0], lines
