"""The landing loop: consume, route, write, commit — one micro-batch at a time.

Exactly-once into the lake rests on three rules: (1) a batch's files are written durably
before its manifest, (2) the manifest is the commit point, (3) on start, uncommitted files
are deleted and consumption resumes at the offsets after the last manifest (see ledger.py).
Memory is bounded by the batch size, whatever the backlog.
"""

from __future__ import annotations

import gc
import logging
import queue
import signal
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from itertools import repeat
from operator import is_not
from types import FrameType

import orjson
import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES
from pipelines.contracts import load_contracts
from pipelines.errors import TradelakeError
from pipelines.landing.allocators import release_cached_memory, tune_allocators
from pipelines.landing.files import write_bytes_durably, write_parquet_durably
from pipelines.landing.ledger import Ledger, batch_file_name
from pipelines.landing.router import QUARANTINE_SCHEMA, RAW_SCHEMA, RawRecords, Routed, TopicRouter
from pipelines.landing.validation import validation_summary
from pipelines.progress import Progress
from pipelines.settings import Settings
from pipelines.watermarks import Position, high_watermarks

log = logging.getLogger("tradelake")

BATCHES_IN_FLIGHT = 2
TOPIC_WORKERS = 2


@dataclass
class IngestStats:
    """What a run landed, for the summary line, the demo and Dagster metadata."""

    records: int = 0
    landed: int = 0
    quarantined: int = 0
    tombstones: int = 0
    batches: int = 0
    bytes_written: int = 0
    seconds: float = 0.0
    per_topic: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    quarantine_rules: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))
    offsets: dict[Position, tuple[int, int]] = field(default_factory=dict)  # first, last landed

    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0

    def add(self, topic: str, outcome: _TopicOutcome) -> None:
        counts = {
            "records": outcome.records,
            "landed": outcome.landed,
            "quarantined": outcome.quarantined,
            "tombstones": outcome.tombstones,
        }
        self.records += counts["records"]
        self.landed += counts["landed"]
        self.quarantined += counts["quarantined"]
        self.tombstones += counts["tombstones"]
        self.bytes_written += outcome.bytes_written
        self.per_topic[topic].update(counts)
        for (_, rule), n in outcome.failures.items():
            self.quarantine_rules[topic][rule] += n


class _Buffer:
    """The records of the batch being assembled, per topic, as Arrow columns.

    Messages are converted as they are consumed, a consume() call at a time: a Python bytes
    object per key and value, kept until the batch lands, cost ~40% more memory than the same
    bytes in Arrow (object headers, list slots, boxed ints) and fragmented the interpreter's
    arenas (the Message objects of every consume call were interleaved with the values kept).
    """

    def __init__(self) -> None:
        self.chunks: defaultdict[str, list[pa.RecordBatch]] = defaultdict(list)
        self.size = 0
        self._topics: dict[str, RawRecords] | None = None

    def add(self, messages: list[Message]) -> dict[Position, int]:
        """Add messages without errors (see ``_messages_without_errors``); return the last
        offset added per partition."""
        if not messages:
            return {}
        topics = list(map(Message.topic, messages))
        partitions = list(map(Message.partition, messages))
        offsets = list(map(Message.offset, messages))
        columns = [
            pa.array(partitions, pa.int32()),
            pa.array(offsets, pa.int64()),
            pa.array(list(map(Message.key, messages)), pa.binary()),
            pa.array(list(map(Message.value, messages)), pa.binary()),
            pa.array(list(map(_timestamp_ms, map(Message.timestamp, messages))), pa.int64()),
        ]
        chunk = pa.record_batch(columns, schema=RAW_SCHEMA)
        names = set(topics)
        if len(names) == 1:
            self.chunks[topics[0]].append(chunk)
        else:
            topic_column = pa.array(topics, pa.string())
            for name in names:
                self.chunks[name].append(chunk.filter(pc.equal(topic_column, name)))
        self.size += len(messages)
        # Offsets rise within a partition, so the last one per partition wins.
        return dict(zip(zip(topics, partitions, strict=True), offsets, strict=True))

    @property
    def topics(self) -> dict[str, RawRecords]:
        if self._topics is None:
            # One contiguous table per topic, its slices shared by the routing queries
            # without a copy; each topic's chunks are released as soon as it is combined.
            self._topics = {}
            for t in list(self.chunks):
                chunks = self.chunks.pop(t)
                self._topics[t] = RawRecords(pa.Table.from_batches(chunks, schema=RAW_SCHEMA).combine_chunks())
                del chunks
        return self._topics


