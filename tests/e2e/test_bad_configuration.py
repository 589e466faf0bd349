"""Misconfiguration: one clear line on stderr, non-zero exit, no stack trace."""

from __future__ import annotations

from pathlib import Path

from pipelines.broker import free_port
from tests.cli_errors import assert_one_line_error
from tests.conftest import run_cli


def test_unreachable_broker(tmp_path: Path):
    result = run_cli(
        "ingest", "--once", env={"TRADELAKE_HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    )
    assert_one_line_error(result, "cannot reach Kafka")


def test_missing_properties_file(tmp_path: Path):
    result = run_cli(
        "status", "--kafka-config", str(tmp_path / "absent.properties"), env={"TRADELAKE_HOME": str(tmp_path)}
    )
    assert_one_line_error(result, "cannot read Kafka properties file")


def test_malformed_properties_file(tmp_path: Path):
    props = tmp_path / "client.properties"
    props.write_text("# from Confluent Cloud\nbootstrap.servers=127.0.0.1:1\nthis line has no separator\n")
    result = run_cli("ingest", "--once", "--kafka-config", str(props), env={"TRADELAKE_HOME": str(tmp_path)})
    assert_one_line_error(result, "client.properties:3")


def test_unknown_librdkafka_property(tmp_path: Path):
    props = tmp_path / "client.properties"
    props.write_text(
        "bootstrap.servers=127.0.0.1:1\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\nno.such.prop=1\n"
    )
    result = run_cli("ingest", "--once", "--kafka-config", str(props), env={"TRADELAKE_HOME": str(tmp_path)})
    assert_one_line_error(result, "no.such.prop")


def test_no_broker_configured(tmp_path: Path):
    result = run_cli("simulate", "--events", "10", env={"TRADELAKE_HOME": str(tmp_path)})
    assert_one_line_error(result, "no Kafka broker")
