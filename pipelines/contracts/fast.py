"""The fast path of a topic's contracts: one strict typed parse, then the rules as vectorized
predicates over typed columns, compiled from the same ``Rule``s as the routing query.

Why: the routing query (pipelines.contracts.compile) types and checks every field with JSON
functions, four parses of each value (~6 µs per record); nearly every record is valid, and
for those a typed parse answers most of what the query asks. This module only decides which
records *certainly* land, and with which values; every other record (a broken rule, a value
the parse refuses, a rule it cannot decide) goes through the routing query, which names each
broken rule. So the fast path can be incomplete, never different.

The parse is ``pyarrow.json`` with an explicit schema of the contract's fields (see
pipelines.landing.fastpath and docs/decisions.md, "Landing fast path"). What it guarantees of a
record it accepts, and why that is the routing query's judgement of the same record:

- strict RFC 8259 text (no trailing comma, comment, leading zero; no number beyond double),
  every key declared and none twice in an object; only NaN and ±Infinity get through, so
  every non-null ``float`` column must be finite here (as the type rule asks);
- each field of exactly its declared JSON kind: a string for ``str``, an integer within
  BIGINT for ``int``, any number for ``float``, a boolean, an object for ``dict``, or null;
- a field absent and a field null look alike after the parse: ``expect_column_to_exist``
  (absent fails, null passes) is judged by the query for every null value.

A record lands here when its suite is named by (event_type, schema_version), the columns its
suite does not declare are null (they would not land from it), and every critical rule
passes. Warning and info rules are evaluated here too, as the query does, and counted.
``mostly`` plays no part in routing, here as in the query: it is the batch-level judgement
(pipelines.landing.validation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from pipelines.contracts.compile import (
    DISPATCH_FIELDS,
    _broken,
    _ident,
    _Scope,
    check_connection,
    rule_list,
    split_rules,
    sql_str,
)
from pipelines.contracts.suites import TYPE_LIST, Column, Contract, Rule, TopicContracts


class NotVectorized(Exception):
    """A rule the typed columns cannot decide exactly: its suite's records take the query."""


def presence(c: Column) -> str:
    """The name of the typed relation's column saying whether dict column ``c`` is an object."""
    return "_o_" + c.name


class _TypedScope(_Scope):
    """Column paths mapped to the typed relation's columns (one per landed column, a presence
    flag per dict column), for the same rule SQL the routing query uses."""

    def value(self, path: str, where: str) -> str:
        col = self.column(path, where)
        if not col.landed:  # a rule on an object's JSON type: the query's business
            raise NotVectorized(where)
        return _ident(col.name)

    def json_type(self, path: str, where: str) -> str:
        raise NotVectorized(where)

    def present(self, path: str, where: str) -> str:
        col = self.column(path, where)
        return f"({_ident(col.name)} IS NOT NULL)" if col.landed else _ident(presence(col))

    def violation(self, rule: Rule, where: str) -> str:
        if rule.kind == TYPE_LIST:  # the parse took only the listed JSON kinds (floats: see finite)
            return "false"
        if rule.kind == "expect_column_to_exist":  # absent or null: the query tells them apart
            return f"NOT {self.present(rule.columns[0], where)}"
        return super().violation(rule, where)


@dataclass(frozen=True)
class FastPlan:
    """What the fast path of one topic runs: the parse schema and the query over its columns.

    ``sql`` reads a relation ``typed`` (the columns of ``columns``: landed ones by name, dict
    ones as a presence flag) and returns, per row, ``_pass`` (it lands), ``_contract`` (the
    suite that judged it) and ``_warnings`` (the warning and info rules it broke).
    """

    schema: pa.Schema
    columns: tuple[Column, ...]
    sql: str
    misfit: str  # RE2: a declared key followed by a value of another kind (see misfit_pattern)


def _parse_schema(columns: list[Column]) -> pa.Schema:
    """The record as nested structs: each landed column in its value's type, each dict column
    an object of its declared fields (an undeclared key makes the parse refuse the record)."""
    tree: dict[str, Any] = {}
    for c in columns:
        node = tree
        *parents, leaf = c.path.split(".")
        for name in parents:
            node = node.setdefault(name, {})
        if c.landed:
            node[leaf] = c.value_type
        else:
            node.setdefault(leaf, {})

    def field(name: str, sub: Any) -> pa.Field:
        if isinstance(sub, dict):
            return pa.field(name, pa.struct([field(k, v) for k, v in sub.items()]))
        return pa.field(name, sub)

    return pa.schema([field(k, v) for k, v in tree.items()])


