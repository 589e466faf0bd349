"""Which Kafka stream the lake was fed from, and the check that the broker still serves it.

Offsets only mean something within one stream. A recreated topic, or the embedded broker
after a restart (it keeps data in memory), starts again from offset 0: resuming the lake's
offsets there would skip or mislabel records without any error. So the lake records each
topic's Kafka topic ID (``_streams``) and, per batch and partition, a hash of the record at
the last offset it committed (``_batches.last_record_sha256``), and landing checks both at
start and after every reconnect:

- the topic ID (DescribeTopics) is the one recorded; a broker that gives none (all-zero
  UUID) is recorded as ``"0"`` and then only the record hashes can tell streams apart;
- the partition count has not shrunk (a grown topic is fine: new partitions start at 0);
- every partition still holds the record at the lake's last committed offset, and it
  hashes the same (key and value).

Reading those records takes one consumer for every partition, assigned at the committed
offsets, reading only until it has one answer per partition.

A record gone from the same stream (retention, deleted records) is no reason to refuse it, but
records gone *before landing read them* are loss: ``expired_before_read`` compares each
partition's low watermark with where landing resumes it, and the committer records the
difference in ``_batches.expired_offsets``, which the completeness check fails on — instead of
the consumer jumping to the earliest offset and the loss reading as mere offset gaps.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicCollection, TopicPartition

from pipelines import kafka
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import BATCHES_TABLE, STREAMS_TABLE
from pipelines.lake.tables import Lake, Position
from pipelines.settings import Settings

NO_TOPIC_ID = "0"  # the broker gave an all-zero topic ID (it does not implement topic IDs)

# The check reads one record per partition: answer as soon as the broker has it (landing's
# FETCH_TUNING waits for 1 MiB), and treat an offset out of range as an answer instead of
# letting the consumer jump to the start of the partition.
READ_AT_OFFSET = {
    "auto.offset.reset": "error",
    "enable.partition.eof": True,
    "fetch.min.bytes": 1,
    "fetch.wait.max.ms": 10,
    "isolation.level": "read_committed",  # as landing reads
}


@dataclass(frozen=True)
class TopicIdentity:
    """A topic as the broker describes it now."""

    topic_id: str  # Kafka's own text form of the topic ID (base64), or NO_TOPIC_ID
    partitions: int


@dataclass(frozen=True)
class RecordedStream:
    """The stream the lake reads a topic from: the newest ``_streams`` row of the topic."""

    topic_id: str
    partitions: int  # the count when the stream was adopted (a topic may have grown since)


def record_sha256(key: bytes | None, value: bytes | None) -> str:
    """A hash of one record's key and value, telling None (a tombstone, no key) from b"".

    Each part is written as 0xff when None, else as its 8-byte length and its bytes, so no
    two different (key, value) pairs share an encoding.
    """
    h = hashlib.sha256()
    for part in (key, value):
        if part is None:
            h.update(b"\xff")
        else:
            h.update(len(part).to_bytes(8, "big"))
            h.update(part)
    return h.hexdigest()


def topic_identities(settings: Settings, topics: list[str], timeout: float = 10.0) -> dict[str, TopicIdentity]:
    """Topic ID and partition count of each topic that exists on the cluster (absent: it does not)."""
    if not topics:
        return {}
    client = kafka.admin(settings)  # kept referenced: the futures fail if it is destroyed first
    futures = client.describe_topics(TopicCollection(list(topics)), request_timeout=timeout)
    found = {}
    for name, future in futures.items():
        # exception(), not a raising result(): a raised error's traceback would hold this
        # frame, and with it the client and its connection, until the next garbage collection.
        # Bounded: a describe was seen never to complete (a follower resumed after SIGSTOP, on
        # the embedded broker), past its request timeout; the caller retries with a new client.
        try:
            error = future.exception(timeout=timeout + 5)
        except TimeoutError:
            where = kafka.bootstrap_servers(settings)
            raise TradelakeError(f"cannot describe topic {name} at {where}: no answer in {timeout + 5:.0f} s") from None
        if isinstance(error, KafkaException) and error.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            continue
        if isinstance(error, KafkaException):
            where = kafka.bootstrap_servers(settings)
            raise TradelakeError(f"cannot describe topic {name} at {where}: {error.args[0].str()}")
        description = future.result()
        uuid = description.topic_id
        unknown = uuid.get_most_significant_bits() == 0 and uuid.get_least_significant_bits() == 0
        found[name] = TopicIdentity(NO_TOPIC_ID if unknown else str(uuid), len(description.partitions))
    return found


def recorded_streams(lake: Lake) -> dict[str, RecordedStream]:
    """The stream each topic is read from now: the latest row of ``_streams`` (resets add rows)."""
    table = lake.read(STREAMS_TABLE, ["topic", "topic_id", "partitions", "since"])
    if table is None:
        return {}
    latest: dict[str, tuple[datetime, RecordedStream]] = {}
    for row in table.to_pylist():
        if row["topic"] not in latest or row["since"] >= latest[row["topic"]][0]:
            latest[row["topic"]] = (row["since"], RecordedStream(row["topic_id"], row["partitions"]))
    return {topic: stream for topic, (_, stream) in latest.items()}


def verify(
    settings: Settings,
    recorded: Mapping[str, RecordedStream],
    current: Mapping[str, TopicIdentity],
    committed: Mapping[Position, int],
    lake: Lake,
    timeout: float = 10.0,
) -> None:
    """Raise one line if a topic the lake has read is not the same stream on the broker now.

    ``recorded`` are the streams the lake reads (from ``recorded_streams``), ``current`` the
    broker's topics (from ``topic_identities``), ``committed`` the last offset the lake has
    committed per partition of those streams. Topics in only one of ``recorded`` and
    ``current`` are not checked: a new topic has nothing to compare, a missing one nothing to
    read. The cheap checks (topic ID, partition count) run first, before any record is read.
    """
    changes: dict[str, str] = {}
    for topic, was in recorded.items():
        if topic in current:
            partitions = [p for t, p in committed if t == topic]
            change = identity_change(was, current[topic], partitions)
            if change:
                changes[topic] = change
    if not changes:
        wanted = {k: o for k, o in committed.items() if k[0] in recorded and k[0] in current}
        hashes = _landed_hashes(lake, recorded, wanted)
        read = read_at_offsets(settings, wanted, timeout)
        for (topic, partition), offset in sorted(wanted.items()):
            vouched = NO_TOPIC_ID not in (recorded[topic].topic_id, current[topic].topic_id)
            change = record_change(partition, offset, hashes.get((topic, partition)), read[(topic, partition)], vouched)
            if change and topic not in changes:
                changes[topic] = change
    if changes:
        raise TradelakeError(refusal(changes))


def identity_change(was: RecordedStream, now: TopicIdentity, committed_partitions: list[int]) -> str | None:
    """What tells, without reading a record, that the topic is another stream (None: nothing)."""
    if NO_TOPIC_ID not in (was.topic_id, now.topic_id) and was.topic_id != now.topic_id:
        return f"its topic ID is {now.topic_id}, the lake was fed from topic ID {was.topic_id}"
    known = max([was.partitions, *(p + 1 for p in committed_partitions)])
    if now.partitions < known:
        return f"it has {now.partitions} partition(s), the lake has read {known}"
    return None


@dataclass(frozen=True)
class Expired:
    """Offsets ``start`` … ``low - 1`` of a partition: below its low watermark when landing
    resumed it at ``start``, so never read."""

    start: int
    low: int

    @property
    def count(self) -> int:
        return self.low - self.start


def expired_before_read(starts: Mapping[Position, int], lows: Mapping[Position, int]) -> dict[Position, Expired]:
    """The partitions whose records from where landing resumes them (``starts``: the committed
    offset + 1, 0 for a new stream) begin past that point on the broker (``lows``)."""
    return {k: Expired(start, lows[k]) for k, start in starts.items() if lows.get(k, -1) > start}


def low_watermarks(settings: Settings, partitions: list[Position]) -> dict[Position, int]:
    """Each partition's first offset the broker still holds (ListOffsets earliest)."""
    consumer = kafka.consumer(settings)
    try:
        return {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10)[0] for t, p in partitions}
    except KafkaException as e:
        raise TradelakeError(f"cannot read the partitions' low watermarks: {e.args[0].str()}") from None
    finally:
        consumer.close()


