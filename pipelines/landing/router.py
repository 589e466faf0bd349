"""Split one topic's share of a micro-batch into landed rows, quarantined rows and tombstones.

The decision is the compiled contract query (pipelines.contracts.compile); this module feeds
it the raw records, applies the personal-data hash and masks (pipelines.pii), and shapes
the two output tables.
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.contracts import TopicContracts, load_contracts
from pipelines.contracts.compile import BATCH_SCHEMA, LINEAGE, register_functions, routing_sql
from pipelines.contracts.fast import fast_plan
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import (
    LINEAGE_FIELDS,
    LINEAGE_TYPES,
    PARTITION_COLUMN,
    PARTITION_FIELD,
    QUARANTINE_SCHEMA,
    RAW_SCHEMA,
    topic_schema,
)
from pipelines.landing.fastpath import FastRows, fast_rows
from pipelines.landing.views import only_valid
from pipelines.pii import Redactor, hash_column


@dataclass
class RawRecords:
    """One topic's records of a micro-batch, as consumed (columns of RAW_SCHEMA)."""

    table: pa.Table

    @staticmethod
    def from_lists(
        partitions: list[int], offsets: list[int], keys: list, values: list, timestamps: list[int]
    ) -> RawRecords:
        return RawRecords(pa.table([partitions, offsets, keys, values, timestamps], schema=RAW_SCHEMA))

    def __len__(self) -> int:
        return self.table.num_rows

    def slice(self, start: int, stop: int) -> RawRecords:
        return RawRecords(self.table.slice(start, stop - start))


@dataclass
class Routed:
    landed: pa.Table
    quarantined: pa.Table
    tombstone_partitions: list[int] = field(default_factory=list)
    rows_per_contract: dict[str | None, int] = field(default_factory=dict)
    failures: dict[tuple[str | None, str], int] = field(default_factory=dict)

    @staticmethod
    def concat(parts: list[Routed]) -> Routed:
        """The routing of consecutive slices, as if routed at once (order kept)."""
        rows: Counter = Counter()
        failures: Counter = Counter()
        for part in parts:
            rows.update(part.rows_per_contract)
            failures.update(part.failures)
        return Routed(
            landed=pa.concat_tables([p.landed for p in parts]),
            quarantined=pa.concat_tables([p.quarantined for p in parts]),
            tombstone_partitions=[t for p in parts for t in p.tombstone_partitions],
            rows_per_contract=dict(rows),
            failures=dict(failures),
        )


