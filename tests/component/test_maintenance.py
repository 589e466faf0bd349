"""Maintenance of real Delta tables on disk: compaction, checkpoint, vacuum and log cleanup keep
the rows, every committed offset (app transaction) and what deltalake and DuckDB readers see.

Tables are checked with ``deltalake`` and DuckDB's ``delta_scan`` directly, not through tradelake's
readers. Retention 0 (``enforce_retention=False``) only where no writer runs at the same time.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from deltalake import CommitProperties, DeltaTable, Transaction, write_deltalake

from pipelines.defs.maintenance.assets import MAINTENANCE_KEY, lake_maintenance
from pipelines.defs.maintenance.schedules import CRON_VARIABLE, DEFAULT_CRON, MAINTENANCE_JOB, MAINTENANCE_SCHEDULE
from pipelines.defs.maintenance.schedules import defs as maintenance_schedules
from pipelines.defs.resources import TradelakeResource
from pipelines.errors import TradelakeError
from pipelines.lake import duckdb_delta
from pipelines.lake.location import LakeLocation
from pipelines.lake.maintain import exclusive, lake_tables, maintain, run_maintenance
from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    PARTITION_COLUMN,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    STREAMS_SCHEMA,
    STREAMS_TABLE,
    topic_schema,
)
from pipelines.lake.tables import Covered, Lake, StaleWriterError, app_id
from pipelines.settings import Settings

TOPIC = "marketplace.jobs"
TOPIC_ID = "topic-id-1"
PARTITIONS = (0, 1)
DAYS = (date(2026, 11, 30), date(2026, 12, 1))
SCHEMA = topic_schema([("job_id", pa.string())])
ORDER = [("_partition", "ascending"), ("_offset", "ascending")]
TRADELAKE = Path(sys.executable).parent / "tradelake"


def _rows(partition: int, first: int, count: int) -> pa.Table:
    """Records ``first``… of a Kafka partition; even offsets landed on one day, odd ones on the next."""
    offsets = range(first, first + count)
    days = [DAYS[o % 2] for o in offsets]
    return pa.Table.from_pydict(
        {
            "_topic": [TOPIC] * count,
            "_partition": [partition] * count,
            "_offset": list(offsets),
            "_key": [f"k{o}" for o in offsets],
            "_key_bytes": [None] * count,
            "_kafka_timestamp": [datetime.combine(d, time(12), UTC) for d in days],
            "_ingested_at": [datetime.combine(d, time(12, 5), UTC) for d in days],
            "_batch_id": [first // count] * count,
            "job_id": [f"job-{partition}-{o}" for o in offsets],
            PARTITION_COLUMN: days,
        },
        schema=SCHEMA,
    )


@dataclass
class Feed:
    """A writer landing micro-batches the way the committer does: one commit per batch, offsets in it."""

    lake: Lake
    rows: int = 8
    next: dict[int, int] = field(default_factory=lambda: dict.fromkeys(PARTITIONS, 0))

    def append(self, batches: int = 1) -> None:
        for _ in range(batches):
            data = pa.concat_tables([_rows(p, self.next[p], self.rows) for p in PARTITIONS])
            covered = [
                Covered(app_id(TOPIC, TOPIC_ID, p), self.next[p], self.next[p] + self.rows - 1) for p in PARTITIONS
            ]
            self.lake.append(TOPIC, data, covered)
            for p in PARTITIONS:
                self.next[p] += self.rows

    def last_offsets(self) -> dict[str, int]:
        return {app_id(TOPIC, TOPIC_ID, p): n - 1 for p, n in self.next.items()}


def _lake(root: Path) -> Lake:
    lake = Lake(LakeLocation(str(root / "lake")))
    lake.ensure(TOPIC, SCHEMA)
    return lake


def _delta_rows(uri: str, version: int | None = None) -> list[dict]:
    return DeltaTable(uri, version=version).to_pyarrow_table().sort_by(ORDER).to_pylist()


def _duckdb_rows(lake: Lake, uri: str) -> list[tuple]:
    con = duckdb_delta.connect(lake.location)
    try:
        return con.execute(f"select * from delta_scan('{uri}') order by _partition, _offset").fetchall()
    finally:
        con.close()


def _offsets(uri: str) -> dict[str, int | None]:
    dt = DeltaTable(uri)
    return {app_id(TOPIC, TOPIC_ID, p): dt.transaction_version(app_id(TOPIC, TOPIC_ID, p)) for p in PARTITIONS}


def _files_per_day(uri: str) -> Counter:
    actions = pa.table(DeltaTable(uri).get_add_actions(flatten=True))
    return Counter(actions.column(f"partition.{PARTITION_COLUMN}").to_pylist())


def _parquet_on_disk(uri: str) -> int:
    return sum(1 for p in Path(uri).rglob("*.parquet") if "_delta_log" not in p.parts)


def test_compaction_keeps_rows_offsets_and_what_deltalake_and_duckdb_read(tmp_path):
    lake = _lake(tmp_path)
    feed = Feed(lake)
    feed.append(30)  # 30 commits, each writing one file into each day's partition
    uri = lake.uri(TOPIC)
    version = DeltaTable(uri).version()
    rows, duck, offsets = _delta_rows(uri), _duckdb_rows(lake, uri), _offsets(uri)
    assert offsets == feed.last_offsets() and len(rows) == len(duck) == 30 * 2 * feed.rows
    assert _files_per_day(uri) == dict.fromkeys(DAYS, 30)

    report = maintain(lake, [TOPIC])

    (t,) = report.tables
    assert (t.name, t.files_before, t.files_after, t.partitions_compacted, t.files_vacuumed) == (TOPIC, 60, 2, 2, 0)
    assert t.version_before == version and t.version_after == version + 2  # one compaction commit per day
    assert t.bytes_after < t.bytes_before
    assert _files_per_day(uri) == dict.fromkeys(DAYS, 1)
    assert _delta_rows(uri) == rows and _duckdb_rows(lake, uri) == duck
    assert _offsets(uri) == offsets
    # within the retention period nothing is deleted: the version before maintenance still reads
    assert _parquet_on_disk(uri) == 62 and _delta_rows(uri, version) == rows
    assert f"{TOPIC}: 60 → 2 files" in t.line() and "2 partitions compacted, 0 files vacuumed" in t.line()

    again = maintain(lake, [TOPIC]).tables[0]
    assert (again.partitions_compacted, again.files_after, again.version_after) == (0, 2, t.version_after)


def test_vacuum_removes_unreferenced_files_only_once_older_than_the_retention_period(tmp_path):
    lake = _lake(tmp_path)
    feed = Feed(lake)
    feed.append(10)
    uri = lake.uri(TOPIC)
    rows, offsets = _delta_rows(uri), _offsets(uri)
    orphan = Path(uri) / f"{PARTITION_COLUMN}={DAYS[0]}" / "part-00000-crashed-writer-c000.snappy.parquet"
    orphan.write_bytes(b"a data file whose commit never happened")

    kept = maintain(lake, [TOPIC]).tables[0]  # default: 7 days
    assert kept.files_vacuumed == 0 and orphan.exists() and _parquet_on_disk(uri) == 20 + 2 + 1
    with pytest.raises(TradelakeError, match="shorter than Delta's 168 h"):
        maintain(lake, [TOPIC], retention_hours=24)

    swept = maintain(lake, [TOPIC], retention_hours=0, enforce_retention=False).tables[0]
    assert swept.files_vacuumed == 20 + 1 and not orphan.exists()
    assert _parquet_on_disk(uri) == swept.files_after == 2
    assert _delta_rows(uri) == rows and _offsets(uri) == offsets


def test_maintenance_between_batches_keeps_offsets_counts_and_the_stale_writer_check(tmp_path):
    lake = _lake(tmp_path)
    uri = lake.uri(TOPIC)
    # log entries expire at once, so cleanup removes every commit file behind the checkpoint
    DeltaTable(uri).alter.set_table_properties({"delta.logRetentionDuration": "interval 0 seconds"})
    feed = Feed(lake)
    for round_ in range(1, 4):
        feed.append(5)
        maintain(lake, [TOPIC], retention_hours=0, enforce_retention=False)
        assert _offsets(uri) == feed.last_offsets()
        assert lake.committed(TOPIC, list(feed.last_offsets())) == feed.last_offsets()
        assert len(_delta_rows(uri)) == len(_duckdb_rows(lake, uri)) == round_ * 5 * 2 * feed.rows
        assert _files_per_day(uri) == dict.fromkeys(DAYS, 1)
    assert not (Path(uri) / "_delta_log" / f"{1:020}.json").exists()  # the log was cleaned...
    assert _offsets(uri) == feed.last_offsets()  # ...and the offsets are read from the checkpoint

    offsets = [r["_offset"] for r in _delta_rows(uri) if r["_partition"] == 0]
    assert offsets == list(range(feed.next[0]))  # every offset exactly once
    stale = Lake(LakeLocation(lake.location.url))  # e.g. a writer that lost the partition
    with pytest.raises(StaleWriterError):
        stale.append(TOPIC, _rows(0, 0, 4), [Covered(app_id(TOPIC, TOPIC_ID, 0), 0, 3)])
    feed.append(1)  # the next batch commits on top of the maintained table
    assert _offsets(uri) == feed.last_offsets()


def test_appends_while_maintenance_runs_are_kept_exactly_once(tmp_path):
    lake = _lake(tmp_path)
    feed = Feed(Lake(LakeLocation(lake.location.url)))  # the writer is another process's Lake
    feed.append(5)
    writer = threading.Thread(target=feed.append, args=(60,))
    writer.start()
    compactions = 0
    while writer.is_alive():  # default retention: a writer's uncommitted files are never touched
        compactions += sum(t.partitions_compacted for t in maintain(lake, [TOPIC]).tables)
    writer.join()
    assert compactions >= 2  # maintenance did commit between the writer's commits
    maintain(lake, [TOPIC])
    uri = lake.uri(TOPIC)
    assert _offsets(uri) == feed.last_offsets()
    assert [(r["_partition"], r["_offset"]) for r in _delta_rows(uri)] == [
        (p, o) for p in PARTITIONS for o in range(feed.next[p])
    ]


def test_live_files_per_partition_stay_bounded_over_200_appends(tmp_path):
    lake = _lake(tmp_path)
    feed = Feed(lake, rows=2)
    uri = lake.uri(TOPIC)
    most = 0
    for n in range(1, 201):
        feed.append()
        most = max(most, *_files_per_day(uri).values())
        if n % 50 == 0:
            maintain(lake, [TOPIC], retention_hours=0, enforce_retention=False)
            assert _files_per_day(uri) == dict.fromkeys(DAYS, 1)
            assert _parquet_on_disk(uri) == 2
    assert most == 51  # 50 appends since the last compaction, plus the file it left
    assert _offsets(uri) == feed.last_offsets() and len(_delta_rows(uri)) == 200 * 2 * 2


def _sample(schema: pa.Schema, rows: int, day: date) -> pa.Table:
    """Rows of any lake table's schema: enough to give it files, nothing more."""
    at = datetime.combine(day, time(9), UTC)
    by_type = {
        pa.string(): "x",
        pa.int32(): 1,
        pa.int64(): 1,
        pa.binary(): b"x",
        pa.list_(pa.string()): ["rule"],
        pa.date32(): day,
        pa.timestamp("ms", tz="UTC"): at,
        pa.timestamp("us", tz="UTC"): at,
    }
    return pa.Table.from_pydict({f.name: [by_type[f.type]] * rows for f in schema}, schema=schema)


