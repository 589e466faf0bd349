"""The committing side of landing: route each batch, then commit it to the lake, in order.

Two batches are routed at once (routing releases the GIL: one batch's single-threaded steps
fill the core the other leaves idle), but one thread commits, strictly in batch order, and
commits a batch as soon as it is routed — never waiting for the next one, so a quiet stream's
records are committed within the flush interval.

A batch is committed table by table: each topic table that has rows of it, then
``_quarantine``, then ``_batches`` last. Each commit records, for every partition it covers,
the batch's last offset as a Delta application transaction in that table's own log. The
resume point of a partition is what ``_batches`` committed; after a crash between two of a
batch's commits, the batch is consumed and routed again and each table keeps only the rows
past its own recorded offset — so every record ends up exactly once in the lake.

Each ``_batches`` row also records where the batch's consumption of the partition began
(``start_offset``: the previous batch's last offset + 1, or the resume point), so its range
``start_offset…last_offset`` tiles the partition with the other batches' even where offsets
hold no record (transaction markers, aborted or compacted records): the audit mart checks the
tiling, and counts the offsets without a record as gaps, not as loss. Offsets that had expired
before the run read them (below the low watermark at its start: ``stream.expired_before_read``)
are loss: the partition's first batch of the run records them as ``expired_offsets``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import TopicContracts
from pipelines.lake.schemas import BATCHES_SCHEMA, BATCHES_TABLE, QUARANTINE_SCHEMA, QUARANTINE_TABLE
from pipelines.lake.tables import Covered, DataFile, Lake, Position, app_id
from pipelines.landing.allocators import release_cached_memory
from pipelines.landing.consumer import RecordBuffer
from pipelines.landing.ownership import Taken
from pipelines.landing.router import RawRecords, Routed, TopicRouter
from pipelines.landing.stats import IngestStats
from pipelines.landing.stream import Expired, record_sha256
from pipelines.landing.validation import validation_summary

BATCHES_IN_FLIGHT = 2
TOPIC_WORKERS = 2


@dataclass
class PartitionRange:
    first: int
    last: int
    records: int
    last_record_sha256: str


@dataclass
class TopicBatch:
    """One topic's share of a routed batch: its offset ranges and how its records went.

    The rows themselves are written to data files as soon as they are routed; a batch waiting
    for its commit holds only these counts and the files' add actions.
    """

    topic: str
    ranges: dict[int, PartitionRange]
    landed: Counter  # rows per partition
    quarantined: Counter
    tombstones: Counter
    failures: dict[tuple[str | None, str], int]
    validation: dict[str, object]

    @property
    def records(self) -> int:
        return sum(r.records for r in self.ranges.values())

    def counts(self) -> dict[str, int]:
        """How its records went: records = landed + quarantined + tombstones."""
        return {
            "records": self.records,
            "landed": sum(self.landed.values()),
            "quarantined": sum(self.quarantined.values()),
            "tombstones": sum(self.tombstones.values()),
        }


@dataclass
class PendingCommit:
    """Data files written for one table, and the offsets their commit will record."""

    table: str
    files: list[DataFile]
    covered: list[Covered]


@dataclass
class RoutedBatch:
    batch_id: int
    ingested_at: datetime
    starts: dict[Position, int] = field(default_factory=dict)  # where consumption of each partition began
    topics: dict[str, TopicBatch] = field(default_factory=dict)
    pending: list[PendingCommit] = field(default_factory=list)  # topic tables, then quarantine, then _batches


def partition_ranges(records: RawRecords) -> dict[int, PartitionRange]:
    """Per partition: the offset range, the record count and the hash of the last record.

    Within a partition the buffer holds records in offset order, so a partition's first and
    last rows are its lowest and highest offsets.
    """
    table = records.table
    out = {}
    for p in pc.unique(table["partition"]).to_pylist():
        rows = pc.indices_nonzero(pc.equal(table["partition"], p))
        first, last = rows[0].as_py(), rows[-1].as_py()
        out[p] = PartitionRange(
            table["offset"][first].as_py(),
            table["offset"][last].as_py(),
            len(rows),
            record_sha256(table["key"][last].as_py(), table["value"][last].as_py()),
        )
    return out


class Committer(threading.Thread):
    """Routes the batches it is handed and commits them to the lake, one at a time, in order."""

    def __init__(
        self,
        lake: Lake,
        routers: dict[str, TopicRouter],
        contracts: dict[str, TopicContracts],
        topic_ids: dict[str, str],
        committed: dict[str, dict[str, int]],
        first_batch: int,
        stats: IngestStats,
        on_commit: Callable[[RoutedBatch, dict[Position, int], float], None],
        expired: Mapping[Position, Expired] | None = None,
        reserve: Callable[[], tuple[int, int]] | None = None,
    ) -> None:
        super().__init__(name="tradelake-committer", daemon=True)
        self.lake = lake
        self.routers = routers
        self.contracts = contracts
        self.topic_ids = topic_ids
        self.committed = committed  # per table: app_id -> last offset it has committed
        self.next_batch = first_batch
        # The last id of the block of batch ids reserved (``ownership``); None: ids are not
        # shared with other processes (tests committing batches of their own).
        self.last_batch: int | None = None
        self.reserve = reserve  # reserves the next block when this one is used up
        self.epochs: dict[Position, int] = {}  # this process's ownership epoch per partition (absent: 0)
        self.next_start: dict[Position, int] = {}  # per partition: the next batch's start_offset
        self.in_flight = 0  # batches handed over and not committed (or failed) yet
        self.settled = threading.Condition()
        self.stats = stats
        self.on_commit = on_commit
        self.expired = dict(expired or {})  # per partition: offsets gone before this run read them
        self.slots = threading.BoundedSemaphore(BATCHES_IN_FLIGHT)
        self.queue: queue.SimpleQueue[Future[RoutedBatch] | None] = queue.SimpleQueue()
        self.error: BaseException | None = None

    # -- the consuming thread's side ------------------------------------------------------

    def submit(self, buffer: RecordBuffer, batch_id: int | None = None) -> None:
        """Hand a batch over once fewer than BATCHES_IN_FLIGHT are routed and not committed.

        The batch waits for a slot in the caller's thread, not in a queue: consuming is ~3x
        faster than landing, so a queued batch would only hold memory. ``batch_id``: land it
        as that batch (a previous owner's partial batch, ``Taken.partial``), not the next id.
        """
        while not self.slots.acquire(timeout=0.5):
            self.raise_if_failed()
        if self.error is not None:
            self.slots.release()
            self.raise_if_failed()
        if batch_id is None:
            if self.last_batch is not None and self.next_batch > self.last_batch and self.reserve is not None:
                self.next_batch, self.last_batch = self.reserve()
            batch_id = self.next_batch
            self.next_batch += 1
        starts = self._starts(buffer.last_offsets)
        topics = buffer.take_topics()
        with self.settled:
            self.in_flight += 1
        self.queue.put(_batch_pool().submit(self.route, topics, batch_id, starts))

    def adopt(self, taken: Taken, expired: Mapping[Position, Expired] | None = None) -> None:
        """Partitions this process has just taken (``Ownership.take``): commit them under their
        new epochs, from the offsets the tables hold now, with ids of the block just reserved;
        ``expired``: their offsets gone before this process could read them (``stream``).

        Called by the consuming thread between batches (the rebalance callback), so no batch
        being assembled holds records of these partitions.
        """
        for table, have in taken.committed.items():
            self.committed.setdefault(table, {}).update(have)
        for key, epoch in taken.epochs.items():
            self.epochs[key] = epoch
            self.next_start.pop(key, None)  # a partition taken back begins at the tables' resume point
        self.expired.update(expired or {})
        self.next_batch, self.last_batch = taken.first_batch, taken.last_batch

    def release(self, keys: list[Position]) -> dict[Position, int]:
        """Partitions given up (after ``drain``): nothing of them is in flight any more.
        Returns the epochs they were committed under."""
        for key in keys:
            self.next_start.pop(key, None)
        return {key: self.epochs.pop(key) for key in keys if key in self.epochs}

    def drain(self) -> None:
        """Wait until every batch handed over is committed (re-raising a failure)."""
        with self.settled:
            while self.in_flight and self.error is None:
                self.settled.wait(0.5)
        self.raise_if_failed()

    def _starts(self, last_offsets: dict[Position, int]) -> dict[Position, int]:
        """Where a batch's consumption of each of its partitions began, in submission order.

        Batch n+1 begins right after batch n's last offset, committed or still in flight; a
        partition's first batch of the run begins after what ``_batches`` committed (its
        resume point), or at 0 for a new stream.
        """
        resumed = self.committed.get(BATCHES_TABLE, {})
        starts = {}
        for (topic, partition), last in last_offsets.items():
            after = resumed.get(app_id(topic, self.topic_ids[topic], partition), -1) + 1
            starts[(topic, partition)] = self.next_start.get((topic, partition), after)
            self.next_start[(topic, partition)] = last + 1
        return starts

    def finish(self) -> None:
        """Commit what was handed over, then stop."""
        if self.is_alive():
            self.queue.put(None)
            self.join()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error

    # -- this thread ----------------------------------------------------------------------

    def run(self) -> None:
        while (future := self.queue.get()) is not None:
            try:
                routed = future.result()
                if self.error is None:
                    self.commit(routed)
            except BaseException as e:  # handed to the consuming thread, which re-raises it
                self.error = self.error or e
            finally:
                del future
                self.slots.release()
                with self.settled:
                    self.in_flight -= 1
                    self.settled.notify_all()

    def route(self, topics: dict[str, RawRecords], batch_id: int, starts: dict[Position, int]) -> RoutedBatch:
        """Route one batch and write its data files; nothing is visible until ``commit``.

        ``starts``: where the batch's consumption of each partition began (``_starts``).
        """
        now = datetime.now(UTC)

        def route_topic(topic: str) -> tuple[TopicBatch, pa.Table, PendingCommit | None]:
            records = topics.pop(topic)  # released once routed, not when the whole batch is
            routed = self.routers[topic].route(records, batch_id, now)
            batch = _topic_batch(topic, records, routed, self.contracts[topic])
            pending = self._write(topic, routed.landed, [batch]) if len(routed.landed) else None
            release_cached_memory()
            return batch, routed.quarantined, pending

        order = list(topics)
        # The largest topic first, so the small ones fill the gaps it leaves.
        largest_first = sorted(topics, key=lambda t: -len(topics[t]))
        done = dict(zip(largest_first, _topic_pool().map(route_topic, largest_first), strict=True))
        routed = RoutedBatch(batch_id, now, starts, {t: done[t][0] for t in order})
        routed.pending = [p for t in order if (p := done[t][2]) is not None]
        quarantined = [(done[t][0], done[t][1]) for t in order if len(done[t][1])]
        if quarantined:
            rows = pa.concat_tables([rows for _, rows in quarantined]).cast(QUARANTINE_SCHEMA)
            if pending := self._write(QUARANTINE_TABLE, rows, [b for b, _ in quarantined]):
                routed.pending.append(pending)
        if pending := self._write(BATCHES_TABLE, self._batch_rows(routed), list(routed.topics.values())):
            routed.pending.append(pending)
        return routed

    def commit(self, batch: RoutedBatch) -> None:
        """Commit the topic tables (concurrently), then the quarantine, then ``_batches``."""
        started = time.monotonic()
        metadata = {"tradelake.batch_id": str(batch.batch_id)}
        topic_tables = [p for p in batch.pending if p.table not in (QUARANTINE_TABLE, BATCHES_TABLE)]
        list(_topic_pool().map(lambda p: self._commit(p, metadata), topic_tables))
        for p in batch.pending:
            if p.table in (QUARANTINE_TABLE, BATCHES_TABLE):
                self._commit(p, metadata)
        positions = {}
        for t in batch.topics.values():
            self.stats.add(t)
            for p, r in t.ranges.items():
                positions[(t.topic, p)] = r.last + 1
                first = self.stats.offsets.get((t.topic, p), (r.first, 0))[0]
                self.stats.offsets[(t.topic, p)] = (first, r.last)
        self.stats.batches += 1
        seconds = time.monotonic() - started
        self.stats.commit_seconds += seconds
        self.on_commit(batch, positions, seconds)

    def _commit(self, pending: PendingCommit, metadata: dict[str, str]) -> None:
        self.lake.commit_files(pending.table, pending.files, pending.covered, metadata)
        have = self.committed.setdefault(pending.table, {})
        for c in pending.covered:
            have[c.app_id] = c.last

    def _write(self, table: str, rows: pa.Table, topics: list[TopicBatch]) -> PendingCommit | None:
        """Write the rows past what ``table`` has committed; None when it has them all."""
        have = self.committed.get(table, {})
        covered = []
        after: dict[Position, int] = {}
        for t in topics:
            for p, r in t.ranges.items():
                a = app_id(t.topic, self.topic_ids[t.topic], p)
                done = have.get(a, -1)
                if r.last > done:
                    covered.append(Covered(a, max(r.first, done + 1), r.last, self.epochs.get((t.topic, p), 0)))
                if done >= r.first:
                    after[(t.topic, p)] = done
        if not covered:
            return None
        if after:  # only after a crash between a batch's commits: drop what the table has
            rows = _rows_after(rows, after, table == BATCHES_TABLE)
        return PendingCommit(table, self.lake.write_files(table, rows) if len(rows) else [], covered)

    def _batch_rows(self, batch: RoutedBatch) -> pa.Table:
        rows = []
        for t in batch.topics.values():
            validation = orjson.dumps(t.validation).decode()
            for p, r in sorted(t.ranges.items()):
                start = batch.starts[(t.topic, p)]
                gone = self.expired.get((t.topic, p))
                rows.append(
                    {
                        "batch_id": batch.batch_id,
                        "topic": t.topic,
                        "topic_id": self.topic_ids[t.topic],
                        "partition": p,
                        "start_offset": start,
                        # the run's first batch of the partition, the one that began where they were
                        "expired_offsets": gone.count if gone is not None and gone.start == start else 0,
                        "first_offset": r.first,
                        "last_offset": r.last,
                        "records": r.records,
                        "landed": t.landed[p],
                        "quarantined": t.quarantined[p],
                        "tombstones": t.tombstones[p],
                        "last_record_sha256": r.last_record_sha256,
                        "validation": validation,
                        "ingested_at": batch.ingested_at,
                        "_ingest_date": batch.ingested_at.date(),
                    }
                )
        return pa.Table.from_pylist(rows, schema=BATCHES_SCHEMA)


def _topic_batch(topic: str, records: RawRecords, routed: Routed, contracts: TopicContracts) -> TopicBatch:
    return TopicBatch(
        topic=topic,
        landed=Counter(routed.landed["_partition"].to_pylist()),
        quarantined=Counter(routed.quarantined["_partition"].to_pylist()),
        ranges=partition_ranges(records),
        tombstones=Counter(routed.tombstone_partitions),
        failures=routed.failures,
        validation=validation_summary(contracts, routed),
    )


def _rows_after(rows: pa.Table, after: dict[Position, int], is_batches: bool) -> pa.Table:
    """The rows whose (topic, partition) offset is past what the table has committed.

    A ``_batches`` row covers a range; the resume point is what ``_batches`` committed, so
    its rows are never partly committed: such a row is dropped whole.
    """
    topic, partition, offset = (
        ("topic", "partition", "last_offset") if is_batches else ("_topic", "_partition", "_offset")
    )
    keep = pa.array([True] * len(rows))
    for (t, p), done in after.items():
        mine = pc.and_(pc.equal(rows[topic], t), pc.equal(rows[partition], p))
        keep = pc.and_(keep, pc.invert(pc.and_(mine, pc.less_equal(rows[offset], done))))
    return rows.filter(keep)


@cache
def _batch_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="tradelake-batch")


@cache
def _topic_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=TOPIC_WORKERS, thread_name_prefix="tradelake-topic")
