"""Landing: Kafka topics into the lake's Delta tables, exactly once.

This module wires the parts: it prepares the lake (tables, the streams it was fed from, the
offsets every table has committed), starts the committer (committer.py: routes and commits
batches in order) and runs the consume loop (consumer.py) from the lake's own offsets.
Memory is bounded by the batch size, whatever the backlog.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import queue
import signal
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from pipelines import kafka, pii_key
from pipelines.catalog import TOPIC_NAMES
from pipelines.contracts import load_contracts
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    STREAMS_SCHEMA,
    STREAMS_TABLE,
)
from pipelines.lake.tables import Lake, Position, app_id
from pipelines.landing import stream
from pipelines.landing.allocators import tune_allocators
from pipelines.landing.committer import Committer, RoutedBatch
from pipelines.landing.consumer import ConsumeLoop, commit_group_offsets, log_failed_commit
from pipelines.landing.router import TopicRouter
from pipelines.landing.stats import IngestStats
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks

log = logging.getLogger("tradelake")

FLUSH_INTERVAL = 5.0  # seconds: every consumed record is committed within this
# A batch closes when its oldest record has waited this share of the flush interval,
# leaving the rest for routing and committing it.
BATCH_WAIT_SHARE = 0.6
# Folders of the lake layout before Delta tables (a manifest per batch under _ledger/).
OLD_LAYOUT = ("_ledger", "landing")


@dataclass
class LakeState:
    """What the lake has committed, read once at start."""

    topic_ids: dict[str, str]  # the stream each topic is read from
    committed: dict[str, dict[str, int]]  # per table: app_id -> last committed offset
    positions: dict[Position, int]  # per partition: the next offset to land
    next_batch: int


class Lander:
    """Lands micro-batches into one lake."""

    def __init__(
        self,
        settings: Settings,
        batch_size: int = 50_000,
        flush_interval: float = FLUSH_INTERVAL,
        topics: Iterable[str] | None = None,
        reset_topics: Iterable[str] = (),
        on_batch: Callable[[RoutedBatch, float], None] = lambda batch, seconds: None,
        on_lag: Callable[[dict[Position, int]], None] = lambda lag: None,
    ) -> None:
        self.settings = settings
        self.topics = tuple(topics) if topics is not None else TOPIC_NAMES
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.reset_topics = set(reset_topics)
        self.on_batch = on_batch  # told of every committed batch and how long its commit took
        self.on_lag = on_lag
        unknown = self.reset_topics - set(TOPIC_NAMES)
        if unknown:
            raise TradelakeError(f"--reset-topic: unknown topic {sorted(unknown)[0]!r}")
        assert settings.lake is not None
        self.lake = Lake(settings.lake)
        self.pii_key = settings.personal_data_key()
        self.contracts = load_contracts()
        self.routers = {t: TopicRouter(tc, self.pii_key) for t, tc in self.contracts.items()}
        self.stats = IngestStats()

    def run(self, follow: bool, should_stop: Callable[[], bool] = lambda: False) -> IngestStats:
        tune_allocators()
        _refuse_old_layout(self.settings)
        with exclusive(self.settings):
            pii_key.verify(self.lake, self.pii_key, _next_batch_id(self.lake))  # before anything is written
            self._ensure_tables()
            started = time.monotonic()
            try:
                self._consume(follow, should_stop)
            finally:
                self.stats.seconds = time.monotonic() - started
            return self.stats

    def _ensure_tables(self) -> None:
        for topic, router in self.routers.items():
            self.lake.ensure(topic, router.schema)
        self.lake.ensure(QUARANTINE_TABLE, QUARANTINE_SCHEMA)
        self.lake.ensure(BATCHES_TABLE, BATCHES_SCHEMA)
        self.lake.ensure(STREAMS_TABLE, STREAMS_SCHEMA)

    def _partitions(self) -> dict[str, int]:
        """Partition counts of the landed topics that exist on the cluster."""
        client = kafka.admin(self.settings)
        kafka.check_reachable(client, self.settings)
        metadata = client.list_topics(timeout=10).topics
        found = {}
        for name in self.topics:
            if name not in metadata:
                log.warning("topic %s does not exist yet; skipping it", name)
                continue
            found[name] = len(metadata[name].partitions)
        return found

    def _lake_state(self, partitions: dict[str, int]) -> LakeState:
        """The streams, and every table's committed offsets; check the cluster still has them."""
        identities = stream.topic_identities(self.settings, list(partitions))
        recorded = stream.recorded_streams(self.lake)
        adopted = []
        for topic, identity in identities.items():
            if topic not in recorded:
                adopted.append((topic, identity, "first seen"))
            elif topic in self.reset_topics:
                adopted.append((topic, identity, f"reset: was topic ID {recorded[topic].topic_id}"))
        topic_ids = {t: r.topic_id for t, r in recorded.items()} | {t: i.topic_id for t, i, _ in adopted}
        app_ids = {
            (t, p): app_id(t, topic_ids[t], p) for t, n in partitions.items() if t in topic_ids for p in range(n)
        }
        every = list(app_ids.values())
        committed = {t: self.lake.committed(t, [a for (u, _), a in app_ids.items() if u == t]) for t in partitions}
        committed |= {t: self.lake.committed(t, every) for t in (QUARANTINE_TABLE, BATCHES_TABLE)}
        resumed = {k: committed[BATCHES_TABLE][a] for k, a in app_ids.items() if a in committed[BATCHES_TABLE]}
        kept = {t: r for t, r in recorded.items() if t in identities and t not in self.reset_topics}
        stream.verify(self.settings, kept, identities, resumed, self.lake)
        if adopted:
            now = datetime.now(UTC)
            rows = [
                {"topic": t, "topic_id": i.topic_id, "partitions": i.partitions, "since": now, "reason": why}
                for t, i, why in adopted
            ]
            self.lake.append(STREAMS_TABLE, pa.Table.from_pylist(rows, schema=STREAMS_SCHEMA), [])
            for t, _, why in adopted:
                if why != "first seen":
                    log.warning("%s: landing a new stream beside the old one (%s)", t, why)
        return LakeState(
            topic_ids=topic_ids,
            committed=committed,
            positions={k: v + 1 for k, v in resumed.items()},
            next_batch=_next_batch_id(self.lake),
        )

    def _consume(self, follow: bool, should_stop: Callable[[], bool]) -> None:
        partitions = self._partitions()
        state = self._lake_state(partitions)
        keys = [(t, p) for t, n in partitions.items() for p in range(n)]
        watch = stream.StreamWatch(
            self.settings, {t: stream.RecordedStream(state.topic_ids[t], n) for t, n in partitions.items()}
        )
        # Only a partition the lake already holds can lose records to retention: a new stream
        # starts where the broker's records start (a lake is not the topic's history before it).
        resumed = {k: state.positions[k] for k in keys if k in state.positions}
        expired = stream.expired_before_read(resumed, stream.low_watermarks(self.settings, keys))
        for (topic, partition), gone in sorted(expired.items()):
            log.warning(
                "%s[%d]: offsets %d-%d expired (retention) before landing read them: %d offset(s) lost to the lake, "
                "recorded in _batches.expired_offsets (audit.ingestion_completeness fails on them)",
                *(topic, partition, gone.start, gone.low - 1, gone.count),
            )
        # From where the broker still holds records: no out-of-range fetch and reset to earliest.
        begin = {k: expired[k].low if k in expired else state.positions.get(k, OFFSET_BEGINNING) for k in keys}
        assignment = [TopicPartition(t, p, begin[(t, p)]) for t, p in keys]
        consumer = kafka.consumer(self.settings, on_commit=log_failed_commit, error_cb=watch.on_error)
        # Positions of committed batches, for the consumer group: committed by the consuming
        # thread, which owns the consumer (a commit from another thread waits for consume()).
        committed: queue.SimpleQueue[dict[Position, int]] = queue.SimpleQueue()
        committer = Committer(
            self.lake,
            self.routers,
            self.contracts,
            state.topic_ids,
            state.committed,
            state.next_batch,
            self.stats,
            lambda batch, positions, seconds: (committed.put(positions), self.on_batch(batch, seconds)),
            expired=expired,
        )
        committer.start()
        try:
            targets = high_watermarks(self.settings, keys)
            consumer.assign(assignment)
            loop = ConsumeLoop(
                consumer,
                assignment,
                targets,
                {k: max(begin[k], 0) for k in keys},
                self.batch_size,
                self.flush_interval * BATCH_WAIT_SHARE,
                check_stream=watch if follow else lambda: None,
                on_lag=self.on_lag,
            )
            loop.run(follow, should_stop, committer.submit, committed)
            committer.finish()
            committer.raise_if_failed()
            while not committed.empty():
                loop.landed.update(committed.get_nowait())
            commit_group_offsets(consumer, loop.landed, asynchronous=False)
            loop.progress.log(loop.records, f"lag {loop.uncommitted():,}")
        finally:
            committer.finish()
            consumer.close()


