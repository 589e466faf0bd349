"""Ledger recovery on a temp dir: what a crash can leave behind, and what survives."""

from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.landing.files import write_parquet_durably
from pipelines.landing.ledger import Ledger, batch_file_name


def _manifest(batch: int, first: int, last: int) -> list[dict]:
    n = last - first + 1
    return [
        {
            "batch_id": batch,
            "topic": "fleet.gps",
            "partition": 0,
            "first_offset": first,
            "last_offset": last,
            "records": n,
            "landed": n,
            "quarantined": 0,
            "tombstones": 0,
            "ingested_at": datetime.now(UTC),
        }
    ]


def test_recover_removes_uncommitted_and_temp_files_and_resumes_after_last_manifest(tmp_path):
    ledger = Ledger(tmp_path)
    data = pa.table({"x": [1]})
    write_parquet_durably(data, tmp_path / "landing" / "fleet.gps" / batch_file_name(1))
    ledger.commit(1, _manifest(1, 0, 9))
    write_parquet_durably(data, tmp_path / "landing" / "fleet.gps" / batch_file_name(2))  # crash before manifest
    (tmp_path / "quarantine" / "fleet.gps").mkdir(parents=True)
    (tmp_path / "quarantine" / "fleet.gps" / (batch_file_name(2) + ".tmp")).write_bytes(b"half")
    (tmp_path / "_ledger" / (batch_file_name(2) + ".tmp")).write_bytes(b"half a manifest")

    report = ledger.recover()

    assert sorted(p.name for p in report.removed_files) == sorted(
        [batch_file_name(2), batch_file_name(2) + ".tmp", batch_file_name(2) + ".tmp"]
    )
    assert (tmp_path / "landing" / "fleet.gps" / batch_file_name(1)).exists()
    assert ledger.next_offsets() == {("fleet.gps", 0): 10}
    assert ledger.next_batch_id() == 2


def test_schema_batch_survives_recovery(tmp_path):
    ledger = Ledger(tmp_path)
    ledger.write_schema_batch({"landing": {"fleet.gps": pa.schema([("x", pa.int64())])}})
    assert ledger.recover().removed_files == []
    assert ledger.next_batch_id() == 1


def test_schema_batch_is_rewritten_only_when_a_schema_changes(tmp_path):
    ledger = Ledger(tmp_path)
    path = tmp_path / "landing" / "fleet.gps" / batch_file_name(0)
    ledger.write_schema_batch({"landing": {"fleet.gps": pa.schema([("x", pa.int64())])}})
    first = path.stat().st_ino
    ledger.write_schema_batch({"landing": {"fleet.gps": pa.schema([("x", pa.int64())])}})
    assert path.stat().st_ino == first  # unchanged: not rewritten
    evolved = pa.schema([("x", pa.int64()), ("y", pa.string())])
    ledger.write_schema_batch({"landing": {"fleet.gps": evolved}})
    assert pq.read_schema(path).equals(evolved)