def test_every_lake_table_is_maintained_in_order_and_absent_ones_are_skipped(tmp_path):
    lake = _lake(tmp_path)
    Feed(lake).append(3)
    own = {QUARANTINE_TABLE: QUARANTINE_SCHEMA, BATCHES_TABLE: BATCHES_SCHEMA, STREAMS_TABLE: STREAMS_SCHEMA}
    for name, schema in own.items():
        lake.ensure(name, schema)
        for day in (*DAYS, *DAYS):
            lake.append(name, _sample(schema, 3, day), [])

    seen = []
    report = maintain(lake, lake_tables(), on_table=seen.append)

    assert [t.name for t in report.tables] == [t.name for t in seen] == [TOPIC, *own]
    after = {t.name: (t.files_before, t.files_after) for t in report.tables}
    # _streams has no date partition: compacted as a whole
    assert after == {TOPIC: (6, 2), QUARANTINE_TABLE: (4, 2), BATCHES_TABLE: (4, 2), STREAMS_TABLE: (4, 1)}
    assert report.summary().startswith("maintained 4 tables in ") and "18 → 7 live files" in report.summary()


def test_one_maintenance_at_a_time(tmp_path):
    lake = _lake(tmp_path)
    settings = Settings(home=tmp_path, lake=lake.location)
    with exclusive(tmp_path), pytest.raises(TradelakeError, match="another maintenance of this lake is running"):
        run_maintenance(settings)
    assert [t.name for t in run_maintenance(settings).tables] == [TOPIC]  # the lock is released
    with pytest.raises(TradelakeError, match="no lake table nosuch"):
        run_maintenance(settings, tables=["nosuch"])
    with pytest.raises(TradelakeError, match=f"has no table {BATCHES_TABLE} yet"):
        run_maintenance(settings, tables=[BATCHES_TABLE])


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRADELAKE_", "AWS_"))}
    env["TRADELAKE_HOME"] = str(home)
    return subprocess.run(
        [str(TRADELAKE), "maintain", *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def _raw_lake(home: Path) -> dict[str, int]:
    """A lake written with plain write_deltalake, offsets as app transactions; returns them."""
    uri = str(home / "lake" / TOPIC)
    offsets = {}
    for batch in range(10):
        for p in PARTITIONS:
            first = batch * 4
            aid = app_id(TOPIC, TOPIC_ID, p)
            props = CommitProperties(app_transactions=[Transaction(app_id=aid, version=first + 3)])
            write_deltalake(
                uri, _rows(p, first, 4), mode="append", partition_by=[PARTITION_COLUMN], commit_properties=props
            )
            offsets[aid] = first + 3
    for day in DAYS:
        batches = str(home / "lake" / BATCHES_TABLE)
        write_deltalake(batches, _sample(BATCHES_SCHEMA, 2, day), mode="append", partition_by=[PARTITION_COLUMN])
    return offsets


def test_the_maintain_command(tmp_path):
    home = tmp_path / "home"
    offsets = _raw_lake(home)

    done = _cli(home)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 3, done.stdout
    assert lines[0].startswith(f"{TOPIC}: 40 → 2 files (") and ", 2 partitions compacted, 0 files vacuumed" in lines[0]
    assert lines[1].startswith(f"{BATCHES_TABLE}: 2 → 2 files (")
    assert lines[2].startswith("maintained 2 tables in ") and lines[2].endswith(
        "42 → 4 live files, 0 unreferenced files older than 168 h vacuumed"
    )
    dt = DeltaTable(str(home / "lake" / TOPIC))
    assert {a: dt.transaction_version(a) for a in offsets} == offsets
    assert dt.to_pyarrow_table().num_rows == 80

    only = _cli(home, "--table", TOPIC)
    assert only.returncode == 0 and only.stdout.splitlines()[0].startswith(f"{TOPIC}: 2 → 2 files")
    empty = _cli(tmp_path / "empty")
    assert empty.returncode == 0 and empty.stdout.startswith("nothing to maintain: the lake at ")


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--table", "nosuch"], "no lake table nosuch; the lake's tables are marketplace.jobs, "),
        (["--table", STREAMS_TABLE], f"has no table {STREAMS_TABLE} yet"),
        (["--retention-hours", "1"], "a retention period of 1 h is shorter than Delta's 168 h (7 days)"),
        ([], "another maintenance of this lake is running"),
    ],
)
def test_the_maintain_command_refuses_with_one_line(tmp_path, args, error):
    home = tmp_path / "home"
    _raw_lake(home)
    with exclusive(home) if not args else contextlib.nullcontext():  # no arguments: while another run holds the lock
        done = _cli(home, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("tradelake: error: ") and error in done.stderr


def test_the_dagster_asset_maintains_the_lake_on_its_schedule(tmp_path, monkeypatch):
    home = tmp_path / "home"
    offsets = _raw_lake(home)
    result = dg.materialize([lake_maintenance], resources={"tradelake": TradelakeResource(home=str(home))})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("lake_maintenance")
    metadata = materialization.metadata
    assert (metadata["tables"].value, metadata["files_before"].value, metadata["files_after"].value) == (2, 42, 4)
    assert f"| `{TOPIC}` | 40 | 2 |" in metadata["by_table"].value
    dt = DeltaTable(str(home / "lake" / TOPIC))
    assert {a: dt.transaction_version(a) for a in offsets} == offsets

    monkeypatch.delenv(CRON_VARIABLE, raising=False)
    defs = dg.Definitions.merge(
        maintenance_schedules(),
        dg.Definitions(assets=[lake_maintenance], resources={"tradelake": TradelakeResource(home=str(home))}),
    )
    schedule = defs.resolve_schedule_def(MAINTENANCE_SCHEDULE)
    assert schedule.cron_schedule == DEFAULT_CRON and schedule.job_name == MAINTENANCE_JOB
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert set(defs.resolve_job_def(MAINTENANCE_JOB).asset_layer.executable_asset_keys) == {MAINTENANCE_KEY}
    monkeypatch.setenv(CRON_VARIABLE, "5 */6 * * *")
    assert maintenance_schedules().schedules[0].cron_schedule == "5 */6 * * *"
