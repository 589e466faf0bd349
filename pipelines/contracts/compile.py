"""Compile a topic's contract suites into one vectorized DuckDB routing query.

Why compile instead of calling GX per row: GX costs ~50–75 ms per validation call, far too
slow to split every micro-batch row by row at 100k+ events/s; the same JSON suites compiled
into DuckDB predicates route a batch in one pass over the data. The suites stay the single
definition — this module only translates the expectation types listed in
docs/contracts-format.md (the typed ``Rule``s of pipelines.contracts.suites).

The query reads a relation ``batch`` (lineage columns, ``_v`` the value as text or NULL when
it is not UTF-8, ``_utf8``) and returns, per record, the landed columns plus ``_rules``: the
names of the critical rules it broke (empty = valid, it lands), ``_warnings``: the names of
the warning/info rules it broke (counted, never quarantining) and ``_contract``: the suite
that judged it (NULL when a structural rule rejected it before any suite could).

The gate is what staging can cast: a landed record is strict RFC 8259 JSON with no key twice
in an object (DuckDB's reader accepts NaN, Infinity, 1e400 and trailing commas), and each
landed value fits its column (an ``int`` is a signed 64-bit integer, a ``float`` is finite);
see docs/contracts-format.md, "Strict parsing".
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from functools import cache
from typing import Any

import duckdb
import pyarrow as pa
from duckdb.sqltypes import VARCHAR

from pipelines.contracts.suites import JSON_TYPES, Column, Contract, Rule, TopicContracts
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import LINEAGE_TYPES

LINEAGE = ("_topic", "_partition", "_offset", "_key", "_kafka_timestamp")
# The relation ``batch`` the query reads, as pipelines.landing.router builds it.
BATCH_SCHEMA = pa.schema(
    [*((name, LINEAGE_TYPES[name]) for name in LINEAGE), ("_v", pa.string()), ("_utf8", pa.bool_())]
)

# Structural rules: they decide whether a record can be judged by any suite at all.
NOT_UTF8 = "value is UTF-8 text"
NOT_JSON = "value is valid JSON"
NOT_OBJECT = "value is a JSON object"
NOT_STRICT = "value is strict JSON (RFC 8259: no NaN, Infinity, number beyond double or trailing comma)"
DUPLICATE_KEYS = "no key twice in one object"
NO_DISPATCH = "event_type (string) and schema_version (integer) name a contract"
DISPATCH_FIELDS = ("event_type", "schema_version")  # pick the suite of a non-CDC record

JSON_PROBLEM = "tradelake_json_problem"  # the SQL name of json_problem (see register_functions)

_UNEXPECTED_ROWS = re.compile(r"^\s*SELECT\s+\*\s+FROM\s+\{batch\}\s+WHERE\s+(.+?)\s*;?\s*$", re.I | re.S)


class _NotStrict(ValueError):
    pass


class _DuplicateKey(_NotStrict):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    if len({k for k, _ in pairs}) != len(pairs):
        raise _DuplicateKey
    return dict(pairs)


def _refuse_constant(name: str) -> None:
    raise _NotStrict(name)


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise _NotStrict(text)
    return number


def json_problem(text: str) -> str | None:
    """The structural rule ``text`` breaks, parsed as RFC 8259 says (NULL: none).

    DuckDB's reader (yyjson with ALLOW_INF_AND_NAN and ALLOW_TRAILING_COMMAS) accepts NaN,
    Infinity, 1e400 and trailing commas, and keeps the first of two equal keys where Python's
    ``json`` keeps the last. Python's ``json`` made strict is the judge; the routing query
    calls it only for the rare records whose keys the contract does not all declare
    (``_Fields.undeclared``) or whose text may hold a trailing comma (``TRAILING_COMMA``).
    """
    try:
        json.loads(text, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant, parse_float=_finite)
    except _DuplicateKey:
        return DUPLICATE_KEYS
    except (ValueError, RecursionError):  # JSONDecodeError, _NotStrict, an int beyond Python's digit limit
        return NOT_STRICT
    return None


def register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """Make the functions the routing queries call available on ``con`` (and its cursors)."""
    con.create_function(JSON_PROBLEM, json_problem, [VARCHAR], VARCHAR, null_handling="special", side_effects=False)


@cache
def _check_database() -> duckdb.DuckDBPyConnection:
    """The in-memory database compiled queries are test-run in (a cursor each): opening a
    database per query cost ~9 ms, a quarter of building a router."""
    con = duckdb.connect()
    register_functions(con)
    return con


def check_connection() -> duckdb.DuckDBPyConnection:
    """A connection of its own to the database where compiled queries are test-run."""
    return _check_database().cursor()


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

    def violation(self, rule: Rule, where: str) -> str:
        """SQL that is true when a row breaks ``rule`` (the fast path's scope reads typed columns)."""
        return _violation(rule, self, where)


def _violation(rule: Rule, scope: _Scope, where: str) -> str:
    """SQL that is true when a row breaks ``rule``."""
    kind, kw = rule.kind, rule.kwargs
    if kind == "unexpected_rows_expectation":
        m = _UNEXPECTED_ROWS.match(kw["unexpected_rows_query"])
        if not m:
            raise TradelakeError(f"{where}: unexpected_rows_query must be 'SELECT * FROM {{batch}} WHERE …'")
        # try(): an overflow in the predicate's arithmetic must not fail the batch; the
        # column's range rules quarantine such a row.
        return f"coalesce(try({m.group(1)}), false)"
    if kind == "expect_column_pair_values_a_to_be_greater_than_b":
        a, b = (scope.value(c, where) for c in rule.columns)
        op = ">=" if kw.get("or_equal") else ">"
        return f"({a} IS NOT NULL AND {b} IS NOT NULL AND NOT ({a} {op} {b}))"
    col = rule.columns[0]
    if kind == "expect_column_to_exist":
        return f"({scope.json_type(col, where)} IS NULL)"  # the key is absent (JSON null exists)
    if kind == "expect_column_values_to_not_be_null":
        return f"NOT {scope.present(col, where)}"
    if kind == "expect_column_values_to_be_in_type_list":
        column = scope.column(col, where)
        if column.landed:  # NULL when of another type or out of the column's range (see _Fields)
            return f"({scope.present(col, where)} AND {scope.value(col, where)} IS NULL)"
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
    if kind == "expect_column_values_to_be_dateutil_parseable":
        if scope.column(col, where).sql_type != "VARCHAR":
            raise TradelakeError(f"{where}: {kind} needs a string column, {col} is not")
        # Staging's own cast (macros/landing.sql parse_timestamp; a YYYY-MM-DD date casts to
        # DATE exactly when it casts to TIMESTAMPTZ), made as strict as dateutil: the cast
        # reads hour 24 as the next day and year 0 as 1 BC. (try_strptime costs 3x the cast,
        # and its %n, the one directive for 1–9 digits of fraction, only reaches 1677–2262.)
        cast = f"try_cast({value} AS TIMESTAMPTZ)"
        return f"({value} IS NOT NULL AND ({cast} IS NULL OR {value} LIKE '0000%' OR {value} LIKE '__________T24%'))"
    raise TradelakeError(f"{where}: expectation type {kind} is not supported by the landing router")


def _condition(rule: Rule, scope: _Scope, where: str) -> str | None:
    if rule.condition is None:
        return None
    value = scope.value(rule.condition.path, where)
    literal = sql_str(rule.condition.value)
    return f"({value} = {literal})" if rule.condition.equal else f"({value} IS DISTINCT FROM {literal})"


RULE_SEPARATOR = "\x1f"  # ASCII unit separator: never part of a rule name (see suites.py)


def _where(contract: Contract, i: int) -> str:
    """How an error names rule ``i`` of ``contract``: its file and position, as loading does."""
    return f"{contract.path} expectation #{i + 1}"


def _broken(contract: Contract, i: int, scope: _Scope) -> str:
    """SQL that is true when a row breaks rule ``i`` of ``contract`` where its row_condition holds."""
    rule, where = contract.rules[i], _where(contract, i)
    broken = scope.violation(rule, where)
    condition = _condition(rule, scope, where)
    return f"({condition} AND {broken})" if condition else broken


def rule_list(contract: Contract, scope: _Scope, critical: bool = True) -> str:
    """The names of the rules a row broke, joined by RULE_SEPARATOR ('' when none): the
    critical rules, or (``critical=False``) the warning and info rules.

    One string (``concat_ws`` skips the rules not broken), split once per row at the end:
    cheaper to plan and to run than a list of every rule's name filtered by a lambda.
    """
    items = [
        f"CASE WHEN {_broken(contract, i, scope)} THEN {sql_str(rule.name)} END"
        for i, rule in enumerate(contract.rules)
        if rule.critical == critical
    ]
    if not items:
        return "''"
    return f"concat_ws({sql_str(RULE_SEPARATOR)}, {', '.join(items)})"


def _nest(path: list[str], leaf: Any) -> dict[str, Any]:
    tree: Any = leaf
    for name in reversed(path):
        tree = {name: tree}
    return tree


def _merge(into: dict[str, Any], tree: dict[str, Any]) -> None:
    for name, sub in tree.items():
        if isinstance(sub, dict) and isinstance(into.get(name), dict):
            _merge(into[name], sub)
        else:
            into[name] = dict(sub) if isinstance(sub, dict) else sub


def _json_path(path: str) -> str:
    """A JSON path with every key quoted (``after.email`` -> ``$."after"."email"``)."""
    return "$" + "".join("." + json.dumps(name) for name in path.split("."))


def object_paths(columns: list[Column]) -> list[str]:
    """The objects a contract reads: the value itself, every ``dict`` column and every parent
    of a nested column (``""`` is the value itself)."""
    found = {""}
    for c in columns:
        parts = c.path.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
        if not c.landed:
            found.add(c.path)
    return sorted(found)


class _Fields:
    """Where each column's JSON type and typed value come from: two parses after validation.

    ``json_type`` with a list of paths parses a value once and types every field (nested
    ones too); ``json_transform`` with the landed DuckDB types parses it once more and pulls
    every value out. (Fragments from a ``json_transform`` to ``JSON``, each typed by its own
    ``json_type`` call, cost ~2.5 µs more per record: the fragments were written out as text
    and parsed again; ``json_extract`` of a path list followed by ``->>`` per field was
    slower still.) A third parse, ``json_keys`` of the objects the contract reads, tells the
    records with a key the suite does not declare (or a key twice) apart (``undeclared``).
    """

    def __init__(self, columns: list[Column]) -> None:
        self.columns = columns
        typed: dict[str, Any] = {}
        for c in columns:
            if c.landed:
                _merge(typed, _nest(c.path.split("."), c.sql_type))
        self.typed = typed
        self.objects = object_paths(columns)

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

    def typed_name(self, position: int) -> str:
        """The column holding the JSON type of column ``position`` (from the ``typed`` step on)."""
        return _ident("_t_" + self.columns[position].name)

    def value(self, c: Column) -> str:
        return "_x" + "".join("." + _ident(name) for name in c.path.split("."))

    def landed_value(self, c: Column, suites: list[str] | None = None) -> str:
        """The column's value when its JSON type is accepted and the value fits the column
        (json_transform gives NULL for an integer beyond BIGINT; a DOUBLE must be finite) —
        and, given ``suites``, only in rows those suites judge: a field is validated only by
        the suites that declare it, so in any other row it does not land."""
        accepted = f"{_ident('_t_' + c.name)} IN ({_accepted_json_types(c.type_list)})"
        if c.sql_type == "DOUBLE":
            accepted += f" AND isfinite({self.value(c)})"
        if suites is not None:
            accepted = f"_suite IN ({', '.join(sql_str(s) for s in suites)}) AND {accepted}"
        return f"CASE WHEN {accepted} THEN {self.value(c)} END AS {_ident(c.name)}"

    def dispatch_value(self, c: Column) -> str:
        """A dispatch field's value (event_type, schema_version) before the landed values exist."""
        accepted = f"{_ident('_t_' + c.name)} IN ({_accepted_json_types(c.type_list)})"
        return f"(CASE WHEN {accepted} THEN {self.value(c)} END)"

    def transform(self) -> str:
        if not self.typed:  # no landed column: nothing to pull out
            return "NULL AS _x"
        structure = sql_str(json.dumps(self.typed, separators=(",", ":")))
        return f"CASE WHEN {self.root_type()} = 'OBJECT' THEN json_transform(_v, {structure}) END AS _x"

    def keys(self) -> str:
        paths = ", ".join(sql_str(_json_path(p) if p else "$") for p in self.objects)
        return f"CASE WHEN {self.root_type()} = 'OBJECT' THEN json_keys(_v, [{paths}]) END AS _keys"

    def key_count(self, obj: str) -> str:
        """The column holding how many keys the object ``obj`` has (from the ``typed`` step on)."""
        return f"_nkeys{self.objects.index(obj) + 1}"

    def key_counts(self) -> str:
        """The objects' key counts, as integers: the lists of keys are not carried further
        (copying them through each step of the query cost more than listing them)."""
        return ", ".join(f"len(_keys[{i + 1}]) AS {self.key_count(obj)}" for i, obj in enumerate(self.objects))

    def undeclared(self, columns: list[Column]) -> str:
        """True when an object a suite reads holds a key the suite does not declare, or one key
        twice: it has more keys than the suite's fields present in it (json_type finds the
        first of two equal keys, so a duplicate always makes the count exceed).

        A record without such keys is strict JSON by construction, but for a trailing comma
        (``_structural`` looks for those): each of its values is a declared field whose type
        rule accepts only finite, in-range numbers, strings, booleans or declared objects.
        Only the others (a producer's new field, a mistake) are parsed once more, by Python
        (``json_problem``); nearly every record pays a comparison per object.
        """
        position = {c.path: i for i, c in enumerate(self.columns)}
        paths = {c.path for c in columns}
        checks = []
        for obj in object_paths(columns):
            keys = self.key_count(obj)
            prefix = f"{obj}." if obj else ""
            children = {prefix + p[len(prefix) :].split(".")[0] for p in paths if p.startswith(prefix)}
            if not children <= position.keys():  # a parent that is no column: nothing to count with
                return "true"
            present = " + ".join(f"({self.typed_name(position[c])} IS NOT NULL)::INTEGER" for c in sorted(children))
            checks.append(f"coalesce({keys}, 0) > {present}")
        return " OR ".join(checks) or "false"


# A comma before a closing brace or bracket, whitespace between: what a trailing comma looks
# like, and what a string value can contain too (``"a,}"``); such records are the candidates
# json_problem judges exactly. JSON's four whitespace characters, not RE2's \s (also \f, \v).
TRAILING_COMMA = r",[ \t\n\r]*[\]}]"


def _structural(undeclared: str) -> str:
    """The structural rule a record breaks (NULL: none), in order: each needs the one before.
    ``undeclared``: SQL true when the record needs the exact strictness check; so does one
    that may hold a trailing comma (DuckDB's reader accepts ``{"a": 1,}``), found by a scan of
    its text that costs ~0.14 µs per record (docs/contracts-format.md, "Strict parsing")."""
    return (
        f"CASE WHEN NOT _utf8 THEN {sql_str(NOT_UTF8)} "
        f"WHEN _root IS NULL THEN {sql_str(NOT_JSON)} "
        f"WHEN _root <> 'OBJECT' THEN {sql_str(NOT_OBJECT)} "
        f"WHEN {undeclared} OR regexp_matches(_v, {sql_str(TRAILING_COMMA)}) THEN {JSON_PROBLEM}(_v) END"
    )


def split_rules(names: str) -> str:
    """A RULE_SEPARATOR-joined string of rule names as a list ('' or NULL: empty)."""
    split = f"string_split({names}, {sql_str(RULE_SEPARATOR)})"
    return f"CASE WHEN coalesce({names}, '') = '' THEN []::VARCHAR[] ELSE {split} END"


def routing_sql(tc: TopicContracts) -> str:
    """The routing query of one topic (see module docstring), refused unless DuckDB runs it.

    ``contracts check`` and every router (at construction) get it here, so a suite DuckDB
    cannot run (a regex RE2 refuses, a column unknown to an ``unexpected_rows_query``) fails
    naming its file and expectation, before any record is read — not at the first batch.
    """
    head, tail = _routing_query(tc)
    sql = head + tail
    if sql not in _RUNNABLE:
        _refuse_unrunnable(tc, head, sql)
        _RUNNABLE.add(sql)
    return sql


_RUNNABLE: set[str] = set()  # queries already run on an empty batch, by text


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0]


