"""The dbt models are portable to a bigger engine (issue 14): every compiled model transpiles with
sqlglot from DuckDB to Trino and to Spark SQL, and the models past staging use DuckDB-only SQL
only through dispatched macros (dbt/macros/portable.sql, dbt's cross-database macros).

sqlglot alone is not enough: it passes a function it does not know through unchanged
(``to_minutes(15)`` comes out as ``TO_MINUTES(15)`` in Trino) and rewrites some it knows into a
function the target lacks (``quantile_cont`` becomes Trino's non-existent ``PERCENTILE_CONT(x, q)``)
or with another meaning (``strftime`` formats into a Spark pattern Spark rejects). So two more
checks: no function sqlglot does not know, and a denylist of DuckDB-only names, read in each
model's own SQL and in its compiled SQL.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import ErrorLevel, exp

from pipelines.build import DBT_PROJECT_DIR, run_dbt
from pipelines.warehouse import building
from tests.component.dbt_lake import empty_lake

TARGETS = ("trino", "spark")
# Folders whose models must be engine-neutral: staging reads the lake with DuckDB's delta_scan()
# and may keep DuckDB-only SQL in its macros (docs/decisions.md, "Portable dbt models").
PORTABLE = {"intermediate", "dimensions", "marts"}
# Functions sqlglot does not know (passed through verbatim): only staging's source reader.
UNKNOWN_ALLOWED = {"staging": {"delta_scan"}}

# DuckDB functions absent from Trino and Spark, or present there with another meaning. A model
# past staging reaches them only through a dispatched macro's duckdb__ implementation.
# fmt: off
DUCKDB_ONLY = {
    # aggregates
    "arg_min", "arg_max", "arg_min_null", "arg_max_null", "quantile", "quantile_cont", "quantile_disc",
    "median", "mode", "string_agg", "group_concat", "list", "histogram", "product", "fsum", "favg",
    # date and time
    "strftime", "strptime", "timezone", "epoch", "epoch_ms", "epoch_us", "epoch_ns", "to_timestamp",
    "make_date", "make_time", "make_timestamp", "make_timestamptz", "to_seconds", "to_minutes", "to_hours",
    "to_days", "to_weeks", "to_months", "to_years", "to_milliseconds", "to_microseconds", "datediff",
    "datesub", "date_sub", "date_add", "time_bucket", "today", "current_localtimestamp",
    # lists, structs, strings
    "list_value", "list_extract", "list_element", "list_aggr", "list_transform", "list_filter",
    "list_contains", "list_concat", "array_to_string", "string_split", "str_split", "string_split_regex",
    "struct_pack", "struct_extract", "struct_insert", "regexp_matches", "regexp_full_match",
    "json_extract_string", "printf", "format", "hash",
    # readers
    "delta_scan", "read_parquet", "read_csv", "read_csv_auto", "read_json", "iceberg_scan",
}
# fmt: on
_DUCKDB_ONLY_CALL = re.compile(r"\b(" + "|".join(sorted(DUCKDB_ONLY)) + r")\s*\(", re.IGNORECASE)
# DuckDB syntax that Trino or Spark lack, in a model's own SQL (sqlglot rewrites some of it).
DUCKDB_SYNTAX = {
    "qualify": re.compile(r"\bqualify\b", re.IGNORECASE),
    ":: cast": re.compile(r"::"),
    "union by name": re.compile(r"\bby\s+name\b", re.IGNORECASE),
    "struct literal": re.compile(r"\{\s*'"),
    "list literal": re.compile(r"(?<![\w\])])\[\s*'"),
}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The project's models compiled against an empty lake: unique_id -> manifest node."""
    settings = empty_lake(tmp_path_factory.mktemp("portable") / "lake")
    with building(settings):  # compile opens the warehouse: a build's attempt, like any dbt command
        assert run_dbt(settings, "compile").success
    manifest = json.loads((settings.home / "dbt" / "target" / "manifest.json").read_text())
    nodes = {
        uid: node
        for uid, node in manifest["nodes"].items()
        if node["resource_type"] == "model" and node["package_name"] == "tradelake"
    }
    assert len(nodes) > 20 and all(node.get("compiled_code") for node in nodes.values())
    return nodes


