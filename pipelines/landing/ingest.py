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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType

import pyarrow as pa
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from pipelines import kafka, pii_key
from pipelines.catalog import TOPIC_NAMES
from pipelines.contracts import load_contracts
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    OWNERS_SCHEMA,
    OWNERS_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    STREAMS_SCHEMA,
    STREAMS_TABLE,
)
from pipelines.lake.tables import Lake, Position, app_id
from pipelines.landing import stream
from pipelines.landing.allocators import tune_allocators
from pipelines.landing.committer import Committer, RoutedBatch
from pipelines.landing.consumer import ConsumeLoop, commit_group_offsets, log_failed_commit, read_ranges
from pipelines.landing.ownership import Ownership
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
    """What the lake records of the streams, read once at start."""

    topic_ids: dict[str, str]  # the stream each topic is read from


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
        # Followers of one group share the home; --once takes every partition, so it waits for none.
        with exclusive(self.settings, shared=follow):
            pii_key.verify(self.lake, self.pii_key, _next_batch_id(self.lake))  # before anything is written
            self._ensure_tables()
            self._claim_group()
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
        self.lake.ensure(OWNERS_TABLE, OWNERS_SCHEMA)

    def _claim_group(self) -> None:
        """Refuse a lake landed by another consumer group; record this one at the lake's first landing.

        Two groups would each be assigned every partition, and each process would fence the
        other's partitions in turn: landing would stall. The group is a property of ``_batches``
        (a commit of its own, so two first landings of different groups cannot both record theirs).
        """
        group = self.settings.consumer_group
        for _ in range(3):
            recorded = self.lake.property(BATCHES_TABLE, GROUP_PROPERTY)
            if recorded is not None and recorded != group:
                raise TradelakeError(
                    f"the lake at {self.settings.lake.url} is landed by consumer group {recorded!r}, not {group!r} "
                    "(TRADELAKE_CONSUMER_GROUP): set the lake's group, or land into another lake"
                )
            if recorded == group or self.lake.set_property(BATCHES_TABLE, GROUP_PROPERTY, group):
                return
        raise TradelakeError(f"could not record consumer group {group!r} in {self.lake.uri(BATCHES_TABLE)}")

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
        """The streams; check the cluster still has the records the lake committed last."""
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
        committed = self.lake.committed(BATCHES_TABLE, list(app_ids.values()))
        resumed = {k: committed[a] for k, a in app_ids.items() if a in committed}
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
        return LakeState(topic_ids=topic_ids)

    def _consume(self, follow: bool, should_stop: Callable[[], bool]) -> None:
        """Consume and commit: once, every partition (taken over from any other process);
        following, the partitions the consumer group assigns this process, taken as assigned."""
        partitions = self._partitions()
        state = self._lake_state(partitions)
        keys = [(t, p) for t, n in partitions.items() for p in range(n)]
        watch = stream.StreamWatch(
            self.settings, {t: stream.RecordedStream(state.topic_ids[t], n) for t, n in partitions.items()}
        )
        consumer = kafka.consumer(self.settings, group=follow, on_commit=log_failed_commit, error_cb=watch.on_error)
        # Positions of committed batches, for the consumer group: committed by the consuming
        # thread, which owns the consumer (a commit from another thread waits for consume()).
        committed: queue.SimpleQueue[dict[Position, int]] = queue.SimpleQueue()
        ownership = Ownership(self.lake, state.topic_ids)
        committer = Committer(
            self.lake,
            self.routers,
            self.contracts,
            state.topic_ids,
            {},  # what the tables hold and the batch ids: read and reserved as partitions are taken
            0,
            self.stats,
            lambda batch, positions, seconds: (committed.put(positions), self.on_batch(batch, seconds)),
            reserve=ownership.reserve,
        )
        committer.start()
        try:
            loop = ConsumeLoop(
                consumer,
                [],
                {},
                {},
                self.batch_size,
                self.flush_interval * BATCH_WAIT_SHARE,
                check_stream=watch if follow else lambda: None,
                on_lag=self.on_lag,
            )

            def take(taking: list[Position]) -> list[TopicPartition]:
                # Where each partition ends now, read from the cluster while the lake is read (~0.3 s each).
                with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tradelake-watermarks") as pool:
                    ends = pool.submit(high_watermarks, self.settings, taking)
                    taken = ownership.take(taking)
                expired = self._expired(taken.positions)
                committer.adopt(taken, expired)
                # From where the broker still holds records: no out-of-range fetch and reset to earliest.
                begin = {
                    k: expired[k].low if k in expired else taken.positions.get(k, OFFSET_BEGINNING) for k in taking
                }
                begin.update(self._land_partial(committer, taken.partial, begin))
                loop.add_partitions(taking, {k: max(v, 0) for k, v in begin.items()}, ends.result())
                return [TopicPartition(t, p, begin[(t, p)]) for t, p in taking]

            def on_assign(consumer: Consumer, assigned: list[TopicPartition]) -> None:
                if assigned:
                    starts = take([(tp.topic, tp.partition) for tp in assigned])
                    consumer.incremental_assign(starts)
                    log.info("assigned %s", _partition_list(starts))

            def on_revoke(consumer: Consumer, revoked: list[TopicPartition]) -> None:
                """Commit everything consumed of the revoked partitions before they go: the next
                owner resumes from the tables, so nothing is committed after it may have started
                (and should this process be too late, its fenced commits are refused)."""
                giving_up = [(tp.topic, tp.partition) for tp in revoked]
                loop.flush(committer.submit)
                committer.drain()
                loop.settle(consumer, committed)
                loop.remove_partitions(giving_up)
                ownership.release(committer.release(giving_up))
                consumer.incremental_unassign(revoked)
                log.info("revoked %s", _partition_list(revoked))

            if follow:
                consumer.subscribe(list(partitions), on_assign=on_assign, on_revoke=on_revoke, on_lost=on_revoke)
            else:
                consumer.assign(take(keys))
            loop.run(follow, should_stop, committer.submit, committed, committer.raise_if_failed)
            committer.finish()
            committer.raise_if_failed()
            if not follow:
                ownership.release(committer.release(keys))
            while not committed.empty():
                loop.landed.update(committed.get_nowait())
            commit_group_offsets(consumer, loop.landed, asynchronous=False)
            loop.progress.log(loop.records, f"lag {loop.uncommitted():,}")
        finally:
            committer.finish()
            consumer.close()

    def _land_partial(
        self, committer: Committer, partial: dict[Position, tuple[int, int]], begin: dict[Position, int]
    ) -> dict[Position, int]:
        """Land again, as the same batches, what a previous owner committed to some tables but not
        to ``_batches`` (``Taken.partial``); returns where consuming those partitions goes on."""
        batches: dict[int, dict[Position, tuple[int, int]]] = {}
        for key, (batch_id, last) in partial.items():
            batches.setdefault(batch_id, {})[key] = (max(begin[key], 0), last)
        if not batches:
            return {}
        reader = kafka.consumer(self.settings)
        try:
            for batch_id, ranges in sorted(batches.items()):
                log.info("landing batch %d again (committed in part by a previous owner): %s", batch_id, ranges)
                committer.submit(read_ranges(reader, ranges), batch_id=batch_id)
        finally:
            reader.close()
        return {key: last + 1 for key, (_, last) in partial.items()}

    def _expired(self, resumed: dict[Position, int]) -> dict[Position, stream.Expired]:
        """Partitions taken whose records from their resume point on expired (retention) before
        landing read them. Only a partition the lake already holds can lose records this way: a
        new stream starts where the broker's records start (a lake is not the topic's history)."""
        if not resumed:
            return {}
        expired = stream.expired_before_read(resumed, stream.low_watermarks(self.settings, list(resumed)))
        for (topic, partition), gone in sorted(expired.items()):
            log.warning(
                "%s[%d]: offsets %d-%d expired (retention) before landing read them: %d offset(s) lost to the lake, "
                "recorded in _batches.expired_offsets (audit.ingestion_completeness fails on them)",
                *(topic, partition, gone.start, gone.low - 1, gone.count),
            )
        return expired


def _partition_list(partitions: list[TopicPartition]) -> str:
    """``fleet.gps[0]@548, …`` (the offset when one is set): what a rebalance moved, for the log."""
    return ", ".join(f"{tp.topic}[{tp.partition}]" + (f"@{tp.offset}" if tp.offset >= 0 else "") for tp in partitions)


def _next_batch_id(lake: Lake) -> int:
    """Above every batch id committed or reserved: the id a key rotation starts from."""
    return lake.last_batch_id() + 1


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
GROUP_PROPERTY = "tradelake.consumerGroup"  # the consumer group that lands the lake, on ``_batches``


@contextlib.contextmanager
def exclusive(settings: Settings, shared: bool = False) -> Iterator[None]:
    """The home's landing lock: held shared by every landing process, exclusively by what must
    not run while any lands (a key rotation).

    Landing processes of one consumer group share it: which of them commits a partition is
    decided in the lake (``ownership``), not by the lock. The lock file names its (last) holder
    (pid and command), so that whoever finds the lake taken — a key rotation, or the Dagster lag
    sensor while ``tradelake run`` lands — can say who.
    """
    home = settings.home
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
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
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # taken by no holder, shared or not
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
