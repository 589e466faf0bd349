"""Each topic's routing query runs as one pipeline: a scan and projections, no joins.

DuckDB rewrites an ``IN`` list of five or more constants as a hash join; a routing query has
dozens of such lists, and the joins cost memory and a pipeline each on every batch.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from pipelines.contracts import load_contracts
from pipelines.contracts.compile import routing_sql
from pipelines.landing.router import _database

CONTRACTS = load_contracts()


@pytest.mark.parametrize("topic", sorted(CONTRACTS))
def test_routing_query_plan_has_no_join(topic):
    batch = pa.table(
        {
            "_topic": pa.array([], pa.string()),
            "_partition": pa.array([], pa.int32()),
            "_offset": pa.array([], pa.int64()),
            "_key": pa.array([], pa.string()),
            "_kafka_timestamp": pa.array([], pa.timestamp("ms", tz="UTC")),
            "_v": pa.array([], pa.string()),
            "_utf8": pa.array([], pa.bool_()),
        }
    )
    con = _database().cursor()
    con.register("batch", batch)
    try:
        plan = "\n".join(row[1] for row in con.execute("EXPLAIN " + routing_sql(CONTRACTS[topic])).fetchall())
    finally:
        con.unregister("batch")
    assert "PROJECTION" in plan
    assert "JOIN" not in plan, plan
