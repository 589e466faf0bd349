"""A new contract file routes new records; what already landed or was quarantined stays put."""

from __future__ import annotations

import json
import shutil

import orjson
import pyarrow.compute as pc
from confluent_kafka import Producer

from pipelines.contracts.suites import default_contracts_dir
from tests.conftest import run_cli
from tests.e2e.lake_checks import assert_exactly_once, read_table


def _bid_v3(n: int) -> bytes:
    return orjson.dumps(
        {
            "event_id": f"0b4d0c1e-1a2b-4c3d-8e9f-{n:012d}",
            "event_type": "bid.placed",
            "event_time": "2026-11-23T10:15:30.123Z",
            "schema_version": 3,
            "bid_id": f"bid_{n}",
            "job_id": "job_1",
            "tradesperson_id": "tp_1",
            "amount_cents": 25_000,
            "currency": "USD",
            "includes_materials": False,
        }
    )


def test_adding_a_suite_routes_new_records_without_replay(lake, tmp_path):
    producer = Producer({"bootstrap.servers": lake.bootstrap_servers})
    producer.produce("marketplace.bids", key=b"job_1", value=_bid_v3(1))
    producer.flush(10)
    assert run_cli("ingest", "--once", settings=lake).returncode == 0

    contracts = tmp_path / "contracts"
    shutil.copytree(default_contracts_dir(), contracts)
    v2 = json.loads((contracts / "marketplace.bids" / "bid.placed.v2.json").read_text())
    v2["name"], v2["meta"]["schema_version"] = "marketplace.bids__bid.placed.v3", 3
    for e in v2["expectations"]:
        if e["kwargs"].get("column") == "schema_version" and "value_set" in e["kwargs"]:
            e["kwargs"]["value_set"], e["meta"]["rule"] = [3], "schema_version is 3"
    (contracts / "marketplace.bids" / "bid.placed.v3.json").write_text(json.dumps(v2))
    env = {"TRADELAKE_CONTRACTS": str(contracts)}
    assert run_cli("contracts", "check", env=env).returncode == 0

    producer.produce("marketplace.bids", key=b"job_1", value=_bid_v3(2))
    producer.flush(10)
    result = run_cli("ingest", "--once", settings=lake, env=env)
    assert result.returncode == 0, result.stderr

    landed = read_table(lake, "marketplace.bids", ["bid_id"])["bid_id"].to_pylist()
    quarantine = read_table(lake, "_quarantine", ["_topic", "reason"])
    quarantined = quarantine.filter(pc.equal(quarantine["_topic"], "marketplace.bids"))["reason"].to_pylist()
    assert landed == ["bid_2"]
    assert len(quarantined) == 1 and "no contract for bid.placed v3" in quarantined[0]
    assert_exactly_once(lake)