def _timestamp_ms(timestamp: tuple[int, int]) -> int:
    return timestamp[1]


def _messages_without_errors(messages: list[Message]) -> list[Message]:
    """The messages that carry a record; errors are raised (fatal) or logged."""
    errors = list(map(Message.error, messages))
    if not any(map(is_not, errors, repeat(None))):  # (KafkaError cannot be compared with ==)
        return messages
    kept = []
    for m, err in zip(messages, errors, strict=True):
        if err is None:
            kept.append(m)
        elif err.fatal():
            raise TradelakeError(f"Kafka error: {err.str()}")
        elif err.code() != KafkaError._PARTITION_EOF:
            log.warning("Kafka: %s", err.str())
    return kept


@dataclass
class _TopicOutcome:
    """What committing one topic's share of a batch needs: counts and ledger rows, no data
    (a written batch may wait for the one before it; its records are not kept meanwhile)."""

    records: int
    landed: int
    quarantined: int
    tombstones: int
    failures: dict[tuple[str | None, str], int]
    bytes_written: int
    manifest: list[dict[str, object]]
    validation: dict[str, object]


@dataclass
class _Written:
    """A batch whose files are durable, waiting for its turn to commit."""

    batch_id: int
    topics: dict[str, _TopicOutcome]


class _LandingWorker(threading.Thread):
    """Lands batches while the caller consumes the next one; commits strictly in order.

    Routing (DuckDB), Arrow and Parquet writes release the GIL. Two batches are written at
    once (one's single-threaded steps fill the core the other leaves idle), but only this
    thread commits, in batch order, so the ledger never shows batch n+1 without batch n.
    Memory is bounded by batch size: at most two batches handed over and not yet written,
    plus the one being consumed. A handed-over batch waits for a free slot in the caller's
    thread, not in a queue: consuming is ~3x faster than landing, so a queued batch only
    held memory (~17 MiB per 50k records) without landing any sooner.
    """

    def __init__(
        self, write: Callable[[_Buffer, int], _Written], commit: Callable[[_Written], None], first_batch: int
    ) -> None:
        super().__init__(name="tradelake-lander", daemon=True)
        self.write = write
        self.commit = commit
        self.next_batch = first_batch
        self.slots = threading.BoundedSemaphore(BATCHES_IN_FLIGHT)
        self.queue: queue.SimpleQueue[_Buffer | None] = queue.SimpleQueue()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._land()
        except BaseException as e:  # this thread failed itself: the consumer must not wait for it
            self.error = self.error or e

    def _land(self) -> None:
        in_flight: deque[Future[_Written]] = deque()
        while (buffer := self.queue.get()) is not None:
            if self.error is not None:  # not landed: its slot is free again
                self.slots.release()
                continue
            future = _batch_pool().submit(self.write, buffer, self.next_batch)
            del buffer
            future.add_done_callback(lambda _: self.slots.release())
            in_flight.append(future)
            self.next_batch += 1
            if len(in_flight) >= BATCHES_IN_FLIGHT:
                self._commit_oldest(in_flight)
        while in_flight:  # a batch in flight is completed, never abandoned
            self._commit_oldest(in_flight)

    def _commit_oldest(self, in_flight: deque[Future[_Written]]) -> None:
        future = in_flight.popleft()
        try:
            written = future.result()
            if self.error is None:
                self.commit(written)
        except BaseException as e:  # handed to the consuming thread, which re-raises it
            self.error = self.error or e

    def submit(self, buffer: _Buffer) -> None:
        """Hand a batch over once fewer than BATCHES_IN_FLIGHT are being written."""
        while not self.slots.acquire(timeout=0.5):
            self.raise_if_failed()
        if self.error is not None:  # failed while this batch waited: it is not handed over
            self.slots.release()
            self.raise_if_failed()
        self.queue.put(buffer)

    def finish(self) -> None:
        """Land what was submitted, then stop."""
        if self.is_alive():
            self.queue.put(None)
            self.join()

    def raise_if_failed(self) -> None:
        if self.error is not None:
            raise self.error


