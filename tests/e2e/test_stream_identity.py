"""The stream check against the real embedded broker: topic IDs, recreated topics, restarts.

The lake's side (``_streams``, ``_batches``) is written with the real Delta tables, as
landing records it: the topic ID of the stream and the hash of the last committed record.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pyarrow as pa
import pytest
from confluent_kafka.admin import NewTopic

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import BATCHES_SCHEMA, BATCHES_TABLE, STREAMS_SCHEMA, STREAMS_TABLE
from pipelines.lake.tables import Lake, Position
from pipelines.landing import stream
from pipelines.settings import Settings

pytestmark = pytest.mark.e2e

TOPIC = "fleet.gps"
Record = tuple[bytes | None, bytes | None]


@pytest.fixture
def settings(tmp_path, broker: EmbeddedBroker) -> Settings:
    return Settings.load(env={}, home=str(tmp_path / "home"), bootstrap_servers=broker.bootstrap_servers)


def create_topic(settings: Settings, partitions: int, topic: str = TOPIC) -> None:
    client = kafka.admin(settings)
    for future in client.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result()


def delete_topic(settings: Settings, topic: str = TOPIC) -> None:
    client = kafka.admin(settings)
    for future in client.delete_topics([topic]).values():
        future.result()


def produce(settings: Settings, records: dict[int, list[Record]], topic: str = TOPIC) -> None:
    producer = kafka.producer(settings)
    for partition, rows in records.items():
        for key, value in rows:
            producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(10) == 0


def record_in_lake(
    lake: Lake, identity: stream.TopicIdentity, landed: dict[int, list[Record]], topic: str = TOPIC
) -> dict[Position, int]:
    """Write the lake's memory of a stream, as landing does; return its committed offsets."""
    now = datetime.now(UTC)
    lake.ensure(STREAMS_TABLE, STREAMS_SCHEMA)
    lake.ensure(BATCHES_TABLE, BATCHES_SCHEMA)
    row = {"topic": topic, "topic_id": identity.topic_id, "partitions": identity.partitions}
    lake.append(STREAMS_TABLE, pa.Table.from_pylist([row | {"since": now, "reason": "first seen"}], STREAMS_SCHEMA), [])
    batches = [
        {
            "batch_id": 1,
            "topic": topic,
            "topic_id": identity.topic_id,
            "partition": p,
            "first_offset": 0,
            "last_offset": len(rows) - 1,
            "records": len(rows),
            "landed": len(rows),
            "quarantined": 0,
            "tombstones": 0,
            "last_record_sha256": stream.record_sha256(*rows[-1]),
            "validation": "{}",
            "ingested_at": now,
            "_ingest_date": now.date(),
        }
        for p, rows in landed.items()
    ]
    lake.append(BATCHES_TABLE, pa.Table.from_pylist(batches, BATCHES_SCHEMA), [])
    return {(topic, p): len(rows) - 1 for p, rows in landed.items()}


def records(prefix: str, n: int) -> list[Record]:
    return [(f"{prefix}-k{i}".encode(), f"{prefix}-v{i}".encode()) for i in range(n)]


def check(settings: Settings, lake: Lake, committed: dict[Position, int]) -> None:
    current = stream.topic_identities(settings, [TOPIC])
    stream.verify(settings, stream.recorded_streams(lake), current, committed, lake)


def test_the_broker_gives_each_topic_a_real_and_stable_topic_id(settings):
    create_topic(settings, 3)
    first = stream.topic_identities(settings, [TOPIC, "not.there"])
    assert set(first) == {TOPIC}, "a topic that does not exist is left out"
    assert first[TOPIC].partitions == 3
    assert first[TOPIC].topic_id not in ("", stream.NO_TOPIC_ID)
    assert stream.topic_identities(settings, [TOPIC]) == first


def test_the_same_stream_passes_quickly(settings):
    create_topic(settings, 3)
    landed = {0: records("a", 5), 1: [*records("b", 3), (None, None)], 2: [(b"", b"")]}
    produce(settings, landed)
    produce(settings, {0: records("later", 4)})  # records after the committed ones change nothing
    lake = Lake(settings.lake)
    committed = record_in_lake(lake, stream.topic_identities(settings, [TOPIC])[TOPIC], landed)
    started = time.monotonic()
    check(settings, lake, committed)
    assert time.monotonic() - started < 3, "the check runs at every start and reconnect"


