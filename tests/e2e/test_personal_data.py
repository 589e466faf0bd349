"""Personal data in every bad shape, through the real broker: nothing of it is written in clear.

Each shape of issue 13's list is produced to the embedded broker, landed, and then every file
under the home is read — Parquet decoded (every column, binary ones too), everything else as
bytes (Delta logs, checkpoints' JSON, the key file) — for any of the planted values.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from confluent_kafka import Producer

from pipelines.landing.ingest import Lander
from pipelines.landing.ownership import BATCH_ID_BLOCK
from pipelines.settings import Settings
from tests.conftest import run_cli
from tests.e2e.lake_checks import assert_exactly_once, read_table
from tests.pii_scan import scan

pytestmark = pytest.mark.e2e

NAME, MAIL, PHONE = "Wilhelmina Fairweather", "wilhelmina.fairweather@example.com", "+44 20 7946 0321"
PLANTED = [NAME, "Fairweather", MAIL, "wilhelmina.fairweather", PHONE, "442079460321", "2079460321", "555-867-5309"]
ROW = {
    "customer_id": "cus_pd_1",
    "full_name": NAME,
    "email": MAIL,
    "phone": PHONE,
    "region": "nyc",
    "segment": "consumer",
    "created_at": "2026-11-01T10:00:00.000Z",
    "updated_at": "2026-11-01T10:00:00.000Z",
}
SOURCE = {"db": "marketplace", "table": "customers", "lsn": 1, "txId": 1}
REVIEW = {
    "event_id": "0000ada0-0000-0000-4000-800000000031",
    "event_type": "review.submitted",
    "event_time": "2026-11-23T10:15:30.123Z",
    "schema_version": 1,
    "producer": "reviews/1.0",
    "review_id": "rev_pd_1",
    "job_id": "job_pd_1",
    "customer_id": "cus_pd_1",
    "tradesperson_id": "tp_0001",
    "rating": 5,
    "comment": f"call me at {MAIL} or 555-867-5309",
}
CANCELLED = {
    "event_id": "0000ada0-0000-0000-4000-800000000041",
    "event_type": "job.cancelled",
    "event_time": "2026-11-23T10:15:30.123Z",
    "schema_version": 1,
    "producer": "jobs-service/3.1.0",
    "job_id": "job_pd_1",
    "customer_id": MAIL,  # an id no rule confines
    "reason": f"customer asked to call {PHONE} or write to {MAIL}",  # free text: its shapes are masked
}
CDC_KEY = b'{"customer_id": "cus_pd_1"}'
NOT_UTF8_KEY = b"tp_\xff\xfe0001"


def _cdc(before: Any = None, after: Any = ROW, op: str = "c") -> bytes:
    return orjson.dumps({"before": before, "after": after, "op": op, "ts_ms": 1794328130204, "source": SOURCE})


RECORDS: list[tuple[str, bytes, bytes]] = [  # (topic, key, value)
    ("cdc.public.customers", CDC_KEY, _cdc()),  # valid: lands hashed
    ("cdc.public.customers", CDC_KEY, _cdc(after=ROW | {"email": [MAIL]})),
    ("cdc.public.customers", CDC_KEY, _cdc(after=ROW | {"email": {"primary": MAIL}})),
    ("cdc.public.customers", CDC_KEY, _cdc(after=ROW | {"phone": 442079460321})),
    ("cdc.public.customers", CDC_KEY, _cdc(after=ROW | {"full_name": NAME.split()})),
    ("cdc.public.customers", CDC_KEY, _cdc(before=[ROW], after=None, op="d")),
    ("cdc.public.customers", CDC_KEY, _cdc(after=[ROW])),
    ("marketplace.jobs", CDC_KEY, _cdc()),  # a CDC record on a topic without personal data
    ("cdc.public.tradespeople", b'{"tradesperson_id": "tp_1"}', _cdc()),  # a customer row on the other CDC topic
    ("cdc.public.customers", CDC_KEY, repr({"before": None, "after": ROW, "op": "c"}).encode()),
    ("cdc.public.customers", CDC_KEY, _cdc()[:-120]),  # truncated JSON
    ("cdc.public.customers", CDC_KEY, _cdc().replace(b'"nyc"', b'"ny\xffc"')),  # not UTF-8
    ("cdc.public.customers", CDC_KEY, _cdc().decode().encode("utf-16-le")),
    ("marketplace.reviews", b"tp_0001", orjson.dumps(REVIEW)),  # valid: lands, its comment masked
    ("marketplace.reviews", b"tp_0001", orjson.dumps(REVIEW | {"rating": 9})),
    ("marketplace.reviews", b"tp_0001", orjson.dumps(REVIEW | {"event_type": MAIL})),  # quoted by the reason
    ("marketplace.reviews", b"tp_0001", f"{MAIL};{PHONE};not json".encode()),
    ("marketplace.reviews", MAIL.encode(), orjson.dumps(REVIEW | {"event_id": "0000ada0-0000-0000-4000-800000000032"})),
    ("marketplace.reviews", NOT_UTF8_KEY, orjson.dumps(REVIEW | {"event_id": "0000ada0-0000-0000-4000-800000000033"})),
    ("marketplace.reviews", NOT_UTF8_KEY, b"{not json"),
    ("marketplace.jobs", b"job_pd_1", orjson.dumps(CANCELLED)),  # valid: lands, reason and customer_id masked
    ("cdc.public.customers", CDC_KEY, _cdc(after=[NAME, MAIL, PHONE])),  # an object as bare values
    ("cdc.public.customers", CDC_KEY, _cdc(after=[["full_name", NAME], ["email", MAIL]])),  # as pairs
    (
        "cdc.public.customers",
        CDC_KEY,
        _cdc().replace(b'"full_name"', b'"full_\\u006eame"')[:-60],
    ),  # escaped key, truncated
    ("cdc.public.customers", CDC_KEY, _cdc().replace(b'"email"', b'"email":"x","email"', 1)),  # a key twice
    (
        "marketplace.reviews",
        MAIL.encode("utf-16-le"),
        orjson.dumps(REVIEW | {"event_id": "0000ada0-0000-0000-4000-800000000034"}),
    ),
    (
        "marketplace.reviews",
        MAIL.encode("utf-16"),
        orjson.dumps(REVIEW | {"event_id": "0000ada0-0000-0000-4000-800000000035"}),
    ),
]
LANDED = 7  # the valid customer, review and job records, and four reviews under odd keys


def _found(lake: Settings) -> list[str]:
    """The planted values (and their simple variants) in any file under the home, decoded."""
    assert any(p.suffix == ".parquet" for p in lake.home.rglob("*"))
    return [str(f) for f in scan(lake.home, PLANTED, lake.lake)]


def test_no_planted_personal_data_is_written_in_clear(lake: Settings):
    producer = Producer({"bootstrap.servers": lake.bootstrap_servers})
    for topic, key, value in RECORDS:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0

    stats = Lander(lake).run(follow=False)

    assert (stats.landed, stats.quarantined) == (LANDED, len(RECORDS) - LANDED)
    assert _found(lake) == []
    reviews = read_table(lake, "marketplace.reviews", ["_key", "_key_bytes", "comment"]).to_pylist()
    assert {r["comment"] for r in reviews} == {"call me at <email> or <phone>"}
    jobs = read_table(lake, "marketplace.jobs", ["customer_id", "reason"]).to_pylist()
    assert jobs == [{"customer_id": "<email>", "reason": "customer asked to call <phone> or write to <email>"}]
    assert_exactly_once(lake)


def test_keys_that_are_not_utf8_are_kept_byte_for_byte(lake: Settings):
    producer = Producer({"bootstrap.servers": lake.bootstrap_servers})
    producer.produce("marketplace.reviews", key=NOT_UTF8_KEY, value=orjson.dumps(REVIEW | {"comment": "fine"}))
    producer.produce("marketplace.reviews", key=NOT_UTF8_KEY, value=b"{not json")
    producer.produce("marketplace.reviews", key=b"tp_0001", value=orjson.dumps(REVIEW | {"comment": "fine"}))
    assert producer.flush(10) == 0

    Lander(lake).run(follow=False)

    for table in ("marketplace.reviews", "_quarantine"):
        rows = read_table(lake, table, ["_key", "_key_bytes"]).to_pylist()
        escaped = [r for r in rows if r["_key"] == r"tp_\xff\xfe0001"]  # readable, escaped
        assert [r["_key_bytes"] for r in escaped] == [NOT_UTF8_KEY], table  # the original bytes, recoverable
    landed = read_table(lake, "marketplace.reviews", ["_key", "_key_bytes"]).to_pylist()
    assert {"_key": "tp_0001", "_key_bytes": None} in landed


def test_a_different_key_on_the_lake_is_refused_and_rotation_is_explicit(lake: Settings):
    producer = Producer({"bootstrap.servers": lake.bootstrap_servers})
    producer.produce("marketplace.reviews", key=b"tp_0001", value=orjson.dumps(REVIEW))
    assert producer.flush(10) == 0
    assert run_cli("ingest", "--once", settings=lake).returncode == 0

    other = "another-personal-data-key-for-this-lake"
    refused = run_cli("ingest", "--once", settings=lake, env={"TRADELAKE_PII_KEY": other})
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tradelake: error: the personal-data key"), refused.stderr
    assert other not in refused.stderr + refused.stdout

    rotated = run_cli("pii-key", "rotate", settings=lake, env={"TRADELAKE_PII_KEY": other})
    assert rotated.returncode == 0, rotated.stderr
    # the first ingest reserved batch ids 1…BATCH_ID_BLOCK: the new key starts above them
    assert f"from batch {BATCH_ID_BLOCK + 1} on" in rotated.stdout and other not in rotated.stdout
    producer.produce("marketplace.reviews", key=b"tp_0001", value=orjson.dumps(REVIEW))
    assert producer.flush(10) == 0
    assert run_cli("ingest", "--once", settings=lake, env={"TRADELAKE_PII_KEY": other}).returncode == 0
    keys = read_table(lake, "_pii_keys", ["from_batch", "reason"]).sort_by("from_batch").to_pylist()
    assert keys == [{"from_batch": 1, "reason": "first use"}, {"from_batch": BATCH_ID_BLOCK + 1, "reason": "rotated"}]
    assert run_cli("ingest", "--once", settings=lake).returncode != 0, "the old key is refused now"
