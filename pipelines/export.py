"""``tradelake export MART --format csv|parquet [--out PATH]``: take a mart to a spreadsheet.

Reads the published warehouse ``$TRADELAKE_HOME/warehouse.duckdb`` read-only, on one connection
closed after the export (``pipelines.warehouse.Reader``: a build running meanwhile is neither
blocked nor seen half-done), and writes one relation, e.g. ``finance.payment_reconciliation``,
with DuckDB's ``COPY`` (CSV with a header row, or Parquet). The staging views read the lake's
Delta tables (``delta_scan``), so the connection can read the lake too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import TradelakeError
from pipelines.settings import Settings
from pipelines.warehouse import Reader, published_path

FORMATS = ("csv", "parquet")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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


def export(settings: Settings, mart: str, fmt: str = "csv", out: Path | str | None = None) -> Export:
    """Write relation ``mart`` ("schema.table") as ``fmt`` to ``out`` (default ``./<mart>.<fmt>``)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise TradelakeError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    schema, table = _split(mart)
    target = Path(out) if out is not None else Path.cwd() / f"{schema}.{table}.{fmt}"
    target = target.expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    options = "FORMAT CSV, HEADER" if fmt == "csv" else "FORMAT PARQUET"
    with Reader.of(settings).snapshot() as con:  # the check, the copy and the count on one build
        found = con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
            [schema, table],
        ).fetchone()[0]
        if not found:
            known = [
                f"{s}.{t}"
                for s, t in con.execute(
                    "select table_schema, table_name from information_schema.tables "
                    "where table_schema not in ('information_schema', 'pg_catalog', 'main', 'staging', 'intermediate') "
                    "order by 1, 2"
                ).fetchall()
            ]
            raise TradelakeError(
                f"no relation {mart} in {published_path(settings)}; marts: {', '.join(known) or 'none'}"
            )
        quoted_path = str(target).replace("'", "''")
        con.execute(f'COPY (SELECT * FROM "{schema}"."{table}") TO \'{quoted_path}\' ({options})')
        rows = con.execute(f'select count(*) from "{schema}"."{table}"').fetchone()[0]
    return Export(relation=f"{schema}.{table}", path=target, rows=int(rows))
