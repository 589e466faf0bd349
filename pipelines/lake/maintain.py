"""Table maintenance: compact each day's small files, checkpoint, vacuum, clean the log.

Why: every micro-batch adds a file per table and day partition, and a Delta commit costs more
the more live files the table has (delta-rs: 14 → 66 ms over 400 commits, flat with a
compaction every 50), as does every read. Maintenance bounds the file count and the log.

What it keeps: compaction rewrites files with ``dataChange=false``; the rows and the app
transactions (the Kafka offsets each table has committed) belong to the table's state, not to
its files, so both are unchanged. Vacuum deletes only files that no version within the
retention period references, and leftovers of crashed writers older than it: a reader of a
recent version keeps its files, and so does a writer whose data files are written but not yet
committed. Hence 7 days by default, Delta's own; a shorter period needs ``enforce_retention``
off, which only tests do. The log keeps ``delta.logRetentionDuration`` (30 days by default)
behind the checkpoint written here.

Appends by ``ingest`` while maintenance runs are safe (a compaction does not conflict with a
blind append). Two maintenances at once are not: delta-rs 1.6 lets two compactions of the same
files both commit, after which every row of those files is there twice. ``run_maintenance``
therefore holds a lock under ``$TRADELAKE_HOME`` for the whole run.
"""

from __future__ import annotations

import fcntl
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError

from pipelines.catalog import TOPIC_NAMES
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import BATCHES_TABLE, OWNERS_TABLE, PUBLISHED_TABLE, QUARANTINE_TABLE, STREAMS_TABLE
from pipelines.lake.tables import Lake
from pipelines.settings import Settings

DEFAULT_RETENTION_HOURS = 168  # Delta's default delta.deletedFileRetentionDuration (7 days)
DEFAULT_TARGET_SIZE = 64 * 1024 * 1024
LOCK_FILE = "maintenance.lock"
# One compaction task: maintenance shares a small machine with ingest, and one task bounds the memory.
_COMPACTION_TASKS = 1


def lake_tables() -> list[str]:
    """Every table the lake can have: one per catalog topic, then the lake's own."""
    return [*TOPIC_NAMES, QUARANTINE_TABLE, BATCHES_TABLE, STREAMS_TABLE, OWNERS_TABLE, PUBLISHED_TABLE]


@dataclass(frozen=True)
class TableReport:
    """What maintenance did to one table (files and bytes are the live ones, before and after)."""

    name: str
    files_before: int
    files_after: int
    bytes_before: int
    bytes_after: int
    partitions_compacted: int
    files_vacuumed: int
    version_before: int
    version_after: int
    seconds: float

    def line(self) -> str:
        return (
            f"{self.name}: {self.files_before:,} → {self.files_after:,} files "
            f"({_size(self.bytes_before)} → {_size(self.bytes_after)}), "
            f"{self.partitions_compacted:,} partitions compacted, {self.files_vacuumed:,} files vacuumed, "
            f"version {self.version_before:,} → {self.version_after:,}, {self.seconds:.1f} s"
        )


@dataclass(frozen=True)
class MaintenanceReport:
    tables: tuple[TableReport, ...]
    retention_hours: int
    seconds: float

    def summary(self) -> str:
        before = sum(t.files_before for t in self.tables)
        after = sum(t.files_after for t in self.tables)
        vacuumed = sum(t.files_vacuumed for t in self.tables)
        return (
            f"maintained {len(self.tables)} tables in {self.seconds:.1f} s: {before:,} → {after:,} live files, "
            f"{vacuumed:,} unreferenced files older than {self.retention_hours:,} h vacuumed"
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n:,} B"
    for exponent, unit in ((1, "KiB"), (2, "MiB")):
        if n < 1024 ** (exponent + 1):
            return f"{n / 1024**exponent:,.1f} {unit}"
    return f"{n / 1024**3:,.1f} GiB"


def live_files(dt: DeltaTable) -> dict[tuple[str, ...], list[int]]:
    """The sizes of the table's live files, by partition (its values as strings; () when unpartitioned)."""
    columns = dt.metadata().partition_columns
    actions = pa.table(dt.get_add_actions(flatten=True))
    values = [actions.column(f"partition.{c}").to_pylist() for c in columns]
    files: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for i, size in enumerate(actions.column("size_bytes").to_pylist()):
        # '' is how delta-rs filters name a null partition value
        files[tuple("" if v[i] is None else str(v[i]) for v in values)].append(size)
    return dict(files)


