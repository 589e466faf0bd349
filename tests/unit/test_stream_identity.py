"""The stream check's pure parts: the record hash, the identity rules and the refusal line."""

from __future__ import annotations

import hashlib

import pytest

from pipelines.errors import TradelakeError
from pipelines.lake.location import LakeLocation
from pipelines.lake.tables import Lake
from pipelines.landing import stream
from pipelines.landing.stream import AtOffset, RecordedStream, TopicIdentity
from pipelines.settings import Settings

WAYS_FORWARD = (
    "; use a new TRADELAKE_HOME, or run 'tradelake ingest --reset-topic fleet.gps' "
    "to land the new stream beside the old"
)


def test_record_hash_tells_none_from_empty_and_where_key_ends():
    pairs = [(None, None), (b"", None), (None, b""), (b"", b""), (b"ab", b"c"), (b"a", b"bc"), (b"abc", None)]
    hashes = [stream.record_sha256(k, v) for k, v in pairs]
    assert len(set(hashes)) == len(pairs)
    assert stream.record_sha256(b"ab", b"c") == stream.record_sha256(b"ab", b"c")


def test_record_hash_is_the_documented_encoding():
    # the lake keeps these hashes: changing the encoding would refuse every existing lake
    expected = hashlib.sha256(b"\xff" + (3).to_bytes(8, "big") + b"abc").hexdigest()
    assert stream.record_sha256(None, b"abc") == expected


def test_a_different_topic_id_is_a_change():
    change = stream.identity_change(RecordedStream("old-id", 3), TopicIdentity("new-id", 3), [0, 1, 2])
    assert change == "its topic ID is new-id, the lake was fed from topic ID old-id"


@pytest.mark.parametrize("was, now", [("0", "some-id"), ("some-id", "0"), ("0", "0")])
def test_without_topic_ids_on_either_side_the_ids_are_not_compared(was, now):
    assert stream.identity_change(RecordedStream(was, 3), TopicIdentity(now, 3), [0]) is None


def test_a_grown_topic_is_the_same_stream_and_a_shrunk_one_is_not():
    assert stream.identity_change(RecordedStream("id", 3), TopicIdentity("id", 6), [0, 1, 2]) is None
    assert stream.identity_change(RecordedStream("id", 6), TopicIdentity("id", 3), []) == (
        "it has 3 partition(s), the lake has read 6"
    )
    # the lake landed partition 4 after the topic grew (its _streams row still says 3)
    assert stream.identity_change(RecordedStream("id", 3), TopicIdentity("id", 4), [4]) == (
        "it has 4 partition(s), the lake has read 5"
    )


def test_what_the_record_at_the_committed_offset_tells():
    sha = stream.record_sha256(b"k", b"v")
    assert stream.record_change(2, 99, sha, AtOffset(sha256=sha), vouched=False) is None
    assert stream.record_change(2, 99, sha, AtOffset(sha256=stream.record_sha256(b"k", None)), vouched=True) == (
        "the record at offset 99 of partition 2, the lake's last committed one, is not the record the lake landed "
        "(its key and value hash differently)"
    )
    assert stream.record_change(2, 1_500, sha, AtOffset(end=1_200), vouched=True) == (
        "partition 2's high watermark is 1,200, not past the lake's last committed offset 1,500"
    )
    # gone: removed by retention or compaction from a stream its topic ID vouches for…
    assert stream.record_change(2, 99, sha, AtOffset(), vouched=True) is None
    # …but without topic IDs nothing else tells a replaced stream apart
    assert "is gone and the broker gives no topic ID" in stream.record_change(2, 99, sha, AtOffset(), vouched=False)


def test_the_refusal_is_one_line_naming_the_topic_and_the_ways_forward():
    assert stream.refusal({"fleet.gps": "what changed"}) == (
        "fleet.gps is not the stream this lake was fed from: what changed" + WAYS_FORWARD
    )
    several = stream.refusal({"fleet.gps": "what changed", "payments.ledger": "x", "marketplace.jobs": "y"})
    assert several == (
        "fleet.gps is not the stream this lake was fed from: what changed; "
        "payments.ledger, marketplace.jobs changed too" + WAYS_FORWARD
    )
    assert "\n" not in several


def test_verify_refuses_a_changed_identity_before_reading_any_record(tmp_path):
    # no broker listens on port 1: reading a record would fail, so nothing was read
    settings = Settings(home=tmp_path, bootstrap_servers="127.0.0.1:1")
    lake = Lake(LakeLocation(str(tmp_path / "lake")))
    recorded = {"fleet.gps": RecordedStream("old-id", 6), "payments.ledger": RecordedStream("id", 3)}
    current = {"fleet.gps": TopicIdentity("new-id", 6), "payments.ledger": TopicIdentity("id", 3)}
    committed = {("fleet.gps", 0): 10, ("payments.ledger", 1): 5}
    with pytest.raises(TradelakeError) as refused:
        stream.verify(settings, recorded, current, committed, lake, timeout=1)
    assert str(refused.value) == (
        "fleet.gps is not the stream this lake was fed from: its topic ID is new-id, the lake was fed from topic "
        "ID old-id" + WAYS_FORWARD
    )


def test_verify_has_nothing_to_check_for_new_or_missing_topics(tmp_path):
    settings = Settings(home=tmp_path, bootstrap_servers="127.0.0.1:1")
    lake = Lake(LakeLocation(str(tmp_path / "lake")))
    recorded = {"payments.ledger": RecordedStream("id", 3)}  # no longer on the cluster
    current = {"fleet.gps": TopicIdentity("new-id", 6)}  # first seen
    stream.verify(settings, recorded, current, {("payments.ledger", 0): 4}, lake, timeout=1)