def _refuse_unrunnable(tc: TopicContracts, head: str, sql: str) -> None:
    """Run ``sql`` on an empty ``batch``: DuckDB binds the whole query (column names, types,
    each regex compiled by RE2) whether or not there are rows."""
    with check_connection() as con:
        con.register("batch", BATCH_SCHEMA.empty_table())
        try:
            con.execute(sql).fetchall()
        except duckdb.Error as e:
            culprit = _failing_rule(con, tc, head)
            raise TradelakeError(
                culprit or f"{tc.topic}: the compiled routing query does not run: {_first_line(e)}"
            ) from None


def _failing_rule(con: duckdb.DuckDBPyConnection, tc: TopicContracts, head: str) -> str | None:
    """Which expectation DuckDB cannot run: each rule alone, on the empty relation of the
    query's ``valued`` step (``head``); None when every rule runs alone."""
    try:
        con.register("valued", con.execute(head + " SELECT * FROM valued").to_arrow_table())
    except duckdb.Error:  # the query's own steps fail: not a suite's doing
        return None
    scope = _Scope(tc.columns())
    for contract in tc.contracts:
        for i, rule in enumerate(contract.rules):
            try:
                con.execute(f"SELECT {_broken(contract, i, scope)} FROM valued").fetchall()
            except duckdb.Error as e:
                return f"{_where(contract, i)} ({rule.name!r}): DuckDB cannot run it: {_first_line(e)}"
    return None


