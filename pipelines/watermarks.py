"""High watermarks that hold on every Kafka-protocol broker, the embedded one included.

Why not ListOffsets alone: Tansu (the embedded broker) answers ListOffsets(latest) with the
base offset of the partition's last record batch + 1, short by the batch's other records,
while its Fetch responses carry the right high watermark. So: take ListOffsets as a lower
bound, read from there to end-of-partition, and use the offset where the consumer hits the
end. On a conforming broker that reads nothing and returns the ListOffsets answer.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from pipelines import kafka
from pipelines.errors import TradelakeError
from pipelines.settings import Settings

Position = tuple[str, int]  # (topic, partition)


def high_watermarks(settings: Settings, partitions: list[Position], timeout: float = 15.0) -> dict[Position, int]:
    consumer = kafka.consumer(settings, **{"enable.partition.eof": True, "fetch.wait.max.ms": 10})
    try:
        return _read_to_end(consumer, partitions, timeout)
    finally:
        consumer.close()


def _read_to_end(consumer: Consumer, partitions: list[Position], timeout: float) -> dict[Position, int]:
    try:
        listed = {(t, p): consumer.get_watermark_offsets(TopicPartition(t, p), timeout=10) for t, p in partitions}
    except KafkaException as e:
        raise TradelakeError(f"cannot read high watermarks: {e.args[0].str()}") from None
    found: dict[Position, int] = {k: hi for k, (lo, hi) in listed.items() if hi <= lo}  # empty partitions
    todo = [TopicPartition(t, p, max(hi - 1, lo)) for (t, p), (lo, hi) in listed.items() if (t, p) not in found]
    if not todo:
        return found
    consumer.assign(todo)
    deadline = time.monotonic() + timeout
    while len(found) < len(listed) and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=1000, timeout=0.2):
            err = m.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                found[(m.topic(), m.partition())] = m.offset()
    missing = [k for k in listed if k not in found]
    if missing:
        raise TradelakeError(f"could not find the end of {len(missing)} partition(s), e.g. {missing[0][0]}")
    return found
