"""Bad environments and configuration files: one ``tradelake: error:`` line each, no traceback,
no secret echoed (SPEC §5). None of these needs a broker: each fails before Kafka is reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.defs.automation import sensors
from pipelines.errors import TradelakeError
from tests.cli_errors import assert_one_line_error
from tests.conftest import run_cli
from tests.permissions import unprivileged

SECRET = "s3cr3t-Pa55word"


@pytest.mark.parametrize("command", [["status"], ["ingest", "--once"], ["build"], ["export", "finance.x"], ["publish"]])
def test_home_that_is_a_file(tmp_path: Path, command: list[str]):
    home = tmp_path / "home"
    home.write_text("not a folder")
    result = run_cli(*command, env={"TRADELAKE_HOME": str(home), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert_one_line_error(result, f"TRADELAKE_HOME {home} is not a folder")


def test_publish_before_any_build_is_one_line(tmp_path: Path):
    result = run_cli("publish", env={"TRADELAKE_HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    assert_one_line_error(result, "no warehouse at")


@pytest.mark.parametrize(
    ("mode", "command", "expected"),
    [
        (0o000, ["status"], "cannot read TRADELAKE_HOME"),
        (0o000, ["ingest", "--once"], "cannot write to TRADELAKE_HOME"),
        (0o555, ["ingest", "--once"], "cannot write to TRADELAKE_HOME"),
        (0o555, ["build"], "cannot write to TRADELAKE_HOME"),
        (0o555, ["contracts", "docs"], "cannot write to TRADELAKE_HOME"),
    ],
)
def test_home_without_permission(tmp_path: Path, mode: int, command: list[str], expected: str):
    preexec = unprivileged(tmp_path)
    home = tmp_path / "home"
    home.mkdir(mode=mode)
    try:
        result = run_cli(
            *command,
            env={"TRADELAKE_HOME": str(home), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
            preexec_fn=preexec,
        )
    finally:
        home.chmod(0o700)
    assert_one_line_error(result, f"{expected} {home}: Permission denied")


def test_home_inside_an_unreadable_folder(tmp_path: Path):
    preexec = unprivileged(tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o000)
    try:
        result = run_cli("status", env={"TRADELAKE_HOME": str(locked / "home")}, preexec_fn=preexec)
    finally:
        locked.chmod(0o700)
    assert_one_line_error(result, "Permission denied")


def _properties(tmp_path: Path, content: bytes) -> Path:
    path = tmp_path / "client.properties"
    path.write_bytes(content)
    return path


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (
            f"bootstrap.servers=127.0.0.1:1\nsasl.password {SECRET}\n".encode(),
            "client.properties:2: expected 'key=value'",
        ),
        (
            b"bootstrap.servers=127.0.0.1:1\nsasl.password=\xff" + SECRET.encode() + b"\n",
            "client.properties:2: the Kafka",
        ),
        (f"bootstrap.servers=127.0.0.1:1\n\n# comment\nsasl.password\t{SECRET}".encode(), "client.properties:4:"),
    ],
    ids=["no separator", "not UTF-8", "tab separated"],
)
def test_bad_properties_file_names_the_line_never_its_value(tmp_path: Path, content: bytes, expected: str):
    props = _properties(tmp_path, content)
    for command in (["ingest", "--once"], ["status"], ["simulate", "--events", "1"]):
        result = run_cli(*command, "--kafka-config", str(props), env={"TRADELAKE_HOME": str(tmp_path / "home")})
        assert_one_line_error(result, expected, secret=SECRET)


def test_invalid_kafka_setting_never_echoes_its_value(tmp_path: Path):
    props = _properties(
        tmp_path,
        f"bootstrap.servers=127.0.0.1:1\nsecurity.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n"
        f"ssl.endpoint.identification.algorithm={SECRET}\n".encode(),
    )
    result = run_cli("simulate", "--kafka-config", str(props), env={"TRADELAKE_HOME": str(tmp_path / "home")})
    assert_one_line_error(result, 'invalid Kafka configuration: Invalid value "…"', secret=SECRET)


@pytest.mark.parametrize("group", ["", "   "])
def test_empty_consumer_group(tmp_path: Path, group: str):
    result = run_cli(
        "ingest",
        "--once",
        env={
            "TRADELAKE_HOME": str(tmp_path),
            "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1",
            "TRADELAKE_CONSUMER_GROUP": group,
        },
    )
    assert_one_line_error(result, "TRADELAKE_CONSUMER_GROUP is empty")
    assert result.returncode == 2  # not librdkafka's assertion (134)


def test_status_of_a_home_without_a_lake(tmp_path: Path):
    result = run_cli("status", env={"TRADELAKE_HOME": str(tmp_path)})
    assert_one_line_error(result, f"no lake at {tmp_path / 'lake'}; run 'tradelake ingest' first")


@pytest.mark.parametrize("value", ["abc", "0", "-3", "1.5"])
def test_sensor_interval_must_be_a_whole_number_of_seconds(monkeypatch: pytest.MonkeyPatch, value: str):
    monkeypatch.setenv(sensors.INTERVAL_VARIABLE, value)
    with pytest.raises(TradelakeError, match=rf"^TRADELAKE_SENSOR_INTERVAL='{value}': expected a whole number, at"):
        sensors.defs()
    monkeypatch.setenv(sensors.INTERVAL_VARIABLE, "45")
    (sensor,) = sensors.defs().sensors
    assert sensor.minimum_interval_seconds == 45


def test_ui_host_that_does_not_resolve(tmp_path: Path):
    result = run_cli("ui", "--host", "no such host", "--port", "3999", env={"TRADELAKE_HOME": str(tmp_path)})
    assert_one_line_error(result, "--host 'no such host': ")


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("TRADELAKE_SENSOR_INTERVAL", "abc", "TRADELAKE_SENSOR_INTERVAL='abc': expected a whole number"),
        ("TRADELAKE_MART_FRESHNESS_MINUTES", "15,5", "TRADELAKE_MART_FRESHNESS_MINUTES='15,5': expected minutes"),
        ("TRADELAKE_MAINTENANCE_CRON", "hourly", "TRADELAKE_MAINTENANCE_CRON='hourly': not a cron expression"),
    ],
)
@pytest.mark.parametrize("command", [["ui", "--port", "3998"], ["up", "--ui-port", "3997", "--metrics-port", "9197"]])
def test_ui_and_up_check_the_code_location_variables_before_dagster_starts(
    tmp_path: Path, command: list[str], variable: str, value: str, expected: str
):
    """Dagster reads them when it loads the code location: a bad one would break the location in
    the UI (ComponentTreeException) instead of failing here."""
    result = run_cli(*command, env={"TRADELAKE_HOME": str(tmp_path), "TRADELAKE_PII_KEY": SECRET * 2, variable: value})
    assert_one_line_error(result, expected)
    assert not (tmp_path / "dagster").exists() and not (tmp_path / "broker.json").exists()