def _next_batch_id(lake: Lake) -> int:
    table = lake.read(BATCHES_TABLE, ["batch_id"])
    if table is None or not len(table):
        return 1
    return int(pc.max(table["batch_id"]).as_py()) + 1


def _refuse_old_layout(settings: Settings) -> None:
    """A lake in the layout before Delta tables is refused: its files are not Delta tables."""
    old = [settings.home / d for d in OLD_LAYOUT if (settings.home / d).is_dir()]
    if old:
        raise TradelakeError(
            f"{settings.home} holds a lake in the old Parquet + ledger layout ({old[0].name}/), which is not read "
            "any more: land into a new TRADELAKE_HOME (the topics are replayed from Kafka), or remove "
            f"{', '.join(d.name + '/' for d in old)} from it"
        )


LOCK_FILE = "landing.lock"


@contextlib.contextmanager
def exclusive(settings: Settings) -> Iterator[None]:
    """One landing process per lake: a second one would land the same offsets twice.

    The lock file names its holder (pid and command), so that whoever finds the lake taken —
    another ``ingest``, or the Dagster lag sensor while ``tradelake run`` owns it — can say who.
    """
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise TradelakeError(f"another landing process owns {home}: {_holder(lock.read())}") from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()} {' '.join(['tradelake', *sys.argv[1:2]])}\n")
        lock.flush()
        yield


def landing_owner(settings: Settings) -> str | None:
    """Who holds the lake's landing lock now (None: nobody is landing)."""
    path = settings.home / LOCK_FILE
    try:
        lock = open(path)  # noqa: SIM115 - closed below, after the probe
    except OSError:
        return None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _holder(lock.read())
        fcntl.flock(lock, fcntl.LOCK_UN)
        return None


def _holder(text: str) -> str:
    pid, _, command = text.strip().partition(" ")
    return f"'{command}' (pid {pid})" if pid.isdigit() else "another tradelake process"


class _StopFlag:
    """Set by SIGTERM/SIGINT in --follow mode: finish the current batch, then exit cleanly."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


def ingest(
    settings: Settings,
    follow: bool = False,
    batch_size: int = 50_000,
    flush_interval: float = FLUSH_INTERVAL,
    reset_topics: Iterable[str] = (),
) -> IngestStats:
    """Land every catalog topic (once: up to the high watermarks at start; follow: until signalled)."""
    stop = _StopFlag()
    if follow:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    lander = Lander(settings, batch_size=batch_size, flush_interval=flush_interval, reset_topics=reset_topics)
    return lander.run(follow, should_stop=lambda: stop.set)
