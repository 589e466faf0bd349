"""Routing a large batch in parallel slices gives exactly what one query gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pipelines.landing.router as router_module
from pipelines.contracts import load_contracts
from pipelines.landing.router import MIN_SLICE_ROWS, RawRecords, TopicRouter
from pipelines.simulator import Simulation, SimulationConfig


def test_sliced_routing_equals_single_query(monkeypatch):
    values = [
        r.value
        for r in Simulation(SimulationConfig(events=40_000, seed=4, malformed_rate=0.02)).records()
        if r.topic == "fleet.gps"
    ]
    n = len(values)
    assert n >= 2 * MIN_SLICE_ROWS, "enough records to be sliced"
    records = RawRecords.from_lists([i % 6 for i in range(n)], list(range(n)), [b"tp"] * n, values, [0] * n)
    now = datetime.now(UTC)
    router = TopicRouter(load_contracts()["fleet.gps"], b"k")
    sliced = router.route(records, 1, now)
    monkeypatch.setattr(router_module, "MIN_SLICE_ROWS", 10**9)
    single = router.route(records, 1, now)
    assert sliced.landed.equals(single.landed)
    assert sliced.quarantined.equals(single.quarantined)
    assert len(sliced.quarantined) > 0 and len(sliced.landed) + len(sliced.quarantined) == n
    assert sliced.failures == single.failures
