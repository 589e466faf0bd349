"""Routing a large batch in parallel slices, or from many chunks, gives exactly what one
query over one chunk gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

import pipelines.landing.router as router_module
from pipelines.contracts import load_contracts
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.simulator import Simulation, SimulationConfig


def _gps_records() -> RawRecords:
    values = [
        r.value
        for r in Simulation(SimulationConfig(events=40_000, seed=4, malformed_rate=0.02)).records()
        if r.topic == "fleet.gps"
    ]
    n = len(values)
    return RawRecords.from_lists([i % 6 for i in range(n)], list(range(n)), [b"tp"] * n, values, [0] * n)


def test_sliced_routing_equals_single_query(monkeypatch):
    records = _gps_records()
    n = len(records)
    monkeypatch.setattr(router_module, "MIN_SLICE_ROWS", 5_000)  # slices of a batch this size
    assert n >= 2 * router_module.MIN_SLICE_ROWS, "enough records to be sliced"
    now = datetime.now(UTC)
    router = TopicRouter(load_contracts()["fleet.gps"], b"k")
    sliced = router.route(records, 1, now)
    monkeypatch.setattr(router_module, "MIN_SLICE_ROWS", 10**9)
    single = router.route(records, 1, now)
    assert sliced.landed.equals(single.landed)
    assert sliced.quarantined.equals(single.quarantined)
    assert len(sliced.quarantined) > 0 and len(sliced.landed) + len(sliced.quarantined) == n
    assert sliced.failures == single.failures


def test_records_consumed_in_many_chunks_route_as_one_chunk(monkeypatch):
    """As the consumer hands them over: one chunk per consume() call (DuckDB may reorder the
    rows of a multi-chunk input; raw values are matched to the query's rows by position)."""
    monkeypatch.setattr(router_module, "MIN_SLICE_ROWS", 10**9)
    records = _gps_records()
    chunked = RawRecords(pa.Table.from_batches(records.table.to_batches(max_chunksize=1_000)))
    assert chunked.table["value"].num_chunks > 10
    router = TopicRouter(load_contracts()["fleet.gps"], b"k")
    now = datetime.now(UTC)
    one, many = router.route(records, 1, now), router.route(chunked, 1, now)
    assert many.landed.equals(one.landed)
    assert many.quarantined.equals(one.quarantined)
    assert many.landed["_offset"].to_pylist() == sorted(many.landed["_offset"].to_pylist())
