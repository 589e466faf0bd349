"""Find planted personal data anywhere under a lake's home (SPEC §2.4: never in clear, anywhere).

A byte scan alone misses what storage formats encode: Parquet pages are compressed and DuckDB
compresses strings (FSST, dictionaries). So every file is scanned as bytes, and besides:
Parquet files (data files and Delta checkpoints, committed or not) are decoded with pyarrow,
every column (binary ones too); DuckDB databases are opened read-only and every table and
view of every schema is read; SQLite databases (the Dagster instance's storage) have every
row of every table read. Matching is case-insensitive, on the planted values and the simple
variants a leak could take (lowercase, a phone without spaces or as digits only, the surname
alone, which also catches the e-mail's local part and Python-repr or re-serialised text).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.lake.duckdb_delta import connect
from pipelines.lake.location import LakeLocation

SQLITE_MAGIC = b"SQLite format 3\x00"
PARQUET_MAGIC = b"PAR1"


@dataclass(frozen=True)
class Finding:
    path: Path
    where: str  # "bytes", "parquet", "duckdb <schema>.<table>", "sqlite <table>"
    needle: str

    def __str__(self) -> str:
        return f"{self.needle!r} in {self.path} ({self.where})"


def variants(values: Iterable[str]) -> list[str]:
    """The lowercase needles for planted values: each value, and per kind its simple variants."""
    out: set[str] = set()
    for value in values:
        v = value.lower()
        out.add(v)
        if "@" in v:  # an e-mail: its local part (the name in it) too
            out.add(v.split("@", 1)[0])
        digits = re.sub(r"\D", "", v)
        if len(digits) >= 10 and len(digits) >= len(v) // 2:  # a phone number
            out |= {v.replace(" ", ""), digits, digits[-10:]}
        elif " " in v:  # a name: each part of 6+ letters (the surname), and without the space
            out |= {part for part in v.split() if len(part) >= 6} | {v.replace(" ", "")}
    return sorted(out)


def _cells(values: Iterable[Any]) -> Iterator[bytes]:
    for value in values:
        if value is None:
            continue
        if isinstance(value, bytes | bytearray | memoryview):
            yield bytes(value)
        elif isinstance(value, str):
            yield value.encode("utf-8", "surrogatepass")
        elif isinstance(value, list | tuple):
            yield from _cells(value)
        elif isinstance(value, dict):
            yield from _cells(value.keys())
            yield from _cells(value.values())
        else:
            yield str(value).encode()


def _table_blob(table: pa.Table) -> bytes:
    return b"\x00".join(cell for column in table.columns for cell in _cells(column.to_pylist()))


def _parquet(path: Path) -> Iterator[tuple[str, bytes]]:
    yield "parquet", _table_blob(pq.read_table(path))


def _duckdb(path: Path, lake: LakeLocation) -> Iterator[tuple[str, bytes]]:
    con = connect(lake, str(path), read_only=True)
    try:
        relations = con.execute(
            "select table_catalog, table_schema, table_name from information_schema.tables"
            " where table_schema not in ('information_schema', 'pg_catalog')"
        ).fetchall()
        for catalog, schema, name in relations:
            relation = f'"{catalog}"."{schema}"."{name}"'
            yield f"duckdb {schema}.{name}", _table_blob(con.execute(f"select * from {relation}").to_arrow_table())
    finally:
        con.close()


def _sqlite(path: Path) -> Iterator[tuple[str, bytes]]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    con.text_factory = bytes
    try:
        names = [r[0].decode() for r in con.execute("select name from sqlite_master where type = 'table'")]
        for name in names:
            rows = con.execute(f'select * from "{name}"').fetchall()
            yield f"sqlite {name}", b"\x00".join(cell for row in rows for cell in _cells(row))
    finally:
        con.close()


def _decoded(path: Path, head: bytes, lake: LakeLocation) -> Iterator[tuple[str, bytes]]:
    """What the file holds once decoded by its own format's reader (nothing for plain files)."""
    if head.startswith(PARQUET_MAGIC) or path.suffix == ".parquet":
        yield from _parquet(path)
    elif head.startswith(SQLITE_MAGIC):
        yield from _sqlite(path)
    elif head[8:12] == b"DUCK":
        yield from _duckdb(path, lake)


def scan(home: Path, planted: Iterable[str], lake: LakeLocation | None = None) -> list[Finding]:
    """Every occurrence of a variant of ``planted`` in a file under ``home`` (recursively)."""
    needles = [(n, n.encode()) for n in variants(planted)]
    location = lake or LakeLocation.from_env({}, home)
    findings: list[Finding] = []
    for path in sorted(p for p in home.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        for where, blob in [("bytes", raw), *_decoded(path, raw[:16], location)]:
            lowered = blob.lower()
            findings += [Finding(path, where, text) for text, needle in needles if needle in lowered]
    return findings


def scan_text(text: str | bytes, planted: Iterable[str]) -> list[str]:
    """The variants of ``planted`` found in ``text`` (a command's output, an exported file)."""
    lowered = (text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")).lower()
    return [n for n in variants(planted) if n.encode() in lowered]