# What a value of another JSON kind starts with, per landed type (null is every column's).
_OTHER_KINDS = {"VARCHAR": r"-0-9tf\[{", "BIGINT": r"\"tf\[{", "DOUBLE": r"\"tf\[{", "BOOLEAN": r"-0-9\"\[{"}
_NOT_OBJECT = r"-0-9\"tf\["


def misfit_pattern(columns: list[Column]) -> str:
    """A regex for text where a declared field's key is followed by a value of another kind:
    the parse would refuse such a record, and a refusal costs a re-read of its block; these
    go to the routing query at once. It matches keys at any depth, and inside strings: a
    false alarm only costs the record the routing query, never a different judgement."""
    by_kind: dict[str, set[str]] = {}
    for c in columns:
        by_kind.setdefault(_OTHER_KINDS[c.sql_type] if c.landed else _NOT_OBJECT, set()).add(c.path.split(".")[-1])
    return "|".join(
        f'"(?:{"|".join(re.escape(n) for n in sorted(names))})"[ \t]*:[ \t]*[{starts}]'
        for starts, names in sorted(by_kind.items())
    )


def _gate(contract: Contract, columns: list[Column], scope: _TypedScope) -> str:
    """SQL true when a row of ``contract`` certainly lands with the values of ``typed``."""
    declared = {c.path for c in contract.columns()}
    checks = [f"{scope.present(c.path, contract.name)} IS NOT TRUE" for c in columns if c.path not in declared]
    checks += [
        f"({_ident(c.name)} IS NULL OR isfinite({_ident(c.name)}))"
        for c in columns
        if c.landed and c.sql_type == "DOUBLE"
    ]
    broken = [f"coalesce({_broken(contract, i, scope)}, false)" for i, r in enumerate(contract.rules) if r.critical]
    if broken:
        checks.append(f"NOT ({' OR '.join(broken)})")
    return " AND ".join(checks) or "true"


def fast_plan(tc: TopicContracts) -> FastPlan | None:
    """The fast path of topic ``tc``; None when none of its suites can take it (every record
    then goes through the routing query)."""
    columns = tc.columns()
    scope = _TypedScope(columns)
    gates, warned, names = [], [], []
    for c in tc.contracts:
        try:
            gate, warnings = _gate(c, columns, scope), rule_list(c, scope, critical=False)
        except NotVectorized:
            continue
        gates.append(f"WHEN {sql_str(c.name)} THEN {gate}")
        warned.append(f"WHEN {sql_str(c.name)} THEN {warnings}")
        if not tc.is_cdc:
            event_type, version = (scope.value(p, tc.topic) for p in DISPATCH_FIELDS)
            names.append(
                f"WHEN {event_type} = {sql_str(c.event_type)} AND {version} = {c.schema_version} THEN {sql_str(c.name)}"
            )
    if not gates:
        return None
    suite = sql_str(tc.contracts[0].name) if tc.is_cdc else f"CASE {' '.join(names)} END"
    sql = f"""
WITH dispatched AS (SELECT *, {suite} AS _suite FROM typed)
SELECT coalesce(CASE _suite {" ".join(gates)} END, false) AS _pass, _suite AS _contract,
       {split_rules(f"CASE _suite {' '.join(warned)} END")} AS _warnings
FROM dispatched
"""
    plan = FastPlan(_parse_schema(columns), tuple(columns), sql, misfit_pattern(columns))
    return plan if _runs(plan) else None


def typed_schema(plan: FastPlan) -> pa.Schema:
    """The relation ``typed`` the plan's query reads."""
    return pa.schema([(c.name, c.value_type) if c.landed else (presence(c), pa.bool_()) for c in plan.columns])


def _runs(plan: FastPlan) -> bool:
    """Whether DuckDB binds the fast query: an ``unexpected_rows_query`` may name what only
    the routing query's relation has; such a topic keeps the routing query alone."""
    with check_connection() as con:
        con.register("typed", typed_schema(plan).empty_table())
        try:
            con.execute(plan.sql).fetchall()
        except duckdb.Error:
            return False
    return True
