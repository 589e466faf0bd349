"""Compile a topic's contract suites into one vectorized DuckDB routing query.

Why compile instead of calling GX per row: GX costs ~50–75 ms per validation call, far too
slow to split every micro-batch row by row at 100k+ events/s; the same JSON suites compiled
into DuckDB predicates route a batch in one pass over the data. The suites stay the single
definition — this module only translates the expectation types listed in
docs/contracts-format.md and refuses any other.

The query reads a relation ``batch`` (lineage columns, ``_v`` the value as text or NULL when
it is not UTF-8, ``_utf8``) and returns, per record, the landed columns plus ``_rules``: the
names of the rules it broke (empty = valid) and ``_contract``: the suite that judged it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pipelines.contracts.suites import JSON_TYPES, Column, Contract, TopicContracts
from pipelines.errors import TradelakeError

LINEAGE = ("_topic", "_partition", "_offset", "_key", "_kafka_timestamp")

# Structural rules: they decide whether a record can be judged by any suite at all.
NOT_UTF8 = "value is UTF-8 text"
NOT_JSON = "value is valid JSON"
NOT_OBJECT = "value is a JSON object"
NO_DISPATCH = "event_type (string) and schema_version (integer) name a contract"

_ROW_CONDITION = re.compile(r"""^\s*([\w.]+)\s*(==|!=)\s*["']([^"']*)["']\s*$""")
_UNEXPECTED_ROWS = re.compile(r"^\s*SELECT\s+\*\s+FROM\s+\{batch\}\s+WHERE\s+(.+?)\s*;?\s*$", re.I | re.S)


def sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _accepted_json_types(type_list: Iterable[str]) -> str:
    """The JSON types a type list accepts, as an SQL list (each once, in a stable order)."""
    return ", ".join(sql_str(t) for t in sorted({t for name in type_list for t in JSON_TYPES[name]}))


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return sql_str(str(value))


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Scope:
    """Column paths of a topic mapped to their SQL value and JSON-type expressions."""

    def __init__(self, columns: list[Column]) -> None:
        self.columns = {c.path: c for c in columns}

    def column(self, path: str, where: str) -> Column:
        try:
            return self.columns[path]
        except KeyError:
            raise TradelakeError(f"{where}: column {path!r} has no type-list expectation") from None

    def value(self, path: str, where: str) -> str:
        col = self.column(path, where)
        return _ident("_t_" + col.name) if not col.landed else _ident(col.name)

    def json_type(self, path: str, where: str) -> str:
        return _ident("_t_" + self.column(path, where).name)

    def present(self, path: str, where: str) -> str:
        t = self.json_type(path, where)
        return f"({t} IS NOT NULL AND {t} <> 'NULL')"


def _violation(e: Mapping[str, Any], scope: _Scope, where: str) -> str:
    """SQL that is true when a row breaks expectation ``e``."""
    kind, kw = e["type"], e["kwargs"]
    if kind == "expect_column_to_exist":
        return "false"
    if kind == "unexpected_rows_expectation":
        m = _UNEXPECTED_ROWS.match(kw["unexpected_rows_query"])
        if not m:
            raise TradelakeError(f"{where}: unexpected_rows_query must be 'SELECT * FROM {{batch}} WHERE …'")
        return f"coalesce(({m.group(1)}), false)"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = scope.value(kw["column_A"], where), scope.value(kw["column_B"], where)
        op = ">=" if kw.get("or_equal") else ">"
        return f"({a} IS NOT NULL AND {b} IS NOT NULL AND NOT ({a} {op} {b}))"
    col = kw["column"]
    if kind == "expect_column_values_to_not_be_null":
        return f"NOT {scope.present(col, where)}"
    if kind == "expect_column_values_to_be_in_type_list":
        accepted = _accepted_json_types(kw["type_list"])
        return f"({scope.present(col, where)} AND {scope.json_type(col, where)} NOT IN ({accepted}))"
    value = scope.value(col, where)
    if kind == "expect_column_values_to_be_in_set":
        members = ", ".join(_literal(v) for v in kw["value_set"])
        return f"({value} IS NOT NULL AND {value} NOT IN ({members}))"
    if kind == "expect_column_values_to_be_between":
        checks = []
        if kw.get("min_value") is not None:
            checks.append(f"{value} {'>' if kw.get('strict_min') else '>='} {_literal(kw['min_value'])}")
        if kw.get("max_value") is not None:
            checks.append(f"{value} {'<' if kw.get('strict_max') else '<='} {_literal(kw['max_value'])}")
        return f"({value} IS NOT NULL AND NOT ({' AND '.join(checks) or 'true'}))"
    if kind == "expect_column_values_to_match_regex":
        return f"({value} IS NOT NULL AND NOT regexp_full_match({value}, {sql_str(kw['regex'])}))"
    raise TradelakeError(f"{where}: expectation type {kind} is not supported by the landing router")


def _condition(e: Mapping[str, Any], scope: _Scope, where: str) -> str | None:
    condition = e.get("row_condition") or e["kwargs"].get("row_condition")
    if not condition:
        return None
    m = _ROW_CONDITION.match(condition)
    if not m:
        raise TradelakeError(f'{where}: row_condition {condition!r} is not of the form column=="value"')
    path, op, literal = m.groups()
    value = scope.value(path, where)
    return f"({value} = {sql_str(literal)})" if op == "==" else f"({value} IS DISTINCT FROM {sql_str(literal)})"


def _is_routing(e: Mapping[str, Any]) -> bool:
    """Only critical expectations route records; warnings are recorded, never quarantine."""
    return str(e.get("severity", "critical")).lower() == "critical"


RULE_SEPARATOR = "\x1f"  # ASCII unit separator: never part of a rule name (see suites.py)


def rule_list(contract: Contract, scope: _Scope) -> str:
    """The names of the rules a row broke, joined by RULE_SEPARATOR ('' when none).

    One string (``concat_ws`` skips the rules not broken), split once per row at the end:
    cheaper to plan and to run than a list of every rule's name filtered by a lambda.
    """
    items = []
    for i, e in enumerate(contract.expectations):
        if not _is_routing(e):
            continue
        where = f"{contract.path.name} expectation #{i + 1}"
        broken = _violation(e, scope, where)
        condition = _condition(e, scope, where)
        if condition:
            broken = f"({condition} AND {broken})"
        items.append(f"CASE WHEN {broken} THEN {sql_str(e['meta']['rule'])} END")
    if not items:
        return "''"
    return f"concat_ws({sql_str(RULE_SEPARATOR)}, {', '.join(items)})"


def _nest(path: list[str], leaf: Any) -> dict[str, Any]:
    tree: Any = leaf
    for name in reversed(path):
        tree = {name: tree}
    return tree


def _merge(into: dict[str, Any], tree: Mapping[str, Any]) -> None:
    for name, sub in tree.items():
        if isinstance(sub, Mapping) and isinstance(into.get(name), dict):
            _merge(into[name], sub)
        else:
            into[name] = dict(sub) if isinstance(sub, Mapping) else sub


def _json_path(path: str) -> str:
    """A JSON path with every key quoted (``after.email`` -> ``$."after"."email"``)."""
    return "$" + "".join("." + json.dumps(name) for name in path.split("."))


class _Fields:
    """Where each column's JSON type and typed value come from: two parses after validation.

    ``json_type`` with a list of paths parses a value once and types every field (nested
    ones too); ``json_transform`` with the landed DuckDB types parses it once more and pulls
    every value out. (Fragments from a ``json_transform`` to ``JSON``, each typed by its own
    ``json_type`` call, cost ~2.5 µs more per record: the fragments were written out as text
    and parsed again; ``json_extract`` of a path list followed by ``->>`` per field was
    slower still.)
    """

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        typed: dict[str, Any] = {}
        for c in columns:
            if c.landed:
                _merge(typed, _nest(c.path.split("."), c.sql_type))
        self.typed = typed

    def json_types(self) -> str:
        """The JSON type of the value, then of every field ('OBJECT', 'VARCHAR', 'NULL'…; NULL
        when absent), as a list; NULL when the value is not JSON text."""
        paths = ", ".join(sql_str(p) for p in ["$", *(_json_path(c.path) for c in self.columns)])
        return f"CASE WHEN _utf8 AND json_valid(_v) THEN json_type(_v, [{paths}]) END AS _types"

    @staticmethod
    def root_type() -> str:
        return "_types[1]"

    @staticmethod
    def json_type(position: int) -> str:
        return f"_types[{position + 2}]"

    def value(self, c: Column) -> str:
        return "_x" + "".join("." + _ident(name) for name in c.path.split("."))

    def transform(self) -> str:
        if not self.typed:  # no landed column: nothing to pull out
            return "NULL AS _x"
        structure = sql_str(json.dumps(self.typed, separators=(",", ":")))
        return f"CASE WHEN {self.root_type()} = 'OBJECT' THEN json_transform(_v, {structure}) END AS _x"


def routing_sql(tc: TopicContracts) -> str:
    """The routing query of one topic (see module docstring)."""
    columns = tc.columns()
    scope = _Scope(columns)
    fields = _Fields(columns)
    types = ", ".join(f"{fields.json_type(i)} AS {_ident('_t_' + c.name)}" for i, c in enumerate(columns))
    values = []
    for c in columns:
        if not c.landed:
            continue
        values.append(
            f"CASE WHEN {_ident('_t_' + c.name)} IN ({_accepted_json_types(c.type_list)}) "
            f"THEN {fields.value(c)} END AS {_ident(c.name)}"
        )

    structural = [
        f"WHEN NOT _utf8 THEN {sql_str(NOT_UTF8)}",
        f"WHEN _root IS NULL THEN {sql_str(NOT_JSON)}",
        f"WHEN _root <> 'OBJECT' THEN {sql_str(NOT_OBJECT)}",
    ]
    if tc.is_cdc:
        if len(tc.contracts) != 1:
            raise TradelakeError(f"CDC topic {tc.topic} needs exactly one suite, found {len(tc.contracts)}")
        only = tc.contracts[0]
        rules = f"CASE {' '.join(structural)} ELSE {rule_list(only, scope)} END"
        judged_by = f"CASE WHEN _root = 'OBJECT' THEN {sql_str(only.name)} END"
    else:
        event_type, version = scope.value("event_type", tc.topic), scope.value("schema_version", tc.topic)
        dispatch = [f"WHEN {event_type} IS NULL OR {version} IS NULL THEN {sql_str(NO_DISPATCH)}"]
        names = []
        for c in tc.contracts:
            match = f"{event_type} = {sql_str(c.event_type)} AND {version} = {c.schema_version}"
            dispatch.append(f"WHEN {match} THEN {rule_list(c, scope)}")
            names.append(f"WHEN {match} THEN {sql_str(c.name)}")
        unknown = f"'no contract for ' || {event_type} || ' v' || CAST({version} AS VARCHAR)"
        rules = f"CASE {' '.join(structural + dispatch)} ELSE {unknown} END"
        judged_by = f"CASE {' '.join(names)} END" if names else "CAST(NULL AS VARCHAR)"

    landed = ", ".join(_ident(c.name) for c in columns if c.landed)
    return f"""
WITH base AS (
    SELECT *, {fields.json_types()} FROM batch
), fields AS (
    SELECT *, {fields.root_type()} AS _root, {fields.transform()} FROM base
), typed AS (
    SELECT *, {types} FROM fields
), valued AS (
    SELECT *, {", ".join(values)} FROM typed
), judged AS (
    SELECT *, {rules} AS _broken, {judged_by} AS _contract FROM valued
)
SELECT {", ".join(LINEAGE)}, {landed},
       CASE WHEN _broken = '' THEN []::VARCHAR[] ELSE string_split(_broken, {sql_str(RULE_SEPARATOR)}) END AS _rules,
       _contract
FROM judged
"""
