"""The lake on ``s3://`` against a loopback S3 server (moto): the same commit rules as on disk.

Offsets live in each table's own Delta log, stale writers are refused (also one that commits
between the check and its own commit), and readers — delta-rs and DuckDB's ``delta_scan`` —
see only what the log references. Tables are checked with ``deltalake`` directly.
"""

from __future__ import annotations

import datetime as dt
import io

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from pipelines.lake.duckdb_delta import connect
from pipelines.lake.location import LakeLocation
from pipelines.lake.schemas import PARTITION_COLUMN
from pipelines.lake.tables import Covered, Lake, StaleWriterError, app_id

SCHEMA = pa.schema([("_partition", pa.int32()), ("_offset", pa.int64()), (PARTITION_COLUMN, pa.date32())])
DAY = dt.date(2025, 6, 1)
A = app_id("marketplace.jobs", "id1", 0)


def _rows(first: int, last: int, day: dt.date = DAY) -> pa.Table:
    n = last - first + 1
    return pa.table(
        {"_partition": pa.array([0] * n, pa.int32()), "_offset": pa.array(range(first, last + 1), pa.int64()),
         PARTITION_COLUMN: pa.array([day] * n, pa.date32())},
        schema=SCHEMA,
    )  # fmt: skip


@pytest.fixture
def location(s3_env, tmp_path) -> LakeLocation:
    return LakeLocation.from_env(s3_env, tmp_path)


def _direct(location: LakeLocation, name: str) -> DeltaTable:
    return DeltaTable(location.table_uri(name), storage_options=dict(location.storage_options))


def _offsets(table: pa.Table) -> list[int]:
    return sorted(table["_offset"].to_pylist())


def test_the_aws_variables_become_delta_rs_storage_options(s3_env, location):
    assert location.url == s3_env["TRADELAKE_LAKE_URL"] and not location.is_local
    assert dict(location.storage_options) == {
        "aws_access_key_id": s3_env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": s3_env["AWS_SECRET_ACCESS_KEY"],
        "aws_region": "us-east-1",
        "aws_endpoint_url": s3_env["AWS_ENDPOINT_URL"],
        "aws_allow_http": "true",
        "aws_conditional_put": "etag",
    }


def test_offsets_live_in_the_tables_log_on_s3_and_a_stale_writer_is_refused(location):
    lake = Lake(location)
    assert lake.table("t") is None and lake.read("t") is None
    lake.ensure("t", SCHEMA)
    lake.ensure("t", SCHEMA)  # idempotent: a restart ensures again
    assert _direct(location, "t").metadata().partition_columns == [PARTITION_COLUMN]
    lake.append("t", _rows(0, 9), [Covered(A, 0, 9)], {"tradelake.batch": "1"})
    assert _direct(location, "t").transaction_version(A) == 9
    assert lake.committed("t", [A, app_id("marketplace.jobs", "id1", 1)]) == {A: 9}

    stale = Lake(location)  # another process, or one that lost the partition
    with pytest.raises(StaleWriterError, match="already committed up to offset 9"):
        stale.append("t", _rows(5, 14), [Covered(A, 5, 14)])
    assert _offsets(_direct(location, "t").to_pyarrow_table()) == list(range(10))
    stale.append("t", _rows(10, 14, DAY + dt.timedelta(days=1)), [Covered(A, 10, 14)])

    assert _direct(location, "t").transaction_version(A) == 14
    assert lake.committed("t", [A]) == {A: 14}  # the first writer's open table catches up
    assert _offsets(lake.read("t")) == list(range(15))
    assert lake.read("t", ["_offset"]).column_names == ["_offset"]
    history = _direct(location, "t").history()
    assert any(h.get("tradelake.batch") == "1" for h in history), "commit metadata is in the log"


def test_a_writer_that_commits_between_the_check_and_its_commit_is_refused(location):
    first, second = Lake(location), Lake(location)
    first.ensure("t", SCHEMA)
    behind = second.table("t")
    behind.update_incremental = lambda: None  # its check sees the table as it was: the race is lost
    first.append("t", _rows(0, 9), [Covered(A, 0, 9)])
    with pytest.raises(StaleWriterError, match="another writer committed offsets of"):
        second.append("t", _rows(0, 9), [Covered(A, 0, 9)])
    table = _direct(location, "t")
    assert _offsets(table.to_pyarrow_table()) == list(range(10)) and table.transaction_version(A) == 9


def test_ensure_adds_the_columns_a_grown_contract_brings_on_s3(location):
    lake = Lake(location)
    lake.ensure("t", SCHEMA)
    lake.append("t", _rows(0, 1), [])
    lake.ensure("t", SCHEMA.append(pa.field("b", pa.string())))
    table = _direct(location, "t").to_pyarrow_table()
    assert "b" in table.column_names and table["b"].null_count == 2 and _offsets(table) == [0, 1]
    read = lake.read("t")  # files written before the column was added read it as null
    assert read.schema.field("b").type == pa.string() and read["b"].null_count == 2 and _offsets(read) == [0, 1]


def test_duckdb_delta_scan_reads_the_same_rows_through_the_s3_secret(location):
    lake = Lake(location)
    lake.ensure("t", SCHEMA)
    lake.append("t", _rows(0, 9), [Covered(A, 0, 9)])
    lake.append("t", _rows(10, 19, DAY + dt.timedelta(days=1)), [Covered(A, 10, 19)])
    con = connect(location)
    try:
        rows = con.sql(
            f"select _partition, _offset, {PARTITION_COLUMN} from delta_scan('{location.table_uri('t')}') order by 2"
        ).fetchall()
    finally:
        con.close()
    expected = lake.read("t").sort_by("_offset")
    assert rows == list(zip(*(expected[c].to_pylist() for c in SCHEMA.names), strict=True))
    assert len(rows) == 20


def test_a_data_object_the_log_does_not_reference_is_never_read(location, s3_env):
    lake = Lake(location)
    lake.ensure("t", SCHEMA)
    lake.append("t", _rows(0, 9), [Covered(A, 0, 9)])
    # What a crash between writing a data file and committing leaves: objects beside the
    # committed ones, in the table's own prefix and in its day partition.
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_env["AWS_ENDPOINT_URL"],
        region_name=s3_env["AWS_REGION"],
        aws_access_key_id=s3_env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3_env["AWS_SECRET_ACCESS_KEY"],
    )
    bucket, prefix = location.table_uri("t").removeprefix("s3://").split("/", 1)
    orphan = io.BytesIO()
    pq.write_table(_rows(100, 199), orphan)
    for key in (f"{prefix}/part-orphan.parquet", f"{prefix}/{PARTITION_COLUMN}={DAY}/part-orphan.parquet"):
        s3.put_object(Bucket=bucket, Key=key, Body=orphan.getvalue())
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]]
    assert sum(k.endswith("part-orphan.parquet") for k in listed) == 2

    assert _offsets(lake.read("t")) == list(range(10))
    assert _offsets(_direct(location, "t").to_pyarrow_table()) == list(range(10))
    con = connect(location)
    try:
        assert con.sql(f"select count(*), max(_offset) from delta_scan('{location.table_uri('t')}')").fetchall() == [
            (10, 9)
        ]
    finally:
        con.close()