class Lander:
    """Lands micro-batches into one lake."""

    def __init__(
        self,
        settings: Settings,
        batch_size: int = 50_000,
        max_batch_seconds: float = 5.0,
        topics: Iterable[str] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = tuple(topics) if topics is not None else TOPIC_NAMES
        self.batch_size = batch_size
        self.max_batch_seconds = max_batch_seconds
        self.ledger = Ledger(settings.home)
        key = settings.personal_data_key()
        self.contracts = load_contracts()
        self.routers = {t: TopicRouter(tc, key) for t, tc in self.contracts.items()}
        self.stats = IngestStats()

    def run(self, follow: bool, should_stop: Callable[[], bool] = lambda: False) -> IngestStats:
        tune_allocators()
        with self.ledger.exclusive():
            recovery = self.ledger.recover()
            if recovery.removed_files:
                log.info("recovery: removed %d file(s) of uncommitted batches", len(recovery.removed_files))
            self.ledger.write_schema_batch(
                {
                    "landing": {t: r.schema for t, r in self.routers.items()},
                    "quarantine": {t: QUARANTINE_SCHEMA for t in self.routers},
                }
            )
            started = time.monotonic()
            try:
                with _fewer_collections():
                    self._consume(follow, should_stop)
            finally:
                self.stats.seconds = time.monotonic() - started
            return self.stats

    def _assignment(self, positions: dict[Position, int]) -> list[TopicPartition]:
        client = kafka.admin(self.settings)
        kafka.check_reachable(client, self.settings)
        metadata = client.list_topics(timeout=10).topics
        assignment = []
        for name in self.topics:
            if name not in metadata:
                log.warning("topic %s does not exist yet; skipping it", name)
                continue
            for p in sorted(metadata[name].partitions):
                assignment.append(TopicPartition(name, p, positions.get((name, p), OFFSET_BEGINNING)))
        return assignment

    def _consume(self, follow: bool, should_stop: Callable[[], bool]) -> None:
        positions = self.ledger.next_offsets()
        assignment = self._assignment(positions)
        consumer = kafka.consumer(self.settings, on_commit=_log_failed_commit)
        # Positions of committed batches, for the consumer group: committed by this thread,
        # which owns the consumer (a commit from another thread waits for consume() to return).
        landed: queue.SimpleQueue[dict[Position, int]] = queue.SimpleQueue()
        worker = _LandingWorker(
            self._write, lambda written: self._commit(written, positions, landed), self.ledger.next_batch_id()
        )
        worker.start()
        try:
            targets = high_watermarks(self.settings, [(tp.topic, tp.partition) for tp in assignment])
            _check_same_cluster(self.settings, positions, targets)
            consumer.assign(assignment)
            consumed = {k: positions.get(k, 0) for k in targets}
            progress = Progress("ingest")
            buffer = _Buffer()
            deadline = time.monotonic() + self.max_batch_seconds

            def lag() -> int:
                return sum(max(targets[k] - consumed[k], 0) for k in targets)

            while not should_stop():
                if not follow and lag() == 0:
                    break
                messages = consumer.consume(num_messages=10_000, timeout=0.2)
                _commit_group_offsets(consumer, _drain(landed))
                if not messages:
                    # The fetch position moves past offsets that hold no deliverable record
                    # (transaction markers, compacted gaps), so --once ends on such clusters too.
                    for tp in consumer.position(assignment):
                        if tp.offset >= 0:
                            key = (tp.topic, tp.partition)
                            consumed[key] = max(consumed[key], tp.offset)
                for key, offset in buffer.add(_messages_without_errors(messages)).items():
                    consumed[key] = offset + 1
                del messages  # the records are in the buffer, as Arrow
                now = time.monotonic()
                if buffer.size and (buffer.size >= self.batch_size or now >= deadline or (not follow and lag() == 0)):
                    worker.submit(buffer)
                    buffer = _Buffer()
                if now >= deadline:
                    deadline = now + self.max_batch_seconds
                    if follow:
                        targets.update(_fetched_high_watermarks(consumer, targets))
                progress.tick(self.stats.records + buffer.size, lambda: f"lag {lag():,}")
            if buffer.size:
                worker.submit(buffer)
            worker.finish()
            worker.raise_if_failed()
            _commit_group_offsets(consumer, positions, asynchronous=False)
            progress.log(self.stats.records, f"lag {lag():,}")
        finally:
            worker.finish()
            consumer.close()

    def _write(self, buffer: _Buffer, batch_id: int) -> _Written:
        """Route one micro-batch and write its files durably; the ledger does not know it yet."""
        now = datetime.now(UTC)
        name = batch_file_name(batch_id)

        topics = buffer.topics

        def land_topic(topic: str) -> _TopicOutcome:
            records = topics[topic]
            routed = self.routers[topic].route(records, batch_id, now)
            written = 0
            for kind, table in (("landing", routed.landed), ("quarantine", routed.quarantined)):
                if len(table):
                    written += write_parquet_durably(table, self.settings.home / kind / topic / name)
            release_cached_memory()
            return _TopicOutcome(
                records=len(records),
                landed=len(routed.landed),
                quarantined=len(routed.quarantined),
                tombstones=len(routed.tombstone_partitions),
                failures=routed.failures,
                bytes_written=written,
                manifest=_manifest_rows(batch_id, topic, records, routed, now),
                validation=validation_summary(self.contracts[topic], routed),
            )

        # Topics are routed and written concurrently, the largest first, so the small topics
        # fill the gaps the largest one leaves.
        largest_first = sorted(topics, key=lambda t: -len(topics[t]))
        outcomes = dict(zip(largest_first, _topic_pool().map(land_topic, largest_first), strict=True))
        validations = [outcomes[t].validation for t in topics]
        write_bytes_durably(
            orjson.dumps({"batch_id": batch_id, "topics": validations}, option=orjson.OPT_INDENT_2),
            self.settings.home / "validation" / batch_file_name(batch_id, ".json"),
        )
        return _Written(batch_id, {t: outcomes[t] for t in topics})

    def _commit(
        self, written: _Written, positions: dict[Position, int], landed: queue.SimpleQueue[dict[Position, int]]
    ) -> None:
        """Commit a written batch: its manifest is the commit point (see module docstring)."""
        manifest: list[dict[str, object]] = []
        for topic, outcome in written.topics.items():
            manifest.extend(outcome.manifest)
            self.stats.add(topic, outcome)
        self.ledger.commit(written.batch_id, manifest)
        committed: dict[Position, int] = {}
        for row in manifest:
            key = (str(row["topic"]), int(row["partition"]))
            positions[key] = committed[key] = int(row["last_offset"]) + 1
            first = self.stats.offsets.get(key, (int(row["first_offset"]), 0))[0]
            self.stats.offsets[key] = (first, int(row["last_offset"]))
        self.stats.batches += 1
        landed.put(committed)


@contextmanager
def _fewer_collections() -> Iterator[None]:
    """Run the cyclic garbage collector less often while consuming.

    Every consumed message allocates container objects, so with the default threshold (700)
    the collector ran thousands of times per batch, ~13% of the consuming thread's time,
    finding nothing (the loop creates no cycles). Collection still happens, 100x less often.
    """
    before = gc.get_threshold()
    gc.set_threshold(70_000, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


@cache
def _batch_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=BATCHES_IN_FLIGHT, thread_name_prefix="tradelake-batch")


@cache
def _topic_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=TOPIC_WORKERS, thread_name_prefix="tradelake-topic")


