"""The consuming side of landing: the consume loop and the buffer of the batch it assembles.

It knows Kafka, not the lake: it reads from the positions it is given, closes a batch when it
is full or its oldest record has waited long enough, and hands the batch to a ``submit``
callback (the committer). It never decides what is committed.
"""

from __future__ import annotations

import gc
import logging
import queue
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import repeat
from operator import is_not

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from pipelines.errors import TradelakeError
from pipelines.lake.schemas import RAW_SCHEMA
from pipelines.landing.router import RawRecords
from pipelines.progress import Progress
from pipelines.watermarks import Position

log = logging.getLogger("tradelake")

CONSUME_CALL = 10_000  # records per consume() call


class RecordBuffer:
    """The records of the batch being assembled, per topic, as Arrow columns.

    Messages are converted as they are consumed, a consume() call at a time: a Python bytes
    object per key and value, kept until the batch lands, cost ~40% more memory than the same
    bytes in Arrow (object headers, list slots, boxed ints) and fragmented the interpreter's
    arenas (the Message objects of every consume call were interleaved with the values kept).
    """

    def __init__(self) -> None:
        self.chunks: defaultdict[str, list[pa.RecordBatch]] = defaultdict(list)
        self.size = 0
        self.opened_at: float | None = None  # monotonic time of the first record
        self.last_offsets: dict[Position, int] = {}  # per partition: the last offset added

    def add(self, messages: list[Message]) -> dict[Position, int]:
        """Add messages without errors (see ``messages_without_errors``); return the last
        offset added per partition."""
        if not messages:
            return {}
        if self.opened_at is None:
            self.opened_at = time.monotonic()
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
        last = dict(zip(zip(topics, partitions, strict=True), offsets, strict=True))
        self.last_offsets.update(last)
        return last

    def take_topics(self) -> dict[str, RawRecords]:
        """One contiguous table per topic (the buffer is empty afterwards).

        Each topic's chunks are combined once and released; the routing queries share slices
        of the combined table without a copy.
        """
        topics = {}
        for t in list(self.chunks):
            chunks = self.chunks.pop(t)
            topics[t] = RawRecords(pa.Table.from_batches(chunks, schema=RAW_SCHEMA).combine_chunks())
            del chunks
        self.size = 0
        return topics


def _timestamp_ms(timestamp: tuple[int, int]) -> int:
    return timestamp[1]


def messages_without_errors(messages: list[Message]) -> list[Message]:
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


