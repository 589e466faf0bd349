"""Which Kafka settings a user's --kafka-config can change, and which landing keeps."""

from __future__ import annotations

from pipelines.kafka import FETCH_TUNING, _client_config
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