def _fetched_high_watermarks(consumer: Consumer, targets: dict[Position, int]) -> dict[Position, int]:
    """The high watermarks the last fetch responses carried (no broker round trip)."""
    fresh = {}
    for t, p in targets:
        hi = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)[1]
        if hi >= 0:
            fresh[(t, p)] = hi
    return fresh


def _check_same_cluster(settings: Settings, positions: dict[Position, int], targets: dict[Position, int]) -> None:
    """Refuse a lake that has landed past the cluster's end: it was fed by another cluster.

    The embedded broker forgets its data when it stops; resuming an old lake against a new
    broker would silently skip the new broker's first records.
    """
    for key, landed_to in positions.items():
        if key in targets and landed_to > targets[key]:
            raise TradelakeError(
                f"the lake at {settings.home} has landed {key[0]}[{key[1]}] up to offset {landed_to:,} but the "
                f"broker's high watermark is {targets[key]:,}: this lake was fed by another cluster "
                "(the embedded broker keeps data in memory only); use another TRADELAKE_HOME"
            )


def _manifest_rows(
    batch_id: int, topic: str, records: RawRecords, routed: Routed, now: datetime
) -> list[dict[str, object]]:
    """One ledger row per partition: offset range and how each record is represented."""
    ranges = (
        records.table.select(["partition", "offset"])
        .group_by("partition")
        .aggregate([("offset", "min"), ("offset", "max"), ("offset", "count")])
    )
    landed = Counter(routed.landed["_partition"].to_pylist())
    quarantined = Counter(routed.quarantined["_partition"].to_pylist())
    tombstones = Counter(routed.tombstone_partitions)
    return [
        {
            "batch_id": batch_id,
            "topic": topic,
            "partition": r["partition"],
            "first_offset": r["offset_min"],
            "last_offset": r["offset_max"],
            "records": r["offset_count"],
            "landed": landed[r["partition"]],
            "quarantined": quarantined[r["partition"]],
            "tombstones": tombstones[r["partition"]],
            "ingested_at": now,
        }
        for r in ranges.to_pylist()
    ]