def test_a_recreated_topic_is_refused_naming_it(settings):
    create_topic(settings, 3)
    landed = {p: records(f"old{p}", 4) for p in range(3)}
    produce(settings, landed)
    lake = Lake(settings.lake)
    committed = record_in_lake(lake, stream.topic_identities(settings, [TOPIC])[TOPIC], landed)

    delete_topic(settings)
    create_topic(settings, 3)
    produce(settings, landed)  # even the same records at the same offsets: it is another stream
    with pytest.raises(TradelakeError) as refused:
        check(settings, lake, committed)
    message = str(refused.value)
    assert message.startswith(f"{TOPIC} is not the stream this lake was fed from: its topic ID is ")
    assert f"'tradelake ingest --reset-topic {TOPIC}'" in message and "TRADELAKE_HOME" in message
    assert "\n" not in message


def as_without_topic_ids(identity: stream.TopicIdentity) -> stream.TopicIdentity:
    """The identity a broker without topic IDs gives: only the record hashes tell streams apart."""
    return stream.TopicIdentity(stream.NO_TOPIC_ID, identity.partitions)


def test_a_recreated_topic_with_fewer_partitions_is_refused(settings):
    create_topic(settings, 3)
    landed = {2: records("x", 2)}
    produce(settings, landed)
    lake = Lake(settings.lake)
    committed = record_in_lake(lake, as_without_topic_ids(stream.topic_identities(settings, [TOPIC])[TOPIC]), landed)

    delete_topic(settings)
    create_topic(settings, 2)
    with pytest.raises(TradelakeError, match=f"^{TOPIC} is not .*: it has 2 partition\\(s\\), the lake has read 3;"):
        check(settings, lake, committed)


def restart(broker: EmbeddedBroker) -> None:
    """The embedded broker keeps data in memory: after a restart the topic starts again at 0."""
    broker.stop()
    broker.start()


def test_a_restarted_broker_is_refused_by_topic_id(settings, broker):
    create_topic(settings, 1)
    landed = {0: records("old", 10)}
    produce(settings, landed)
    lake = Lake(settings.lake)
    committed = record_in_lake(lake, stream.topic_identities(settings, [TOPIC])[TOPIC], landed)

    restart(broker)
    create_topic(settings, 1)
    produce(settings, {0: records("new", 20)})
    with pytest.raises(TradelakeError, match=f"^{TOPIC} is not the stream .*: its topic ID is "):
        check(settings, lake, committed)


def test_a_record_rewritten_at_the_committed_offset_is_caught_by_its_hash(settings, broker):
    create_topic(settings, 2)
    landed = {0: records("old", 10), 1: records("old1", 3)}
    produce(settings, landed)
    lake = Lake(settings.lake)
    committed = record_in_lake(lake, as_without_topic_ids(stream.topic_identities(settings, [TOPIC])[TOPIC]), landed)

    restart(broker)
    create_topic(settings, 2)
    # refilled past the old offsets: partition 1 holds the same records, partition 0 others
    produce(settings, {0: records("new", 20), 1: [*landed[1], *records("more", 5)]})
    with pytest.raises(TradelakeError) as refused:
        check(settings, lake, committed)
    assert str(refused.value).startswith(
        f"{TOPIC} is not the stream this lake was fed from: the record at offset 9 of partition 0, the lake's last "
        "committed one, is not the record the lake landed (its key and value hash differently); "
    )


def test_a_stream_shorter_than_the_committed_offset_is_refused(settings, broker):
    create_topic(settings, 2)
    landed = {0: records("old", 10), 1: records("old1", 10)}
    produce(settings, landed)
    lake = Lake(settings.lake)
    committed = record_in_lake(lake, as_without_topic_ids(stream.topic_identities(settings, [TOPIC])[TOPIC]), landed)

    restart(broker)
    create_topic(settings, 2)
    produce(settings, {0: landed[0], 1: landed[1][:4]})  # partition 1 stops short of offset 9
    started = time.monotonic()
    with pytest.raises(TradelakeError, match="partition 1's high watermark is 4, not past the lake's last committed"):
        check(settings, lake, committed)
    assert time.monotonic() - started < 3, "a fetch past the end is answered by the high watermark, not a timeout"


def test_the_same_stream_with_a_reset_history_is_read_from_its_latest_row(settings):
    create_topic(settings, 1)
    landed = {0: records("a", 3)}
    produce(settings, landed)
    lake = Lake(settings.lake)
    identity = stream.topic_identities(settings, [TOPIC])[TOPIC]
    record_in_lake(lake, stream.TopicIdentity("an-older-stream", 1), {0: records("gone", 1)})
    committed = record_in_lake(lake, identity, landed)
    assert stream.recorded_streams(lake) == {TOPIC: stream.RecordedStream(identity.topic_id, 1)}
    check(settings, lake, committed)
