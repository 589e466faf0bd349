from pathlib import Path

import pytest

from pipelines.errors import TradelakeError
from pipelines.settings import Settings, env_number, read_properties


def test_confluent_cloud_properties_file(tmp_path: Path):
    f = tmp_path / "client.properties"
    f.write_text(
        "# Required connection configs for Kafka producer, consumer, and admin\n"
        "bootstrap.servers=pkc-123.us-east-1.aws.confluent.cloud:9092\n"
        "security.protocol=SASL_SSL\nsasl.mechanisms=PLAIN\n"
        "sasl.username=KEY\nsasl.password=se=cret\n\n! also a comment\nsession.timeout.ms = 45000\n"
    )
    props = read_properties(f)
    assert props["sasl.password"] == "se=cret"  # only the first separator splits
    assert props["session.timeout.ms"] == "45000"
    settings = Settings.load(env={"TRADELAKE_HOME": str(tmp_path)}, kafka_config=str(f))
    assert settings.bootstrap_servers == "pkc-123.us-east-1.aws.confluent.cloud:9092"
    assert settings.kafka_client_config("x:1")["security.protocol"] == "SASL_SSL"


def test_flags_override_environment(tmp_path: Path):
    env = {"TRADELAKE_HOME": str(tmp_path / "env"), "KAFKA_BOOTSTRAP_SERVERS": "env:9092"}
    s = Settings.load(env=env, home=str(tmp_path / "flag"), bootstrap_servers="flag:9092")
    assert (s.home.name, s.bootstrap_servers) == ("flag", "flag:9092")
    assert Settings.load(env={}).home == Path(".tradelake").resolve()


def test_bad_properties_line_names_file_and_line(tmp_path: Path):
    f = tmp_path / "bad.properties"
    f.write_text("bootstrap.servers=x:1\nnonsense\n")
    with pytest.raises(TradelakeError, match=r"bad.properties:2"):
        read_properties(f)


def test_generated_personal_data_key_is_stable_and_private(tmp_path: Path):
    s = Settings.load(env={"TRADELAKE_HOME": str(tmp_path)})
    key = s.personal_data_key()
    assert key == s.personal_data_key() and len(key) == 64
    assert (tmp_path / "pii.key").stat().st_mode & 0o777 == 0o600
    assert Settings.load(env={"TRADELAKE_PII_KEY": "k" * 16}).personal_data_key() == b"k" * 16


def test_bad_properties_line_never_quotes_the_line(tmp_path: Path):
    f = tmp_path / "bad.properties"
    f.write_text("sasl.password hunter2\n")
    with pytest.raises(TradelakeError, match=r"bad.properties:1: expected 'key=value'") as e:
        read_properties(f)
    assert "hunter2" not in str(e.value)


def test_properties_file_that_is_not_utf8_names_the_line(tmp_path: Path):
    f = tmp_path / "latin1.properties"
    f.write_bytes(b"bootstrap.servers=x:1\n\nsasl.password=p\xe4ss\n")
    with pytest.raises(TradelakeError, match=r"latin1.properties:3: the Kafka properties file is not UTF-8") as e:
        read_properties(f)
    assert "p\ufffdss" not in str(e.value) and "ss" not in str(e.value).split(":")[-1]


@pytest.mark.parametrize("value", ["abc", "0", "1.5", " -2 "])
def test_numeric_environment_variable_is_checked(value: str):
    with pytest.raises(TradelakeError, match=r"^X=.*: expected a whole number, at least 1 \(default 30\)$"):
        env_number({"X": value}, "X", 30, minimum=1)
    assert env_number({}, "X", 30, minimum=1) == env_number({"X": ""}, "X", 30, minimum=1) == 30
    assert env_number({"X": " 45 "}, "X", 30, minimum=1) == 45


def test_empty_consumer_group_and_file_home_are_refused(tmp_path: Path):
    with pytest.raises(TradelakeError, match="TRADELAKE_CONSUMER_GROUP is empty"):
        Settings.load(env={"TRADELAKE_HOME": str(tmp_path), "TRADELAKE_CONSUMER_GROUP": ""})
    (tmp_path / "file").write_text("")
    with pytest.raises(TradelakeError, match="is not a folder"):
        Settings.load(env={"TRADELAKE_HOME": str(tmp_path / "file")})