def _commit_group_offsets(consumer: Consumer, positions: dict[Position, int], asynchronous: bool = True) -> None:
    """Tell the cluster too (for lag dashboards); the ledger stays the truth on restart.

    Asynchronous while consuming: committed synchronously from the lander thread, each commit
    waited ~170 ms for the consuming thread's consume() call (~7 s per 2M records on the
    lander's critical path). The end of a run commits synchronously, so the group's offsets
    are exact when ``ingest`` returns.
    """
    offsets = [TopicPartition(topic, partition, offset) for (topic, partition), offset in positions.items()]
    if not offsets:
        return
    try:
        consumer.commit(offsets=offsets, asynchronous=asynchronous)
    except KafkaException as e:
        _log_failed_commit(e.args[0], offsets)


def _drain(landed: queue.SimpleQueue[dict[Position, int]]) -> dict[Position, int]:
    merged: dict[Position, int] = {}
    while not landed.empty():
        merged.update(landed.get_nowait())
    return merged


def _log_failed_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    if err is not None:
        log.warning("could not commit consumer-group offsets (the lake's ledger is unaffected): %s", err)


class _StopFlag:
    """Set by SIGTERM/SIGINT in --follow mode: finish the current batch, then exit cleanly."""

    def __init__(self) -> None:
        self.set = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.set = True


def ingest(settings: Settings, follow: bool = False, batch_size: int = 50_000) -> IngestStats:
    """Land every catalog topic (once: up to the high watermarks at start; follow: until signalled)."""
    stop = _StopFlag()
    if follow:
        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
    return Lander(settings, batch_size=batch_size).run(follow, should_stop=lambda: stop.set)