@dataclass(frozen=True)
class AtOffset:
    """What a partition holds at an offset: a record's hash, its end before it, or neither
    (the record was removed: retention, compaction, an aborted transaction's place)."""

    sha256: str | None = None
    end: int | None = None  # the partition's high watermark, when at or below the offset


def record_change(partition: int, offset: int, landed_sha256: str | None, found: AtOffset, vouched: bool) -> str | None:
    """What tells, from the record at the last committed offset, that the stream changed.

    ``vouched``: both topic IDs are real and equal. Then a record that is gone was removed
    by the broker (retention, compaction) from the same stream; without topic IDs nothing
    else tells a replaced stream apart, so a gone record is refused.
    """
    if found.end is not None:
        return (
            f"partition {partition}'s high watermark is {found.end:,}, "
            f"not past the lake's last committed offset {offset:,}"
        )
    if found.sha256 is None:
        if vouched:
            return None
        return (
            f"the record at offset {offset:,} of partition {partition}, the lake's last committed one, is gone "
            "and the broker gives no topic ID to tell the stream by"
        )
    if landed_sha256 is not None and found.sha256 != landed_sha256:
        return (
            f"the record at offset {offset:,} of partition {partition}, the lake's last committed one, "
            "is not the record the lake landed (its key and value hash differently)"
        )
    return None


