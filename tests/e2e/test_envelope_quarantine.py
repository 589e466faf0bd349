"""Envelope-level bad input goes to quarantine with its reason; tombstones are counted."""

from __future__ import annotations

import orjson
import pyarrow.compute as pc
from confluent_kafka import Producer

from pipelines.contracts.compile import NO_DISPATCH
from pipelines.landing.ingest import Lander
from tests.e2e.lake_checks import assert_exactly_once, read_table

GOOD_JOB = {
    "event_id": "0b4d0c1e-1a2b-4c3d-8e9f-0123456789ab",
    "event_type": "job.posted",
    "event_time": "2026-11-23T10:15:30.123Z",
    "schema_version": 1,
    "job_id": "job_1",
    "customer_id": "cus_1",
    "trade": "plumber",
    "region": "nyc",
    "urgency": "urgent",
    "budget_cents": None,
    "currency": "USD",
    "site_lat": 40.7,
    "site_lon": -74.0,
}

CASES = {  # payload -> the rule its quarantine row must name
    b"\xff\xfe{}": "value is UTF-8 text",
    b'{"event_id": "trunc': "value is valid JSON",
    b"": "value is valid JSON",
    b"[1, 2, 3]": "value is a JSON object",
    orjson.dumps({k: v for k, v in GOOD_JOB.items() if k != "event_id"}): "event_id is required",
    orjson.dumps(GOOD_JOB | {"schema_version": "1"}): NO_DISPATCH,
    orjson.dumps(GOOD_JOB | {"event_type": "job.exploded"}): "no contract for job.exploded v1",
    orjson.dumps(GOOD_JOB | {"schema_version": 9}): "no contract for job.posted v9",
    orjson.dumps(GOOD_JOB | {"event_id": "not-a-uuid"}): "event_id is a UUID",
}


def test_each_envelope_class_is_quarantined_with_its_rule(lake):
    producer = Producer({"bootstrap.servers": lake.bootstrap_servers})
    producer.produce("marketplace.jobs", key=b"job_1", value=orjson.dumps(GOOD_JOB))
    for payload in CASES:
        producer.produce("marketplace.jobs", key=b"job_1", value=payload)
    producer.produce("marketplace.jobs", key=b"job_1", value=None)  # a null value is no tombstone here
    producer.produce("cdc.public.customers", key=b'{"customer_id": "cus_1"}', value=None)  # a CDC tombstone
    assert producer.flush(10) == 0

    stats = Lander(lake).run(follow=False)

    assert (stats.landed, stats.tombstones) == (1, 1)
    assert stats.quarantined == len(CASES) + 1
    quarantine = read_table(lake, "_quarantine", ["_topic", "raw", "rules", "reason"])
    rows = quarantine.filter(pc.equal(quarantine["_topic"], "marketplace.jobs")).to_pylist()
    by_raw = {r["raw"]: (r["rules"], r["reason"]) for r in rows}
    for payload, rule in CASES.items():
        rules, reason = by_raw[payload]
        assert rule in rules, (payload, rules)
        assert rule in reason
    assert "value is valid JSON" in by_raw[None][0]
    assert_exactly_once(lake)
