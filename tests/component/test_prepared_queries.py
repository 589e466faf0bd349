"""Routing queries are prepared once and run over each batch: every run must read its own batch.

DuckDB reads a registered Arrow table as it was when a statement was prepared; the router's
statements read a slot exporting ``__arrow_c_stream__`` instead, which DuckDB reads afresh at
each execution. These tests fail if a run ever sees another run's rows (a DuckDB that cached
the stream, a statement shared by two threads at once) or if idle statements pile up.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import duckdb
import pyarrow as pa
import pytest

from pipelines.contracts import load_contracts
from pipelines.landing import router as router_module
from pipelines.landing.router import RawRecords, TopicRouter

SQL = "SELECT v * 2 AS w, count(*) OVER () AS n FROM batch"


def _doubled(values: list[int]) -> list[dict[str, int]]:
    return [{"w": v * 2, "n": len(values)} for v in values]


def test_each_run_reads_its_own_batch() -> None:
    for values in ([1, 2, 3], [10, 20], [], [7]):
        out = router_module._run_query(SQL, pa.table({"v": pa.array(values, pa.int64())}))
        assert out.to_pylist() == _doubled(values)


def test_concurrent_runs_of_one_query_keep_their_batches() -> None:
    def run(i: int) -> bool:
        values = list(range(i, i + 1 + i % 50))
        out = router_module._run_query(SQL, pa.table({"v": pa.array(values, pa.int64())}))
        return out.to_pylist() == _doubled(values)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(run, range(400)))


def test_an_idle_statement_keeps_no_batch() -> None:
    big = pa.table({"v": pa.array(range(100_000), pa.int64())})
    router_module._run_query(SQL, big)
    idle = router_module._idle[(SQL, "batch", big.schema)]
    assert idle and all(s.slot.table.num_rows == 0 for s in idle)


def test_a_statement_that_failed_runs_again() -> None:
    """A run that fails (here a cast) returns its statement to the pool; the next run of it works."""
    sql = "SELECT CAST(v AS INTEGER) AS w FROM batch"
    with pytest.raises(duckdb.ConversionException):
        router_module._run_query(sql, pa.table({"v": ["x"]}))
    assert router_module._run_query(sql, pa.table({"v": ["7"]}))["w"].to_pylist() == [7]


def test_idle_statements_are_bounded() -> None:
    table = pa.table({"v": pa.array([1], pa.int64())})
    for i in range(router_module.PREPARED_QUERIES + 10):
        assert router_module._run_query(f"SELECT v + {i} AS w FROM batch", table)["w"].to_pylist() == [1 + i]
    assert len(router_module._idle) <= router_module.PREPARED_QUERIES


@pytest.mark.parametrize("fast", [True, False])
def test_a_router_routes_batches_in_turn_as_each_alone(fast: bool) -> None:
    """Batch B routed right after batch A (same statements) lands as B routed first."""
    contracts = load_contracts()["marketplace.jobs"]

    def records(first: int, n: int) -> RawRecords:
        values = [
            (
                f'{{"event_id":"{i:08d}-0000-4000-8000-000000000000","event_type":"job.cancelled",'
                '"event_time":"2026-11-30T22:43:38.857Z","schema_version":1,"producer":"jobs-service/3.1.0",'
                f'"job_id":"job_{i:06d}","customer_id":"cus_1","reason":null}}'
            ).encode()
            if i % 7
            else b'{"event_type":"job.cancelled"}'  # quarantined: most fields missing
            for i in range(first, first + n)
        ]
        return RawRecords.from_lists([0] * n, list(range(first, first + n)), [b"k"] * n, values, [0] * n)

    now = datetime.now(UTC)
    a, b = records(0, 300), records(1000, 120)
    alone = TopicRouter(contracts, b"key", fast=fast)
    alone.fast_min_rows = 0
    b_alone = alone.route(b, 1, now)
    in_turn = TopicRouter(contracts, b"key", fast=fast)
    in_turn.fast_min_rows = 0
    a_routed = in_turn.route(a, 1, now)
    b_routed = in_turn.route(b, 1, now)
    assert len(a_routed.landed) + len(a_routed.quarantined) == 300
    assert b_routed.landed.equals(b_alone.landed)
    assert b_routed.quarantined.equals(b_alone.quarantined)
    assert b_routed.landed["_offset"].to_pylist() == [o for o in range(1000, 1120) if o % 7]
