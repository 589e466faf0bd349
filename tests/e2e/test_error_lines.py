"""Failures of the machine and of the lake's files, through the real broker: one
``tradelake: error:`` line each, and exactly-once intact afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipelines import kafka
from pipelines.settings import Settings
from tests.cli_errors import assert_one_line_error
from tests.conftest import run_cli
from tests.e2e.lake_checks import assert_exactly_once, read_table
from tests.permissions import file_size_limit

pytestmark = pytest.mark.e2e


def _land(lake: Settings, events: int = 600) -> None:
    for args in (["simulate", "--events", str(events), "--seed", "3"], ["ingest", "--once"]):
        result = run_cli(*args, "-q", settings=lake)
        assert result.returncode == 0, result.stderr


def test_a_full_disk_during_ingest_is_one_line_and_the_next_run_lands_everything_once(lake: Settings):
    _land(lake, events=1500)
    landed = len(read_table(lake, "_batches", ["batch_id"]))
    result = run_cli("simulate", "--events", "1500", "--seed", "4", "-q", settings=lake)
    assert result.returncode == 0, result.stderr
    # A record larger than the file-size limit (random bytes: quarantined raw, incompressible):
    # the batch holding it cannot be written, as on a full disk.
    producer = kafka.producer(lake)
    producer.produce("marketplace.jobs", value=os.urandom(600_000), key=b"huge", partition=0)
    assert producer.flush(30) == 0
    full = run_cli("ingest", "--once", "--batch-size", "400", settings=lake, preexec_fn=file_size_limit(400_000))
    assert_one_line_error(full, "File too large")
    assert "free some space" in full.stderr
    assert len(read_table(lake, "_batches", ["batch_id"])) >= landed

    again = run_cli("ingest", "--once", settings=lake)
    assert again.returncode == 0, again.stderr
    assert_exactly_once(lake)


@pytest.mark.parametrize(
    "line",
    ["isolation.level=read_uncommitted", "enable.auto.commit=true", "enable.auto.offset.store=true", "group.id=other"],
)
def test_kafka_config_cannot_override_what_exactly_once_depends_on(lake: Settings, tmp_path: Path, line: str):
    props = tmp_path / "client.properties"
    props.write_text(f"bootstrap.servers={lake.bootstrap_servers}\n{line}\n")
    result = run_cli("ingest", "--once", "--kafka-config", str(props), settings=lake)
    key = line.split("=")[0]
    assert_one_line_error(result, f"the Kafka properties file sets {key}, which exactly-once landing depends on")


def test_kafka_config_may_repeat_what_tradelake_sets(lake: Settings, tmp_path: Path):
    props = tmp_path / "client.properties"
    props.write_text(f"bootstrap.servers={lake.bootstrap_servers}\nisolation.level=read_committed\n")
    result = run_cli("ingest", "--once", "--kafka-config", str(props), settings=lake)
    assert result.returncode == 0, result.stderr


def _corrupt_log(lake: Settings, table: str) -> None:
    log = sorted((Path(lake.lake.table_uri(table)) / "_delta_log").glob("*.json"))[-1]
    log.write_text('{"add": garbage\n')


def _truncate_data_file(lake: Settings, table: str) -> None:
    data = sorted(Path(lake.lake.table_uri(table)).rglob("*.parquet"))
    data = [p for p in data if "_delta_log" not in p.parts]
    with open(data[0], "r+b") as f:
        f.truncate(100)


@pytest.mark.parametrize(
    ("corrupt", "table", "commands"),
    [
        (_corrupt_log, "payments.ledger", [["status"], ["ingest", "--once"]]),
        (_corrupt_log, "_batches", [["status"], ["ingest", "--once"], ["build"]]),
        (_truncate_data_file, "_batches", [["status"], ["ingest", "--once"]]),
    ],
    ids=["topic table log", "_batches log", "_batches data file"],
)
def test_a_corrupt_lake_table_is_one_line_naming_it(lake: Settings, corrupt, table: str, commands: list[list[str]]):
    _land(lake)
    corrupt(lake, table)
    for command in commands:
        result = run_cli(*command, settings=lake)
        assert_one_line_error(result, f"the lake table {table} cannot be read")


def test_build_on_a_truncated_data_file_is_one_line_naming_the_model(lake: Settings):
    _land(lake)
    _truncate_data_file(lake, "payments.ledger")
    result = run_cli("build", settings=lake)
    assert_one_line_error(result, "stg_payments__ledger")