def _routing_query(tc: TopicContracts) -> tuple[str, str]:
    """The routing query in two parts: its steps up to ``valued`` (every field typed and
    valued, the rules not yet judged) and the rest."""
    columns = tc.columns()
    scope = _Scope(columns)
    fields = _Fields(columns)
    types = ", ".join(f"{fields.json_type(i)} AS {_ident('_t_' + c.name)}" for i, c in enumerate(columns))
    declaring = {c.path: [k.name for k in tc.contracts if c in k.columns()] for c in columns}
    values = [
        fields.landed_value(c, None if len(declaring[c.path]) == len(tc.contracts) else declaring[c.path])
        for c in columns
        if c.landed
    ]
    has_warnings = any(not r.critical for c in tc.contracts for r in c.rules)

    if tc.is_cdc:
        if len(tc.contracts) != 1:
            raise TradelakeError(f"CDC topic {tc.topic} needs exactly one suite, found {len(tc.contracts)}")
        only = tc.contracts[0]
        undeclared = fields.undeclared(only.columns())
        rules = f"coalesce(_structural, {rule_list(only, scope)})"
        warnings = f"CASE WHEN _structural IS NULL THEN {rule_list(only, scope, critical=False)} END"
        suite = sql_str(only.name)
    else:
        event_type, version = scope.value("event_type", tc.topic), scope.value("schema_version", tc.topic)
        raw_type, raw_version = (fields.dispatch_value(scope.column(p, tc.topic)) for p in DISPATCH_FIELDS)
        dispatch = [
            "WHEN _structural IS NOT NULL THEN _structural",
            f"WHEN {event_type} IS NULL OR {version} IS NULL THEN {sql_str(NO_DISPATCH)}",
        ]
        warned, names, extra = [], [], []
        for c in tc.contracts:
            extra.append(f"WHEN {sql_str(c.name)} THEN {fields.undeclared(c.columns())}")
            dispatch.append(f"WHEN _suite = {sql_str(c.name)} THEN {rule_list(c, scope)}")
            warned.append(f"WHEN _suite = {sql_str(c.name)} THEN {rule_list(c, scope, critical=False)}")
            match = f"{raw_type} = {sql_str(c.event_type)} AND {raw_version} = {c.schema_version}"
            names.append(f"WHEN {match} THEN {sql_str(c.name)}")
        unknown = f"'no contract for ' || {event_type} || ' v' || CAST({version} AS VARCHAR)"
        rules = f"CASE {' '.join(dispatch)} ELSE {unknown} END"
        warnings = f"CASE WHEN _structural IS NULL THEN CASE {' '.join(warned)} END END"
        suite = f"CASE {' '.join(names)} END" if names else "CAST(NULL AS VARCHAR)"
        undeclared = f"coalesce(CASE _suite {' '.join(extra)} END, false)" if extra else "false"

    landed = ", ".join(_ident(c.name) for c in columns if c.landed)
    warned_list = split_rules("_warned") if has_warnings else "[]::VARCHAR[]"
    head = f"""
WITH base AS (
    SELECT *, {fields.json_types()} FROM batch
), fields AS (
    SELECT *, {fields.root_type()} AS _root, {fields.transform()}, {fields.keys()} FROM base
), typed AS (
    SELECT * EXCLUDE (_types, _keys), {types}, {fields.key_counts()} FROM fields
), dispatched AS (
    SELECT *, {suite} AS _suite FROM typed
), checked AS (
    SELECT *, {_structural(undeclared)} AS _structural FROM dispatched
), valued AS (
    SELECT *, {", ".join(values)} FROM checked
)"""
    tail = f""", judged AS (
    SELECT *, {rules} AS _broken, {warnings if has_warnings else "NULL"} AS _warned,
           CASE WHEN _structural IS NULL THEN _suite END AS _contract
    FROM valued
)
SELECT {", ".join(LINEAGE)}, {landed}, {split_rules("_broken")} AS _rules, {warned_list} AS _warnings, _contract
FROM judged
"""
    return head, tail
