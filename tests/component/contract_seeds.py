"""Valid records of every suite, judged valid by the router itself, for tests that break or
stretch one field at a time (the table-driven rule tests, the strict-parsing tests)."""

from __future__ import annotations

from functools import cache
from typing import Any

import orjson

from pipelines.contracts import TopicContracts, load_contracts
from pipelines.landing.router import RawRecords, Routed
from pipelines.simulator import Simulation, SimulationConfig
from tests.routing_paths import route_both_ways


def route(contracts: TopicContracts, values: list[bytes]) -> Routed:
    """Route ``values`` as one batch of partition 0, offsets 0…n-1, by the fast path and by
    the routing query alone, which must agree (tests.routing_paths)."""
    n = len(values)
    records = RawRecords.from_lists([0] * n, list(range(n)), [b"k"] * n, values, [0] * n)
    return route_both_ways(contracts, records)


def rules_by_offset(routed: Routed) -> dict[int, list[str]]:
    """Per offset, the rules its record broke ([] when it landed)."""
    rules: dict[int, list[str]] = {o: [] for o in routed.landed["_offset"].to_pylist()}
    quarantined = routed.quarantined
    for o, r in zip(quarantined["_offset"].to_pylist(), quarantined["rules"].to_pylist(), strict=True):
        rules[o] = r
    return rules


@cache
def seeds() -> dict[tuple[str, str], dict[str, Any]]:
    """A valid record per (suite, variant): variant 'd' / 'not-d' for CDC deletes vs the rest."""
    contracts = load_contracts()
    sim = Simulation(SimulationConfig(events=6000, seed=1, malformed_rate=0.0, redelivery_rate=0.0))
    candidates: dict[str, list[bytes]] = {}
    for r in sim.records():
        if r.value is not None:
            candidates.setdefault(r.topic, []).append(r.value)
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for topic, values in candidates.items():
        valid = set(route(contracts[topic], values).landed["_offset"].to_pylist())
        for i, v in enumerate(values):
            if i not in valid:
                continue
            record = orjson.loads(v)
            if contracts[topic].is_cdc:
                key = (contracts[topic].contracts[0].name, "d" if record["op"] == "d" else "not-d")
            else:
                key = (f"{topic}__{record['event_type']}.v{record['schema_version']}", "")
            found.setdefault(key, record)
    return found