def maintain_table(
    dt: DeltaTable, name: str, retention_hours: int, target_size: int, enforce_retention: bool
) -> TableReport:
    """Compact the partitions holding more than one small file, vacuum, checkpoint, clean the log."""
    started = time.monotonic()
    version_before = dt.version()
    before = live_files(dt)
    columns = dt.metadata().partition_columns
    compacted = 0
    for values, sizes in before.items():
        # delta-rs leaves files above the target size alone: a partition needs two smaller ones
        if sum(1 for s in sizes if s <= target_size) > 1:
            metrics = dt.optimize.compact(
                partition_filters=[(c, "=", v) for c, v in zip(columns, values, strict=True)] or None,
                target_size=target_size,
                max_concurrent_tasks=_COMPACTION_TASKS,
            )
            if metrics["numFilesRemoved"]:
                compacted += 1
    vacuumed = dt.vacuum(
        retention_hours=retention_hours,
        dry_run=False,
        enforce_retention_duration=enforce_retention,
        full=True,  # also the files of writers that died before committing, once older than the retention
    )
    dt.create_checkpoint()
    dt.cleanup_metadata()
    after = live_files(dt)
    return TableReport(
        name=name,
        files_before=sum(len(s) for s in before.values()),
        files_after=sum(len(s) for s in after.values()),
        bytes_before=sum(sum(s) for s in before.values()),
        bytes_after=sum(sum(s) for s in after.values()),
        partitions_compacted=compacted,
        files_vacuumed=len(vacuumed),
        version_before=version_before,
        version_after=dt.version(),
        seconds=time.monotonic() - started,
    )


def maintain(
    lake: Lake,
    tables: Sequence[str],
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    *,
    target_size: int = DEFAULT_TARGET_SIZE,
    enforce_retention: bool = True,
    on_table: Callable[[TableReport], None] | None = None,
) -> MaintenanceReport:
    """Maintain each of ``tables`` that exists, in order; ``on_table`` hears of each one as it is done.

    The caller makes sure no other maintenance runs on these tables (see ``run_maintenance``).
    """
    if retention_hours < 0 or target_size < 1:
        raise TradelakeError("the retention period cannot be negative and the target file size must be positive")
    if enforce_retention and retention_hours < DEFAULT_RETENTION_HOURS:
        raise TradelakeError(
            f"a retention period of {retention_hours} h is shorter than Delta's {DEFAULT_RETENTION_HOURS} h (7 days): "
            "vacuum could delete files that readers of recent versions or uncommitted writes still need"
        )
    started = time.monotonic()
    done = []
    for name in tables:
        dt = lake.table(name)
        if dt is None:
            continue
        try:
            report = maintain_table(dt, name, retention_hours, target_size, enforce_retention)
        except DeltaError as e:
            raise TradelakeError(f"maintenance of the lake table {name} failed: {e}") from None
        done.append(report)
        if on_table is not None:
            on_table(report)
    return MaintenanceReport(tuple(done), retention_hours, time.monotonic() - started)


@contextmanager
def exclusive(home: Path) -> Iterator[None]:
    """Hold the home's maintenance lock (released when the process ends, however it ends)."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TradelakeError(
                f"another maintenance of this lake is running (it holds {home / LOCK_FILE}): let it finish"
            ) from None
        yield


def run_maintenance(
    settings: Settings,
    tables: Sequence[str] | None = None,
    retention_hours: int = DEFAULT_RETENTION_HOURS,
    *,
    target_size: int = DEFAULT_TARGET_SIZE,
    on_table: Callable[[TableReport], None] | None = None,
) -> MaintenanceReport:
    """Maintain the lake's tables (default: every one that exists) under the home's maintenance lock."""
    known = lake_tables()
    lake = Lake(settings.lake)
    if tables:
        unknown = [t for t in tables if t not in known]
        if unknown:
            raise TradelakeError(f"no lake table {', '.join(unknown)}; the lake's tables are {', '.join(known)}")
        absent = [t for t in tables if not lake.exists(t)]
        if absent:
            raise TradelakeError(f"the lake at {settings.lake.url} has no table {', '.join(absent)} yet")
    with exclusive(settings.home):
        return maintain(lake, list(tables or known), retention_hours, target_size=target_size, on_table=on_table)