def folder(node: dict) -> str:
    return Path(node["original_file_path"]).parts[1]  # models/<folder>/…


def own_sql(raw_code: str) -> str:
    """A model's own SQL: its source without Jinja (macro calls, blocks, comments) nor SQL comments."""
    text = re.sub(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", " ", raw_code, flags=re.DOTALL)
    text = re.sub(r"--[^\n]*", " ", text)
    return re.sub(r"'(?:[^']|'')*'", "''", text)  # string literals hold prose, not SQL


def dispatched_duckdb_names() -> set[str]:
    """The DuckDB-only functions that the project's duckdb__ macro implementations emit."""
    names: set[str] = set()
    for path in (DBT_PROJECT_DIR / "macros").glob("*.sql"):
        for body in re.findall(r"\{%-?\s*macro\s+duckdb__.*?\{%-?\s*endmacro", path.read_text(), flags=re.DOTALL):
            names |= {name.lower() for name in _DUCKDB_ONLY_CALL.findall(own_sql(body))}
    return names


@pytest.mark.parametrize("dialect", TARGETS)
def test_every_compiled_model_transpiles(compiled, dialect):
    failures = []
    for uid, node in sorted(compiled.items()):
        try:
            out = sqlglot.transpile(
                node["compiled_code"], read="duckdb", write=dialect, unsupported_level=ErrorLevel.RAISE
            )
            assert out and all(statement.strip() for statement in out)
        except (sqlglot.errors.SqlglotError, AssertionError) as e:
            failures.append(f"{uid}: {type(e).__name__}: {str(e).splitlines()[0][:300]}")
    assert not failures, f"not transpilable to {dialect}:\n" + "\n".join(failures)


def test_no_model_calls_a_function_sqlglot_does_not_know(compiled):
    """sqlglot passes an unknown function through verbatim, into SQL the target cannot run."""
    unknown = {}
    for uid, node in compiled.items():
        tree = sqlglot.parse_one(node["compiled_code"], read="duckdb")
        names = {f.name.lower() for f in tree.find_all(exp.Anonymous)}
        if names - UNKNOWN_ALLOWED.get(folder(node), set()):
            unknown[uid] = sorted(names)
    assert not unknown, unknown


def test_models_past_staging_write_no_duckdb_only_sql(compiled):
    """Not in the model's own SQL (a macro may emit it: that is what dispatch is for)."""
    found = {}
    for uid, node in compiled.items():
        if folder(node) in PORTABLE:
            sql = own_sql(node["raw_code"])
            hits = {name.lower() for name in _DUCKDB_ONLY_CALL.findall(sql)}
            hits |= {what for what, pattern in DUCKDB_SYNTAX.items() if pattern.search(sql)}
            if hits:
                found[uid] = sorted(hits)
    assert not found, found


def test_compiled_models_past_staging_reach_duckdb_only_functions_only_through_dispatch(compiled):
    """In the compiled SQL, a DuckDB-only name can only come from a dispatched duckdb__ macro (a
    plain project macro emitting one is caught here, its call in a model is not)."""
    allowed = dispatched_duckdb_names()
    assert allowed <= {"strftime", "array_to_string", "to_timestamp"}, allowed  # keep this list short
    found = {}
    for uid, node in compiled.items():
        if folder(node) in PORTABLE:
            code = re.sub(r"'(?:[^']|'')*'", "''", node["compiled_code"])
            hits = {name.lower() for name in _DUCKDB_ONLY_CALL.findall(code)} - allowed
            if hits:
                found[uid] = sorted(hits)
    assert not found, found


def test_the_denylist_catches_what_sqlglot_lets_through():
    """Why the denylist: sqlglot transpiles these DuckDB calls without an error into SQL that
    Trino or Spark cannot run as meant."""
    for sql in ("select to_minutes(15)", "select quantile_cont(x, 0.5) from t", "select timezone('UTC', ts) from t"):
        for dialect in TARGETS:
            sqlglot.transpile(sql, read="duckdb", write=dialect, unsupported_level=ErrorLevel.RAISE)
        assert _DUCKDB_ONLY_CALL.search(sql)