def refusal(changes: Mapping[str, str]) -> str:
    """The one line that stops landing, naming the first changed topic and the ways forward."""
    topic, change = next(iter(changes.items()))
    others = [t for t in changes if t != topic]
    also = f"; {', '.join(others)} changed too" if others else ""
    return (
        f"{topic} is not the stream this lake was fed from: {change}{also}; use a new TRADELAKE_HOME, "
        f"or run 'tradelake ingest --reset-topic {topic}' to land the new stream beside the old"
    )


def _landed_hashes(
    lake: Lake, recorded: Mapping[str, RecordedStream], committed: Mapping[Position, int]
) -> dict[Position, str]:
    """The hash ``_batches`` holds of the record at each committed offset, in its stream."""
    table = lake.read(BATCHES_TABLE, ["topic", "topic_id", "partition", "last_offset", "last_record_sha256"])
    if table is None or not committed:
        return {}
    topics = pa.array(sorted({t for t, _ in committed}))
    offsets = pa.array(sorted(set(committed.values())), pa.int64())
    table = table.filter(pc.and_(pc.is_in(table["topic"], topics), pc.is_in(table["last_offset"], offsets)))
    found = {}
    for row in table.to_pylist():
        key = (row["topic"], row["partition"])
        if committed.get(key) == row["last_offset"] and recorded[row["topic"]].topic_id == row["topic_id"]:
            found[key] = row["last_record_sha256"]
    return found


def read_at_offsets(
    settings: Settings, offsets: Mapping[Position, int], timeout: float = 10.0
) -> dict[Position, AtOffset]:
    """What each partition holds at the given offset, read by one consumer that commits nothing."""
    if not offsets:
        return {}
    consumer = kafka.consumer(settings, **READ_AT_OFFSET)
    try:
        return _read(consumer, offsets, timeout)
    finally:
        consumer.close()


