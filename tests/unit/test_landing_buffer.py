"""Consumed messages become per-topic Arrow records, in consumption order."""

from __future__ import annotations

import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, KafkaError, Message

from pipelines.errors import TradelakeError
from pipelines.landing.consumer import RecordBuffer, messages_without_errors


def _message(topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None = b"k") -> Message:
    return Message(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        timestamp=(TIMESTAMP_CREATE_TIME, 1_000 + offset) if offset % 2 else (TIMESTAMP_NOT_AVAILABLE, -1),
    )


def test_interleaved_topics_are_split_in_order_with_nulls_kept():
    buffer = RecordBuffer()
    last = buffer.add(
        [
            _message("a", 0, 10, b"a10"),
            _message("b", 1, 7, None, key=None),  # a tombstone without a key
            _message("a", 0, 11, b"a11"),
            _message("a", 2, 3, b"a3"),
        ]
    )
    last.update(buffer.add([_message("b", 1, 8, b"b8")]))
    assert last == {("a", 0): 11, ("b", 1): 8, ("a", 2): 3}
    assert buffer.size == 5
    topics = buffer.take_topics()
    a, b = topics["a"].table, topics["b"].table
    assert a.column("offset").to_pylist() == [10, 11, 3]
    assert a.column("partition").to_pylist() == [0, 0, 2]
    assert a.column("value").to_pylist() == [b"a10", b"a11", b"a3"]
    assert a.column("timestamp").to_pylist() == [-1, 1_011, 1_003]
    assert b.column("value").to_pylist() == [None, b"b8"]
    assert b.column("key").to_pylist() == [None, b"k"]
    assert buffer.size == 0 and buffer.take_topics() == {}


def test_partition_ends_are_dropped_and_fatal_errors_raised():
    eof = Message(topic="a", partition=0, offset=12, error=KafkaError(KafkaError._PARTITION_EOF))
    record = _message("a", 0, 11, b"x")
    kept = messages_without_errors([record, eof])
    assert [(m.topic(), m.offset()) for m in kept] == [("a", 11)]
    fatal = Message(topic="a", partition=0, error=KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(TradelakeError, match="Kafka error"):
        messages_without_errors([record, fatal])