def _utf8_text(values: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Values as text, with a flag per record; invalid UTF-8 becomes NULL, flag false.

    Arrow validates UTF-8 when casting binary to string, all or nothing, and the cast shares
    the binary buffers: valid values are not copied. A failing cast is retried in chunks,
    smaller and smaller, to find the few records that are not UTF-8 (a few dozen values are
    decoded one by one); the text is then the same buffers with those records hidden as
    NULL (``views.only_valid``), not a copy.
    """
    try:
        return values.cast(pa.string()), pa.repeat(True, len(values))
    except pa.ArrowInvalid:
        pass
    utf8 = np.ones(len(values), np.bool_)
    _find_invalid(values, 0, utf8, chunk=4096)
    valid = utf8 & pc.is_valid(values).to_numpy(zero_copy_only=False)
    return only_valid(values, valid, pa.string()), pa.array(utf8)


def _find_invalid(values: pa.Array, first: int, utf8: np.ndarray, chunk: int) -> None:
    """Set ``utf8[first + i]`` false for each value ``i`` of ``values`` that is not UTF-8."""
    for start in range(0, len(values), chunk):
        part = values.slice(start, chunk)
        try:
            part.cast(pa.string())
        except pa.ArrowInvalid:
            if chunk > 64:
                _find_invalid(part, first + start, utf8, chunk // 8)
                continue
            for i, v in enumerate(part.to_pylist()):
                utf8[first + start + i] = _is_utf8(v)


def _is_utf8(value: bytes | None) -> bool:
    if value is None:
        return True
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _key_lineage(keys: pa.Array, text: pa.Array, utf8: pa.Array) -> tuple[pa.Array, pa.Array]:
    """``_key`` and ``_key_bytes`` of the records' Kafka keys (see LINEAGE_FIELDS).

    A key that is not UTF-8 keeps its bytes in ``_key_bytes``; ``_key`` shows it with
    ``\\xNN`` escapes for the undecodable bytes, readable but not the key itself.
    """
    if pc.all(utf8).as_py():
        return text, pa.nulls(len(keys), pa.binary())
    bad = pc.invert(utf8)
    escaped = [k.decode("utf-8", "backslashreplace") for k in pc.filter(keys, bad).to_pylist()]
    return (
        pc.replace_with_mask(text, bad, pa.array(escaped, pa.string())),
        pc.if_else(utf8, pa.scalar(None, pa.binary()), keys),
    )


def _redactor(contracts: TopicContracts, pii_key: bytes) -> Redactor:
    """The redactor of a topic, from every topic's contracts: any record can be sent to any
    topic (a CDC row to a marketplace topic), so each topic's quarantine looks for all of
    their personal-data field names, and for their containers: the objects that hold such
    fields (``after``) or that a contract declares as an object (``source``)."""
    every = [c for tc in (*load_contracts().values(), contracts) for c in tc.columns()]
    fields = {c.path.rsplit(".", 1)[-1] for c in every if c.personal_data}
    containers = {part for c in every if c.personal_data for part in c.path.split(".")[:-1]}
    containers |= {c.path.rsplit(".", 1)[-1] for c in every if set(c.type_list) == {"dict"}}
    return Redactor(pii_key, frozenset(fields), frozenset(containers))


# Rules that confine a text column to values a contract lists or spells out.
_CLOSED_RULES = ("expect_column_values_to_be_in_set", "expect_column_values_to_match_regex")


def open_text_columns(contracts: TopicContracts) -> list[str]:
    """The landed text columns that can hold whatever a producer writes, shape-masked like
    free text: a column declared free text, and any other whose every declaring suite leaves
    it unconfined (no critical in-set or regex rule on every row). An id or a ``producer``
    can carry an e-mail address as well as a comment can; a timestamp or a currency code,
    confined by its rule, cannot, and skips the scan."""
    confined: dict[str, bool] = {}
    for contract in contracts.contracts:
        ruled = {r.column for r in contract.rules if r.kind in _CLOSED_RULES and r.critical and r.condition is None}
        for c in contract.columns():
            confined[c.path] = confined.get(c.path, True) and c.path in ruled
    free = {c.path for c in contracts.free_text_columns()}
    return [
        c.name
        for c in contracts.landed_columns()
        if pa.types.is_string(c.arrow_type) and not c.personal_data and (c.path in free or not confined[c.path])
    ]


def _one_array(column: pa.ChunkedArray) -> pa.Array:
    """The column as one array; a single chunk as it is (``combine_chunks`` would copy it)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


def _timestamps(ms: pa.Array) -> pa.Array:
    """Kafka timestamps (ms); the client reports -1 when the broker gave none."""
    return pc.if_else(pc.less(ms, 0), None, ms).cast(pa.timestamp("ms", tz="UTC"))


def _value_counts(column: pa.ChunkedArray) -> dict:
    return {row["values"]: row["counts"] for row in pc.value_counts(column).to_pylist()}


def _rule_counts(judged: pa.Table, column: str = "_rules") -> dict[tuple[str | None, str], int]:
    """How many rows broke each (contract, rule) listed in ``column`` (``_rules``: critical,
    ``_warnings``: warning and info rules, counted but never quarantining)."""
    rules = judged[column].combine_chunks()
    if len(rules.values) == 0:
        return {}
    contract = pc.take(judged["_contract"], pc.list_parent_indices(rules))
    pairs = (
        pa.table({"contract": contract, "rule": rules.values})
        .group_by(["contract", "rule"])
        .aggregate([("rule", "count")])
    )
    return {(r["contract"], r["rule"]): r["rule_count"] for r in pairs.to_pylist()}


ROUTING_SLICES = 2
# A topic's share of a batch is sliced from twice this many rows. Landing routes two batches
# and two topics at once: at 50k-record batches, slicing GPS's ~40k rows too cost ~1 s of
# 14 on a 2M backlog (each slice pays the fixed costs again); at 200k-record batches slices
# ran as fast as whole topics and peaked ~140 MiB lower (docs/benchmarks.md, 2026-12-02).
MIN_SLICE_ROWS = 50_000
# Below this many rows a slice takes the routing query alone: the fast path (its parse, its own
# query, then the routing query for the rows it does not land) was slower on small slices and
# broke even at ~4,000 rows with prepared queries (docs/benchmarks.md); whole runs at 1,000
# and 8,000 were within noise.
FAST_MIN_ROWS = 8_000


@cache
def _database() -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB for every router: its connections share one buffer manager and
    allocator, instead of a database instance (and its cached memory) per topic and slice.

    DuckDB rewrites an ``IN`` list of five or more constants as a hash join against the list;
    a routing query has dozens of small lists (type lists, value sets), and each such join
    cost ~3 MiB and a pipeline of its own per query; compared in place, a list needs neither.
    """
    con = duckdb.connect(config={"threads": 1, "allocator_flush_threshold": "16MB", "disabled_optimizers": "in_clause"})
    register_functions(con)  # the strict-JSON check the routing queries call
    return con


@cache
def _slice_pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=ROUTING_SLICES, thread_name_prefix="tradelake-route")


class _Slot:
    """The input of a prepared query. DuckDB reads a registered object that exports
    ``__arrow_c_stream__`` afresh at every execution (a stream is read once), so a statement
    is prepared once and each run puts its own table here; a registered table would be read
    as it was when the statement was prepared."""

    def __init__(self, schema: pa.Schema) -> None:
        self.empty = schema.empty_table()
        self.table = self.empty

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        return self.table.__arrow_c_stream__(requested_schema)


class _Prepared:
    """A routing or fast-path query prepared on a connection of its own, over a ``_Slot``.

    Parsing, binding and planning a routing query (hundreds of expressions) cost 7–15 ms
    at every batch, whatever its rows; prepared, a run starts in 1–3 ms (docs/benchmarks.md).
    """

    def __init__(self, sql: str, name: str, schema: pa.Schema) -> None:
        self.con = _database().cursor()
        self.slot = _Slot(schema)
        self.con.register(name, self.slot)
        self.con.execute(f"PREPARE q AS {sql}")

    def run(self, table: pa.Table) -> pa.Table:
        self.slot.table = table
        try:
            # DuckDB sizes its Arrow buffers for ``batch_size`` rows up front (default 1M rows:
            # ~120 MiB per query, whatever the batch); the batch's own length is what is needed.
            return self.con.execute("EXECUTE q").to_arrow_table(batch_size=max(len(table), 1))
        finally:
            self.slot.table = self.slot.empty  # the batch is not kept alive by an idle statement


# Idle prepared statements per query: as many of a query as ever ran at once (a thread's set
# of every topic's statements held ~10 MiB), for the most recently used queries (a process
# that builds routers for many contracts, as the tests do, does not keep them all).
PREPARED_QUERIES = 64
_idle: OrderedDict[tuple[str, str, pa.Schema], list[_Prepared]] = OrderedDict()
_idle_lock = threading.Lock()


def _run_query(sql: str, batch: pa.Table, name: str = "batch") -> pa.Table:
    """``sql`` over ``batch`` (named ``name`` in it), on an idle prepared statement of it."""
    key = (sql, name, batch.schema)
    with _idle_lock:
        idle = _idle.get(key)
        statement = idle.pop() if idle else None
    if statement is None:
        statement = _Prepared(sql, name, batch.schema)
    try:
        return statement.run(batch)
    finally:
        with _idle_lock:
            _idle.setdefault(key, []).append(statement)
            _idle.move_to_end(key)
            while len(_idle) > PREPARED_QUERIES:
                for old in _idle.popitem(last=False)[1]:
                    old.con.close()


def _run_typed(sql: str, typed: pa.Table) -> pa.Table:
    return _run_query(sql, typed, "typed")


def _no_rules(n: int) -> pa.Array:
    return pa.ListArray.from_arrays(pa.array(np.zeros(n + 1, np.int32)), pa.array([], pa.string()))


class TopicRouter:
    """Routes batches of one topic; holds the compiled query and the landed schema."""

    def __init__(self, contracts: TopicContracts, pii_key: bytes, fast: bool = True) -> None:
        self.contracts = contracts
        self.sql = routing_sql(contracts)
        # The fast path (pipelines.contracts.fast): rows it lands skip the routing query.
        # ``fast=False`` routes every row through the query (the tests compare both).
        self.fast = fast_plan(contracts) if fast else None
        self.fast_min_rows = FAST_MIN_ROWS
        self.judged_schema = _run_query(self.sql, BATCH_SCHEMA.empty_table()).schema
        self.columns = contracts.landed_columns()
        self.schema = topic_schema([(c.name, c.arrow_type) for c in self.columns])
        self.pii_columns = [c.name for c in self.columns if c.personal_data]
        # Landed text that can hold anything (free text, unconfined ids) and the Kafka key: masked.
        self.masked_columns = [*open_text_columns(contracts), "_key", "_key_bytes"]
        self.pii_key = pii_key
        self.redactor = _redactor(contracts, pii_key)

    def route(self, records: RawRecords, batch_id: int, ingested_at: datetime) -> Routed:
        """Route one batch; a large one (MIN_SLICE_ROWS) as parallel slices.

        The routing query does not speed up with DuckDB's own threads here, but slices on
        separate connections run in parallel (DuckDB releases the GIL). The whole routing of
        a slice (Arrow conversion, the query, shaping, hashing) runs in the slice's thread,
        so both cores work through all of it, not just the query.
        """
        if len(records) < MIN_SLICE_ROWS * 2:
            return self._route(records, batch_id, ingested_at)
        size = -(-len(records) // ROUTING_SLICES)

        def route_slice(i: int) -> Routed:
            return self._route(records.slice(i * size, (i + 1) * size), batch_id, ingested_at)

        return Routed.concat(list(_slice_pool().map(route_slice, range(ROUTING_SLICES))))

    def _route(self, records: RawRecords, batch_id: int, ingested_at: datetime) -> Routed:
        # One chunk per column: DuckDB may return the rows of a multi-chunk input out of
        # order, and the query's rows are matched to the raw values by position.
        raw = {name: _one_array(records.table[name]) for name in RAW_SCHEMA.names}
        values = raw["value"]
        tombstone = pc.is_null(values)
        tombstones: list[int] = []
        if self.contracts.is_cdc and pc.any(tombstone).as_py():
            tombstones = pc.filter(raw["partition"], tombstone).to_pylist()
            keep = pc.invert(tombstone)
        else:
            keep = None
        text, utf8 = _utf8_text(values)
        key, key_bytes = _key_lineage(raw["key"], *_utf8_text(raw["key"]))
        batch = pa.table(
            {
                "_topic": pa.repeat(pa.scalar(self.contracts.topic, pa.string()), len(values)),
                "_partition": raw["partition"],
                "_offset": raw["offset"],
                "_key": key,
                "_key_bytes": key_bytes,
                "_kafka_timestamp": _timestamps(raw["timestamp"]),
                "_v": text,
                "_utf8": utf8,
                "_raw": values,
            }
        )
        if keep is not None:
            batch = batch.filter(keep)
        judged, order = self._judge(batch.drop_columns(["_raw", "_key_bytes"]))
        # Rule names quote the record (``no contract for <event_type> v1``) and are counted
        # into the batch's validation result: masked before anything reads them.
        judged = _mask_text_columns(judged, self.redactor, ["_rules", "_warnings"])

        def in_batch_order(column: pa.ChunkedArray) -> pa.ChunkedArray:
            return column if order is None else column.take(order)

        if not in_batch_order(judged["_offset"]).equals(batch["_offset"]):  # raw values are matched by position
            raise TradelakeError(f"{self.contracts.topic}: the routing query returned rows out of order")
        valid = in_batch_order(pc.equal(pc.list_value_length(judged["_rules"]), 0))
        n = len(judged)
        judged = judged.append_column(
            "_ingested_at", pa.repeat(pa.scalar(ingested_at, LINEAGE_TYPES["_ingested_at"]), n)
        )
        judged = judged.append_column("_batch_id", pa.repeat(pa.scalar(batch_id, pa.int64()), n))
        judged = judged.append_column(PARTITION_COLUMN, pa.repeat(pa.scalar(ingested_at.date(), PARTITION_FIELD[1]), n))
        invalid = pc.invert(valid)

        def rows(keep: pa.Array) -> pa.Table:
            """The judged rows ``keep`` selects (in batch order), with their ``_key_bytes``: one
            ``take`` puts them in batch order and selects them at once."""
            chosen = judged.filter(keep) if order is None else judged.take(order.filter(keep))
            return chosen.append_column("_key_bytes", batch["_key_bytes"].filter(keep))

        return Routed(
            landed=self._landed(rows(valid)),
            quarantined=self._quarantined(rows(invalid), batch["_raw"].filter(invalid)),
            tombstone_partitions=tombstones,
            rows_per_contract=_value_counts(judged["_contract"]),
            failures=_rule_counts(judged) | _rule_counts(judged, "_warnings"),
        )

    def _judge(self, batch: pa.Table) -> tuple[pa.Table, pa.Array | None]:
        """The routing query's output for ``batch``: the rows the fast path lands as it would
        have judged them, the query itself for the others. The rows are in batch order, or
        else the second value is the indices that put them in it (``take``): reordering is a
        copy of every column, done once with the selection of landed and quarantined rows."""
        if self.fast is None or len(batch) < self.fast_min_rows:
            return _run_query(self.sql, batch), None
        fast = fast_rows(self.fast, _one_array(batch["_v"]), _one_array(batch["_utf8"]), _run_typed)
        landed = self._judged_fast(batch, fast)
        if len(fast.positions) == len(batch):
            return landed, None
        rest = np.setdiff1d(np.arange(len(batch)), fast.positions, assume_unique=True)
        slow = _run_query(self.sql, batch.take(pa.array(rest)))
        if len(fast.positions) == 0:
            return slow, None
        return pa.concat_tables([landed, slow]), pc.sort_indices(pa.array(np.concatenate([fast.positions, rest])))

    def _judged_fast(self, batch: pa.Table, fast: FastRows) -> pa.Table:
        """The fast path's rows as the routing query returns them (same columns and types)."""
        at = pa.array(fast.positions)
        columns = {name: batch[name].take(at) for name in LINEAGE}
        columns |= {c.name: fast.typed[c.name] for c in self.columns}
        columns |= {"_rules": _no_rules(len(at)), "_warnings": fast.judged["_warnings"]}
        columns["_contract"] = fast.judged["_contract"]
        return pa.table([columns[name] for name in self.judged_schema.names], names=self.judged_schema.names).cast(
            self.judged_schema
        )

    def _landed(self, rows: pa.Table) -> pa.Table:
        for name in self.pii_columns:
            hashed = hash_column(self.pii_key, rows[name].to_pylist())
            rows = rows.set_column(rows.schema.get_field_index(name), name, pa.array(hashed, pa.string()))
        for name in self.masked_columns:
            masked = self.redactor.array(_one_array(rows[name]))
            rows = rows.set_column(rows.schema.get_field_index(name), name, masked)
        return rows.select(self.schema.names).cast(self.schema)

    def _quarantined(self, rows: pa.Table, raw: pa.ChunkedArray) -> pa.Table:
        raw_values = [None if v is None else self.redactor.raw(v) for v in raw.to_pylist()]
        contract = rows["_contract"]
        reasons = [
            f"{c or self.contracts.topic}: " + "; ".join(r)
            for c, r in zip(contract.to_pylist(), rows["_rules"].to_pylist(), strict=True)
        ]
        has = set(rows.column_names)
        n = len(rows)
        quarantined = pa.table(
            {
                **{name: rows[name] for name, _ in LINEAGE_FIELDS},
                "event_type": rows["event_type"] if "event_type" in has else pa.nulls(n, pa.string()),
                "schema_version": rows["schema_version"] if "schema_version" in has else pa.nulls(n, pa.int64()),
                "contract": contract,
                "rules": rows["_rules"],
                "reason": pa.array(reasons, pa.string()),
                "raw": pa.array(raw_values, pa.binary()),
                PARTITION_COLUMN: rows[PARTITION_COLUMN],
            }
        ).cast(QUARANTINE_SCHEMA)
        # A quarantined record's own text reaches more than ``raw`` (redacted above): its key,
        # its event_type, and the reason, which quotes what the record said.
        return _mask_text_columns(quarantined, self.redactor, [n for n in quarantined.column_names if n != "raw"])


def _mask_text_columns(table: pa.Table, redactor: Redactor, names: list[str]) -> pa.Table:
    """The text columns (string, binary, list of strings) among ``names`` masked; others kept."""
    for i, f in enumerate(table.schema):
        if f.name not in names:
            continue
        column = _one_array(table[f.name])
        if pa.types.is_string(f.type) or pa.types.is_binary(f.type):
            masked = redactor.array(column)
        elif pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type):
            values = column.values
            masked_values = redactor.array(values)
            if masked_values is values:
                continue
            masked = pa.ListArray.from_arrays(column.offsets, masked_values, mask=column.is_null())
        else:
            continue
        if masked is not column:
            table = table.set_column(i, f.name, masked)
    return table
