"""Route a batch by both paths of a topic's router and insist they agree.

The fast path (pipelines.contracts.fast) decides which rows certainly land; the routing
query judges the others. Both must give the same landed rows and the same quarantine as the
routing query alone, to the bit (a ``-0.0`` is not a ``0.0`` in a Parquet file), and the
same counts. Every test that routes through ``route_both_ways`` is a differential test.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pyarrow as pa

from pipelines.contracts import TopicContracts
from pipelines.landing.router import RawRecords, Routed, TopicRouter

_ROUTERS: dict[tuple[int, bytes], tuple[TopicContracts, TopicRouter, TopicRouter]] = {}


def routers(contracts: TopicContracts, pii_key: bytes) -> tuple[TopicRouter, TopicRouter]:
    """The router with its fast path, and the same router judging every row by the query
    (built once per contracts object: a router compiles and test-runs its queries)."""
    key = (id(contracts), pii_key)
    if key not in _ROUTERS:
        fast = TopicRouter(contracts, pii_key)
        assert fast.fast is not None, f"{contracts.topic}: no fast path compiled"
        fast.fast_min_rows = 0  # the fast path for batches of any size (small by design here)
        _ROUTERS[key] = (contracts, fast, TopicRouter(contracts, pii_key, fast=False))
    return _ROUTERS[key][1:]


def _bits(table: pa.Table) -> pa.Table:
    """Floating-point columns as their bit patterns: ``equals`` takes -0.0 for 0.0."""
    for i, f in enumerate(table.schema):
        if pa.types.is_float64(f.type):
            table = table.set_column(i, f.name, table[f.name].combine_chunks().view(pa.int64()))
    return table


def differences(fast: Routed, detailed: Routed) -> list[str]:
    """How the two routings of one batch differ (empty: they agree exactly)."""
    found = []
    for name in ("landed", "quarantined"):
        a, b = getattr(fast, name), getattr(detailed, name)
        if a.schema != b.schema:
            found.append(f"{name} schema: {a.schema} != {b.schema}")
        elif not _bits(a).equals(_bits(b)):
            rows = [(x, y) for x, y in zip(a.to_pylist(), b.to_pylist(), strict=False) if x != y][:3]
            found.append(f"{name}: {len(a)} vs {len(b)} rows, first differences {rows}")
    for name in ("tombstone_partitions", "rows_per_contract", "failures"):
        if getattr(fast, name) != getattr(detailed, name):
            found.append(f"{name}: {getattr(fast, name)} != {getattr(detailed, name)}")
    return found


def route_both_ways(contracts: TopicContracts, records: RawRecords, pii_key: bytes = b"k") -> Routed:
    """``records`` routed with the fast path, after checking the query alone routes them the same."""
    fast, detailed = routers(contracts, pii_key)
    now = datetime.now(UTC)
    routed = fast.route(records, 1, now)
    problems = differences(routed, detailed.route(records, 1, now))
    assert not problems, f"{contracts.topic}: the fast path and the routing query disagree: {problems}"
    return routed
