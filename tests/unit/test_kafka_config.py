"""Which Kafka settings a user's --kafka-config can change, and which landing keeps."""

from __future__ import annotations

import pytest

from pipelines.errors import TradelakeError
from pipelines.kafka import FETCH_TUNING, _client_config, exactly_once_settings, refuse_overrides
from pipelines.settings import Settings


def test_user_properties_override_tuning_but_not_required_settings(tmp_path):
    settings = Settings(
        home=tmp_path,
        bootstrap_servers="broker:9092",
        kafka_properties={"fetch.min.bytes": "1", "enable.auto.commit": "true", "security.protocol": "SASL_SSL"},
    )
    conf = _client_config(settings, FETCH_TUNING, **{"enable.auto.commit": False})
    assert conf["fetch.min.bytes"] == "1"  # the user's tuning wins over tradelake's default
    assert conf["fetch.wait.max.ms"] == FETCH_TUNING["fetch.wait.max.ms"]  # defaults fill the rest
    assert conf["enable.auto.commit"] is False  # the ledger, not auto-commit, decides offsets
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["bootstrap.servers"] == "broker:9092"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("isolation.level", "read_uncommitted"),
        ("enable.auto.commit", "true"),
        ("enable.auto.offset.store", "true"),
        ("auto.offset.reset", "latest"),
        ("group.id", "someone-else"),
    ],
)
def test_properties_cannot_change_what_exactly_once_depends_on(tmp_path, key, value):
    settings = Settings(home=tmp_path, bootstrap_servers="broker:9092", kafka_properties={key: value})
    with pytest.raises(TradelakeError, match=f"^the Kafka properties file sets {key}, which exactly-once") as e:
        refuse_overrides(settings)
    assert value not in str(e.value)


def test_properties_may_repeat_what_exactly_once_sets(tmp_path):
    same = {"isolation.level": "read_committed", "enable.auto.commit": "False", "group.id": "tradelake-landing"}
    settings = Settings(home=tmp_path, kafka_properties=same)
    refuse_overrides(settings)
    assert exactly_once_settings(settings)["isolation.level"] == "read_committed"