class ConsumeLoop:
    """Consume assigned partitions into batches until caught up (once) or stopped (follow).

    A batch closes when it holds ``batch_size`` records or its oldest record has waited
    ``max_wait`` seconds, so on a quiet stream every record is handed over on time; the
    committer commits each batch as soon as it is written, not when the next one arrives.
    """

    def __init__(
        self,
        consumer: Consumer,
        assignment: list[TopicPartition],
        targets: dict[Position, int],
        consumed: dict[Position, int],
        batch_size: int,
        max_wait: float,
        check_stream: Callable[[], None] = lambda: None,
        on_lag: Callable[[dict[Position, int]], None] = lambda _: None,
    ) -> None:
        self.consumer = consumer
        self.assignment = assignment
        self.targets = targets  # high watermarks to reach (refreshed while following)
        self.consumed = consumed  # next offset to consume per partition
        self.batch_size = batch_size
        self.max_wait = max_wait
        self.check_stream = check_stream  # raises when the stream changed under the consumer
        self.on_lag = on_lag  # told each partition's uncommitted lag while following
        self.landed = dict(consumed)  # next offset per partition that the lake has committed
        self.progress = Progress("ingest")
        self.records = 0
        self.buffer = RecordBuffer()
        # Set when partitions were given up during a consume() call: the messages it returned
        # may hold records of them, fetched before the rebalance, which must not be kept.
        self.revoked_during_consume = False

    def add_partitions(
        self, keys: list[Position], positions: dict[Position, int], targets: dict[Position, int]
    ) -> None:
        """Partitions assigned while running (consumer group): consume them from ``positions``."""
        self.assignment.extend(TopicPartition(t, p) for t, p in keys)
        for key in keys:
            self.consumed[key] = self.landed[key] = positions.get(key, 0)
        self.targets.update(targets)

    def remove_partitions(self, keys: list[Position]) -> None:
        """Partitions revoked (after their records were committed): no longer consumed or reported."""
        gone = set(keys)
        self.assignment[:] = [tp for tp in self.assignment if (tp.topic, tp.partition) not in gone]
        for key in gone:
            self.targets.pop(key, None)
            self.consumed.pop(key, None)
            self.landed.pop(key, None)
        self.revoked_during_consume = True

    def flush(self, submit: Callable[[RecordBuffer], None]) -> None:
        """Hand the batch being assembled over now (before partitions are given up)."""
        if self.buffer.size:
            submit(self.buffer)
            self.buffer = RecordBuffer()

    def settle(self, consumer: Consumer, committed: queue.SimpleQueue[dict[Position, int]]) -> None:
        """Take in the positions the committer has committed, and tell the cluster."""
        landed = _drain(committed)
        commit_group_offsets(consumer, landed)
        self.landed.update({k: v for k, v in landed.items() if k in self.landed})

    def _owned(self, messages: list[Message]) -> list[Message]:
        """The messages of partitions still assigned (see ``revoked_during_consume``)."""
        if not self.revoked_during_consume:
            return messages
        self.revoked_during_consume = False
        owned = {(tp.topic, tp.partition) for tp in self.assignment}
        return [m for m in messages if (m.topic(), m.partition()) in owned]

    def lag(self) -> int:
        """Records on the cluster not consumed yet (``--once`` stops at 0)."""
        return sum(max(self.targets[k] - self.consumed.get(k, 0), 0) for k in self.targets)

    def uncommitted(self) -> int:
        """Records on the cluster not committed to the lake yet: the lag ``status`` shows."""
        return sum(max(self.targets[k] - self.landed.get(k, 0), 0) for k in self.targets)

    def run(
        self,
        follow: bool,
        should_stop: Callable[[], bool],
        submit: Callable[[RecordBuffer], None],
        committed: queue.SimpleQueue[dict[Position, int]],
        raise_if_failed: Callable[[], None] = lambda: None,
    ) -> None:
        """``raise_if_failed``: the committer's failure (a commit refused to a fenced process), raised
        at once, not at the next batch: a quiet stream may bring none."""
        consumer = self.consumer
        refresh_at = time.monotonic() + self.max_wait
        with _fewer_collections():
            while not should_stop():
                raise_if_failed()
                if not follow and self.lag() == 0:
                    break
                messages = consumer.consume(
                    num_messages=min(CONSUME_CALL, self.batch_size - self.buffer.size), timeout=0.2
                )
                messages = self._owned(messages)
                self.check_stream()  # before the records are kept: they may be a new stream's
                self.settle(consumer, committed)
                if not messages:
                    # The fetch position moves past offsets that hold no deliverable record
                    # (transaction markers, compacted gaps), so --once ends on such clusters too.
                    for tp in consumer.position(self.assignment):
                        if tp.offset >= 0:
                            key = (tp.topic, tp.partition)
                            self.consumed[key] = max(self.consumed.get(key, 0), tp.offset)
                for key, offset in self.buffer.add(messages_without_errors(messages)).items():
                    self.consumed[key] = offset + 1
                self.records += len(messages)
                del messages  # the records are in the buffer, as Arrow
                now = time.monotonic()
                size, opened_at = self.buffer.size, self.buffer.opened_at
                if size and (
                    size >= self.batch_size
                    or now - (opened_at or now) >= self.max_wait
                    or (not follow and self.lag() == 0)
                ):
                    self.flush(submit)
                if follow and now >= refresh_at:
                    refresh_at = now + self.max_wait
                    self.targets.update(_fetched_high_watermarks(consumer, self.targets))
                    self.on_lag({k: max(hw - self.landed.get(k, 0), 0) for k, hw in self.targets.items()})
                self.progress.tick(self.records, lambda: f"lag {self.uncommitted():,}")
        self.flush(submit)


def read_ranges(consumer: Consumer, ranges: dict[Position, tuple[int, int]], timeout: float = 60) -> RecordBuffer:
    """The records of each partition's offset range (first, last), read by an assigned consumer
    of its own: a previous owner's partial batch, landed again as that batch (``ownership``)."""
    consumer.assign([TopicPartition(t, p, first) for (t, p), (first, _) in ranges.items()])
    buffer = RecordBuffer()
    pending = {key: last for key, (_, last) in ranges.items()}
    deadline = time.monotonic() + timeout
    while pending:
        if time.monotonic() > deadline:
            raise TradelakeError(f"could not read back {len(pending)} partition range(s) in {timeout:.0f} s")
        messages = messages_without_errors(consumer.consume(CONSUME_CALL, timeout=0.2))
        buffer.add([m for m in messages if m.offset() <= pending.get((m.topic(), m.partition()), -1)])
        # the fetch position moves past offsets without a record (transaction markers) too
        for tp in consumer.position([TopicPartition(t, p) for t, p in pending]):
            if tp.offset > pending[(tp.topic, tp.partition)]:
                del pending[(tp.topic, tp.partition)]
    return buffer


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


def _fetched_high_watermarks(consumer: Consumer, targets: dict[Position, int]) -> dict[Position, int]:
    """The high watermarks the last fetch responses carried (no broker round trip)."""
    fresh = {}
    for t, p in targets:
        hi = consumer.get_watermark_offsets(TopicPartition(t, p), cached=True)[1]
        if hi >= 0:
            fresh[(t, p)] = hi
    return fresh


def commit_group_offsets(consumer: Consumer, positions: dict[Position, int], asynchronous: bool = True) -> None:
    """Tell the cluster too (for lag dashboards); the lake's tables stay the truth on restart.

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
        log_failed_commit(e.args[0], offsets)


def _drain(committed: queue.SimpleQueue[dict[Position, int]]) -> dict[Position, int]:
    merged: dict[Position, int] = {}
    while not committed.empty():
        merged.update(committed.get_nowait())
    return merged


def log_failed_commit(err: KafkaError | None, partitions: list[TopicPartition]) -> None:
    if err is not None:
        log.warning("could not commit consumer-group offsets (the lake's tables are unaffected): %s", err)