def _read(consumer: Consumer, offsets: Mapping[Position, int], timeout: float) -> dict[Position, AtOffset]:
    consumer.assign([TopicPartition(t, p, o) for (t, p), o in offsets.items()])
    found: dict[Position, AtOffset] = {}
    deadline = time.monotonic() + timeout
    while len(found) < len(offsets):
        if time.monotonic() > deadline:
            topic, partition = next(k for k in offsets if k not in found)
            raise TradelakeError(
                f"could not read offset {offsets[(topic, partition)]:,} of {topic}[{partition}] within "
                f"{timeout:.0f}s to check the stream ({len(offsets) - len(found)} partition(s) unanswered)"
            )
        answered = []
        for m in consumer.consume(num_messages=1000, timeout=0.1):
            key = (m.topic(), m.partition())
            if key in offsets and key not in found:
                at = _answer(consumer, m, offsets[key])
                if at is not None:
                    found[key] = at
                    answered.append(TopicPartition(*key))
            elif m.error() is not None and m.error().fatal():
                raise TradelakeError(f"Kafka client failed: {m.error().str()}")
        # A fetch past the end answers with the high watermark and no records, and some
        # brokers (Tansu) raise no OFFSET_OUT_OF_RANGE then: the watermark is the answer.
        for key in offsets.keys() - found.keys():
            high = consumer.get_watermark_offsets(TopicPartition(*key), cached=True)[1]
            if 0 <= high <= offsets[key]:
                found[key] = AtOffset(end=high)
                answered.append(TopicPartition(*key))
        if answered:
            consumer.pause(answered)
    return found


def _answer(consumer: Consumer, m: Message, offset: int) -> AtOffset | None:
    """What one message says about the record at ``offset`` of its partition (None: nothing yet)."""
    err = m.error()
    if err is None:
        return AtOffset(sha256=record_sha256(m.key(), m.value())) if m.offset() == offset else AtOffset()
    if err.code() == KafkaError._PARTITION_EOF:
        return AtOffset(end=m.offset()) if m.offset() <= offset else AtOffset()
    if err.code() in (KafkaError._AUTO_OFFSET_RESET, KafkaError.OFFSET_OUT_OF_RANGE):
        try:
            low, high = consumer.get_watermark_offsets(TopicPartition(m.topic(), m.partition()), timeout=5)
        except KafkaException as e:
            where = f"{m.topic()}[{m.partition()}]"
            raise TradelakeError(f"cannot read the offsets of {where}: {e.args[0].str()}") from None
        return AtOffset() if low > offset else AtOffset(end=high)
    if err.retriable():
        return None
    raise TradelakeError(f"cannot read {m.topic()}[{m.partition()}] at offset {offset:,}: {err.str()}")


class StreamWatch:
    """While following: re-check the topic IDs after a connection error, and every ``interval``.

    A broker restarted on the same address (the embedded one forgets its topics) or a topic
    recreated under a consumer is reconnected to silently by the Kafka client, which then
    fetches the old offsets from a new stream. The consume loop calls the watch after every
    consume() call, before the records it returned are kept: on a changed stream landing stops
    with the refusal, and nothing consumed after the change is committed.
    """

    def __init__(
        self, settings: Settings, streams: Mapping[str, RecordedStream], interval: float = 10.0, patience: float = 60.0
    ) -> None:
        self.settings = settings
        self.streams = dict(streams)
        self.interval = interval
        self.patience = patience  # how long the broker may stay unreachable during a check
        self.suspect = False
        self.next_check = time.monotonic() + interval

    def on_error(self, error: KafkaError) -> None:
        """The Kafka client's error callback: any connection trouble makes the next check due."""
        self.suspect = True

    def __call__(self) -> None:
        now = time.monotonic()
        if not self.suspect and now < self.next_check:
            return
        self.suspect = False
        self.next_check = now + self.interval
        current = self._identities(now + self.patience)
        changes = {}
        for topic, was in self.streams.items():
            if topic in current and (change := identity_change(was, current[topic], [])):
                changes[topic] = change
            elif topic not in current:
                changes[topic] = "the topic no longer exists on the broker"
        if changes:
            raise TradelakeError(refusal(changes))

    def _identities(self, give_up_at: float) -> dict[str, TopicIdentity]:
        while True:
            try:
                return topic_identities(self.settings, list(self.streams))
            except TradelakeError:
                if time.monotonic() >= give_up_at:
                    raise
                time.sleep(1.0)
