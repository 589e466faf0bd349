"""``tradelake export MART --format csv|parquet [--out PATH]``: take a mart to a spreadsheet.

Reads the published warehouse ``$TRADELAKE_HOME/warehouse.duckdb`` read-only, on one connection
closed after the export (``pipelines.warehouse.Reader``: a build running meanwhile is neither
blocked nor seen half-done), and writes one relation, e.g. ``finance.payment_reconciliation``,
with DuckDB's ``COPY`` (CSV with a header row, or Parquet). The staging views read the lake's
Delta tables (``delta_scan``), so the connection can read the lake too.

What leaves the lake is limited on purpose:

- Marts only, unless ``include_staging``: staging and intermediate relations are the lake's
  working parts, and ``staging.stg_lake__quarantine`` holds the raw bytes of quarantined
  records (``audit.quarantine``, a mart, has the reasons without the bytes).
- CSV cells are neutralised by OWASP's CSV-injection rule: a text cell beginning with ``=``,
  ``+``, ``-``, ``@``, tab or carriage return gets a leading ``'``, so that a spreadsheet shows
  it as text instead of running it as a formula (a ``gateway_ref`` of ``=HYPERLINK(…)``).
  Numeric, boolean and date/time columns are written as they are (a negative amount stays a
  number); every text column is quoted. Parquet is typed, not read as formulas: written as is.
- The file appears whole or not at all: it is written beside the target and renamed onto it.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.errors import TradelakeError, first_line
from pipelines.settings import Settings
from pipelines.warehouse import Reader, published_path

FORMATS = ("csv", "parquet")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Not marts: DuckDB's catalogs, and dbt's working layers (the quarantine's raw bytes are in staging).
_CATALOGS = ("information_schema", "pg_catalog", "main")
WORKING_SCHEMAS = ("staging", "intermediate")
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# Columns a spreadsheet reads as values, never formulas, whose CSV text is kept: a leading '-' is a sign.
_TYPED = re.compile(r"^(U?(TINY|SMALL|BIG|HUGE)?INT(EGER)?|FLOAT|DOUBLE|REAL|DECIMAL.*|BOOLEAN|DATE|TIME.*)$")


@dataclass(frozen=True)
class Export:
    relation: str
    path: Path
    rows: int


def _split(mart: str) -> tuple[str, str]:
    parts = mart.split(".")
    if len(parts) != 2 or not all(_NAME.match(p) for p in parts):
        raise TradelakeError(f"expected a mart as schema.table (e.g. finance.payment_reconciliation), got {mart!r}")
    return parts[0], parts[1]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _neutralised(column: str) -> str:
    """SQL for ``column`` as text, with a ``'`` before a formula-leading first character."""
    text = f"cast({_quote(column)} as varchar)"
    starts = ", ".join("chr(9)" if c == "\t" else "chr(13)" if c == "\r" else f"'{c}'" for c in FORMULA_PREFIXES)
    return f"case when left({text}, 1) in ({starts}) then '''' || {text} else {text} end as {_quote(column)}"


def _csv_query(con: duckdb.DuckDBPyConnection, relation: str) -> tuple[str, list[str]]:
    """The SELECT that writes ``relation`` as safe CSV, and its text columns (to be quoted)."""
    columns = con.execute(f"describe select * from {relation}").fetchall()
    text = [name for name, kind, *_ in columns if not _TYPED.match(kind)]
    select = ", ".join(_neutralised(name) if name in text else _quote(name) for name, *_ in columns)
    return f"select {select} from {relation}", text


def _marts(con: duckdb.DuckDBPyConnection, include_staging: bool) -> list[str]:
    hidden = _CATALOGS + (() if include_staging else WORKING_SCHEMAS)
    rows = con.execute(
        "select table_schema, table_name from information_schema.tables "
        f"where table_schema not in ({', '.join('?' for _ in hidden)}) order by 1, 2",
        list(hidden),
    ).fetchall()
    return [f"{s}.{t}" for s, t in rows]


def _target(mart: str, fmt: str, out: Path | str | None) -> Path:
    target = (Path(out) if out is not None else Path.cwd() / f"{mart}.{fmt}").expanduser().resolve()
    if target.is_dir():
        raise TradelakeError(f"--out {target} is a folder: name the file to write, e.g. {target / f'{mart}.{fmt}'}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise TradelakeError(f"cannot create the folder of {target}: {e.strerror}") from None
    return target


def export(
    settings: Settings,
    mart: str,
    fmt: str = "csv",
    out: Path | str | None = None,
    include_staging: bool = False,
) -> Export:
    """Write relation ``mart`` ("schema.table") as ``fmt`` to ``out`` (default ``./<mart>.<fmt>``)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise TradelakeError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    schema, table = _split(mart)
    relation = f"{_quote(schema)}.{_quote(table)}"
    target = _target(f"{schema}.{table}", fmt, out)
    with Reader.of(settings).snapshot() as con:  # the check, the copy and the count on one build
        exportable = _marts(con, include_staging)
        if f"{schema}.{table}" not in exportable:
            if schema in WORKING_SCHEMAS and not include_staging:
                raise TradelakeError(f"{mart} is not a mart: pass --include-staging to export {schema} relations")
            raise TradelakeError(
                f"no relation {mart} in {published_path(settings)}; marts: {', '.join(exportable) or 'none'}"
            )
        if fmt == "csv":
            query, text = _csv_query(con, relation)
            quoted = f", FORCE_QUOTE ({', '.join(_quote(c) for c in text)})" if text else ""
            options = f"FORMAT CSV, HEADER{quoted}"
        else:
            query, options = f"select * from {relation}", "FORMAT PARQUET"
        rows = con.execute(f"select count(*) from {relation}").fetchone()[0]
        _write(con, query, options, target)
    return Export(relation=f"{schema}.{table}", path=target, rows=int(rows))


def _write(con: duckdb.DuckDBPyConnection, query: str, options: str, target: Path) -> None:
    """COPY to a file beside ``target``, renamed onto it when complete: never a half-written export."""
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        partial.touch()  # a folder we cannot write fails here, with its own reason
    except OSError as e:
        raise TradelakeError(f"cannot write {target}: {e.strerror}") from None
    try:
        path = str(partial).replace("'", "''")
        con.execute(f"COPY ({query}) TO '{path}' ({options})")
        os.replace(partial, target)
    except (duckdb.IOException, OSError) as e:
        raise TradelakeError(f"cannot write {target}: {first_line(getattr(e, 'strerror', None) or e)}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
