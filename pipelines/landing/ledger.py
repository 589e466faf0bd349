"""The lake's ledger: the source of truth for what has landed, and the commit point.

A micro-batch is committed when its manifest ``_ledger/<batch>.parquet`` exists: one row
per (topic, partition) with the offset range it covers and how each record was represented
(landed, quarantined, tombstone). Data files are written before the manifest, so a crash
before the manifest leaves only files that no manifest references; ``recover`` deletes them
and landing restarts from the offsets after the last committed batch. Kafka consumer-group
offsets are committed afterwards for monitoring only and never read back.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.errors import TradelakeError
from pipelines.landing.files import TMP_SUFFIX, write_parquet_durably

LEDGER_DIR = "_ledger"
# Batch 0 holds no records: one empty file per topic with the current landed schema, so that
# readers (dbt sources) always find a file with every column, even before data arrives.
SCHEMA_BATCH = 0
DATA_DIRS = ("landing", "quarantine", "validation")

MANIFEST_SCHEMA = pa.schema(
    [
        ("batch_id", pa.int64()),
        ("topic", pa.string()),
        ("partition", pa.int32()),
        ("first_offset", pa.int64()),
        ("last_offset", pa.int64()),
        ("records", pa.int64()),
        ("landed", pa.int64()),
        ("quarantined", pa.int64()),
        ("tombstones", pa.int64()),
        ("ingested_at", pa.timestamp("us", tz="UTC")),
    ]
)


def batch_file_name(batch_id: int, suffix: str = ".parquet") -> str:
    return f"{batch_id:012d}{suffix}"


def _batch_id_of(path: Path) -> int | None:
    stem = path.name.split(".", 1)[0]
    return int(stem) if stem.isdigit() else None


@dataclass
class RecoveryReport:
    committed_batches: int
    removed_files: list[Path]


def _has_schema(path: Path, schema: pa.Schema) -> bool:
    try:
        return pq.read_schema(path).equals(schema)
    except (OSError, pa.ArrowException):  # missing or unreadable: rewrite it
        return False


class Ledger:
    def __init__(self, home: Path) -> None:
        self.home = home
        self.dir = home / LEDGER_DIR

    def manifests(self) -> pa.Table:
        """Every committed manifest row (empty table when nothing has landed)."""
        files = sorted(self.dir.glob("*.parquet")) if self.dir.is_dir() else []
        if not files:
            return MANIFEST_SCHEMA.empty_table()
        return pa.concat_tables(pq.read_table(f, schema=MANIFEST_SCHEMA) for f in files)

    def committed_batch_ids(self) -> set[int]:
        """Batches with a manifest, plus the schema batch, which needs none."""
        if not self.dir.is_dir():
            return {SCHEMA_BATCH}
        return {SCHEMA_BATCH} | {b for f in self.dir.glob("*.parquet") if (b := _batch_id_of(f)) is not None}

    def write_schema_batch(self, schemas: dict[str, dict[str, pa.Schema]]) -> None:
        """(Re)write batch 0: for each {kind: {topic: schema}}, an empty file of that schema.

        Only files whose schema changed (a contract evolved) are rewritten: two dozen durable
        writes on every start cost ~0.4 s.
        """
        for kind, by_topic in schemas.items():
            for topic, schema in by_topic.items():
                path = self.home / kind / topic / batch_file_name(SCHEMA_BATCH)
                if not _has_schema(path, schema):
                    write_parquet_durably(schema.empty_table(), path)

    def recover(self) -> RecoveryReport:
        """Delete what a crash left behind: temp files and files of uncommitted batches."""
        committed = self.committed_batch_ids()
        removed: list[Path] = []
        for sub in (*DATA_DIRS, LEDGER_DIR):
            root = self.home / sub
            if not root.is_dir():
                continue
            for f in root.rglob("*"):
                if f.is_file() and (f.name.endswith(TMP_SUFFIX) or _batch_id_of(f) not in committed):
                    f.unlink()
                    removed.append(f)
        return RecoveryReport(committed_batches=len(committed), removed_files=removed)

    def next_offsets(self) -> dict[tuple[str, int], int]:
        """Per (topic, partition): the first offset not yet represented in the lake."""
        table = self.manifests()
        positions: dict[tuple[str, int], int] = {}
        for topic, partition, last in zip(
            table["topic"].to_pylist(),
            table["partition"].to_pylist(),
            table["last_offset"].to_pylist(),
            strict=True,
        ):
            positions[(topic, partition)] = max(positions.get((topic, partition), 0), last + 1)
        return positions

    def next_batch_id(self) -> int:
        return max(self.committed_batch_ids(), default=0) + 1

    def commit(self, batch_id: int, rows: list[dict[str, object]]) -> None:
        """Make a batch durable and visible: the manifest's rename is the commit point."""
        write_parquet_durably(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), self.dir / batch_file_name(batch_id))

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        """One landing process per lake: a second one would land the same offsets twice."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / "landing.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise TradelakeError(f"another 'tradelake ingest' is landing into {self.home}") from None
            yield
