"""The lake's readers (status, summary, contract checks, Dagster metadata, demo reset) on Delta
tables written here with ``deltalake`` directly, no broker: they read committed versions only,
and a table not created yet reads as empty."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines.cli import main
from pipelines.defs.contracts.checks import read_validations
from pipelines.defs.landing.assets import bytes_of_batches, log_files, row_count
from pipelines.demo import reset_lake
from pipelines.errors import TradelakeError
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
from pipelines.lake.tables import Lake
from pipelines.settings import Settings
from pipelines.status import partition_status, require_lake
from pipelines.summary import format_lake

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
GPS_SCHEMA = topic_schema([("event_id", pa.string())])


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(env={}, home=str(tmp_path / "home"))


def _append(settings: Settings, name: str, schema: pa.Schema, rows: list[dict]) -> None:
    write_deltalake(
        settings.lake.table_uri(name),
        pa.Table.from_pylist(rows, schema=schema),
        mode="append",
        partition_by=[PARTITION_COLUMN] if PARTITION_COLUMN in schema.names else None,
    )


def _batch(batch_id: int, topic: str, topic_id: str, partition: int, first: int, last: int, **counts) -> dict:
    at = T0 + timedelta(minutes=batch_id)
    records = last - first + 1
    return {
        "batch_id": batch_id,
        "topic": topic,
        "topic_id": topic_id,
        "partition": partition,
        "first_offset": first,
        "last_offset": last,
        "records": records,
        "landed": counts.get("landed", records - counts.get("quarantined", 0) - counts.get("tombstones", 0)),
        "quarantined": counts.get("quarantined", 0),
        "tombstones": counts.get("tombstones", 0),
        "last_record_sha256": "0" * 64,
        "validation": json.dumps(counts.get("validation", {"topic": topic, "batch": batch_id})),
        "ingested_at": at,
        PARTITION_COLUMN: at.date(),
    }


def _stream(topic: str, topic_id: str, since: datetime, reason: str) -> dict:
    return {"topic": topic, "topic_id": topic_id, "partitions": 1, "since": since, "reason": reason}


def _gps_rows(batch_id: int, offsets: range) -> list[dict]:
    at = T0 + timedelta(minutes=batch_id)
    return [
        {
            "_topic": "fleet.gps",
            "_partition": 0,
            "_offset": o,
            "_key": "tp_1",
            "_kafka_timestamp": at,
            "_ingested_at": at,
            "_batch_id": batch_id,
            "event_id": f"e{o}",
            PARTITION_COLUMN: at.date(),
        }
        for o in offsets
    ]


def test_status_of_a_home_with_no_lake_is_one_error_line(settings: Settings, monkeypatch, capsys):
    monkeypatch.delenv("TRADELAKE_LAKE_URL", raising=False)
    assert main(["status", "--home", str(settings.home)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"tradelake: error: no lake at {settings.lake.url}; run 'tradelake ingest' first"]


def test_tables_not_created_yet_read_as_empty(settings: Settings):
    lake = Lake(settings.lake)
    assert partition_status(settings, with_broker=False) == []
    assert format_lake(settings) == f"nothing has landed in {settings.lake.url}"
    assert read_validations(lake, "fleet.gps", (1, 5)) == []
    assert log_files(lake, "fleet.gps") is None and row_count(None) == 0 and bytes_of_batches(None, [1]) == 0


def test_status_counts_the_committed_batches_of_the_current_stream_only(settings: Settings):
    _append(
        settings,
        BATCHES_TABLE,
        BATCHES_SCHEMA,
        [
            _batch(1, "fleet.gps", "old", 0, 0, 99, quarantined=4),
            _batch(1, "marketplace.jobs", "jobs", 0, 0, 9, tombstones=1),
            _batch(2, "fleet.gps", "old", 0, 100, 149),
        ],
    )
    # the broker was replaced and the topic reset: the new stream starts again at offset 0
    _append(settings, BATCHES_TABLE, BATCHES_SCHEMA, [_batch(3, "fleet.gps", "new", 0, 0, 9, quarantined=2)])
    _append(
        settings,
        STREAMS_TABLE,
        STREAMS_SCHEMA,
        [_stream("fleet.gps", "old", T0, "first seen"), _stream("fleet.gps", "new", T0 + timedelta(hours=1), "reset")],
    )
    rows = {(r.topic, r.partition): r for r in partition_status(settings, with_broker=False)}
    gps = rows[("fleet.gps", 0)]
    assert (gps.landed_up_to, gps.landed, gps.quarantined, gps.last_batch) == (10, 8, 2, 3)
    assert gps.high_watermark is None and gps.lag is None
    assert gps.last_ingested_at == T0 + timedelta(minutes=3)
    jobs = rows[("marketplace.jobs", 0)]  # no _streams row: every batch of the topic counts
    assert (jobs.landed_up_to, jobs.landed, jobs.tombstones, jobs.last_batch) == (10, 9, 1, 1)
    assert list(rows) == [("marketplace.jobs", 0), ("fleet.gps", 0)], "catalog order"


def test_the_lake_summary_totals_batches_and_ranks_quarantine_rules(settings: Settings):
    _append(settings, BATCHES_TABLE, BATCHES_SCHEMA, [_batch(1, "fleet.gps", "x", 0, 0, 9, quarantined=3)])
    quarantined = [
        {
            "_topic": "fleet.gps",
            "_partition": 0,
            "_offset": o,
            "_batch_id": 1,
            "rules": rules,
            "reason": "broken",
            PARTITION_COLUMN: T0.date(),
        }
        for o, rules in ((7, ["lat is a latitude"]), (8, ["lat is a latitude", "event_id is a UUID"]), (9, []))
    ]
    _append(settings, QUARANTINE_TABLE, QUARANTINE_SCHEMA, quarantined)
    text = format_lake(settings)
    assert "fleet.gps" in text and "quarantined by rule" in text
    assert "fleet.gps: lat is a latitude ×2, event_id is a UUID ×1" in text
    assert [line.split() for line in text.splitlines()[1:2]] == [["fleet.gps", "10", "7", "3", "0"]]


def test_contract_checks_read_one_validation_per_batch_of_their_topic(settings: Settings):
    rows = []
    for b in (1, 2, 3):
        for topic in ("fleet.gps", "marketplace.jobs"):
            doc = {"topic": topic, "batch": b}
            rows += [_batch(b, topic, "x", p, 10 * b, 10 * b + 9, validation=doc) for p in (0, 1)]
    _append(settings, BATCHES_TABLE, BATCHES_SCHEMA, rows)
    found = read_validations(Lake(settings.lake), "fleet.gps", (2, 3))
    assert found == [(2, {"topic": "fleet.gps", "batch": 2}), (3, {"topic": "fleet.gps", "batch": 3})]
    assert read_validations(Lake(settings.lake), "fleet.gps", None) == []


def test_landing_metadata_reads_sizes_and_row_counts_from_the_delta_log(settings: Settings):
    _append(settings, "fleet.gps", GPS_SCHEMA, _gps_rows(1, range(0, 5)))
    _append(settings, "fleet.gps", GPS_SCHEMA, _gps_rows(2, range(5, 8)))
    lake = Lake(settings.lake)
    files = log_files(lake, "fleet.gps")
    assert row_count(files) == 8
    added = pa.table(DeltaTable(settings.lake.table_uri("fleet.gps")).get_add_actions(flatten=True))
    sizes = dict(zip(added["min._batch_id"].to_pylist(), added["size_bytes"].to_pylist(), strict=True))
    assert bytes_of_batches(files, [2]) == sizes[2]
    assert bytes_of_batches(files, [1, 2]) == sizes[1] + sizes[2]
    assert bytes_of_batches(files, [3]) == 0


def test_the_demo_starts_from_an_empty_lake_and_warehouse(settings: Settings):
    _append(settings, BATCHES_TABLE, BATCHES_SCHEMA, [_batch(1, "fleet.gps", "x", 0, 0, 9)])
    (settings.home / "warehouse.duckdb").write_bytes(b"marts")
    key = settings.personal_data_key()
    reset_lake(settings)
    assert not Path(settings.lake.url).exists()
    assert not (settings.home / "warehouse.duckdb").exists()
    assert settings.personal_data_key() == key, "the personal-data key stays: hashes are join keys"
    reset_lake(settings)  # nothing left to remove is fine too


def test_readers_and_the_demo_reset_on_an_s3_lake(tmp_path: Path, s3_env: dict[str, str]):
    settings = Settings.load(env=s3_env, home=str(tmp_path / "home"))
    with pytest.raises(TradelakeError, match=re.escape(f"no lake at {settings.lake.url};")):
        require_lake(settings)
    reset_lake(settings)  # an empty prefix: nothing to refuse

    write_deltalake(
        settings.lake.table_uri(BATCHES_TABLE),
        pa.Table.from_pylist([_batch(1, "fleet.gps", "x", 0, 0, 9)], schema=BATCHES_SCHEMA),
        partition_by=[PARTITION_COLUMN],
        storage_options=dict(settings.lake.storage_options),
    )
    require_lake(settings)
    [gps] = partition_status(settings, with_broker=False)
    assert (gps.topic, gps.landed_up_to, gps.landed) == ("fleet.gps", 10, 10)
    (settings.home / "warehouse.duckdb").parent.mkdir(parents=True, exist_ok=True)
    (settings.home / "warehouse.duckdb").write_bytes(b"marts")
    with pytest.raises(TradelakeError, match=r"the demo starts from an empty lake.*_batches"):
        reset_lake(settings)  # a lake in object storage is never deleted
    assert (settings.home / "warehouse.duckdb").exists()
    require_lake(settings)
