"""Kafka clients built from Settings, and the checks that turn client errors into one line."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pipelines.broker import registered_broker
from pipelines.catalog import TOPICS
from pipelines.errors import TradelakeError
from pipelines.settings import Settings


def bootstrap_servers(settings: Settings) -> str:
    """The configured cluster, else the embedded broker registered under the home."""
    if settings.bootstrap_servers:
        return settings.bootstrap_servers
    embedded = registered_broker(settings.home)
    if embedded:
        return embedded
    raise TradelakeError(
        "no Kafka broker: set KAFKA_BOOTSTRAP_SERVERS (or --bootstrap-servers), "
        "or start the embedded one with 'tradelake broker'"
    )


# librdkafka's own log lines (connection refused, retries…) go here instead of raw stderr, so
# that an expected failure reads as one line; ``tradelake -v`` shows them.
LIBRDKAFKA_LOG = logging.getLogger("tradelake.librdkafka")


def _client_config(
    settings: Settings, tuning: Mapping[str, object] | None = None, **required: object
) -> dict[str, object]:
    """``tuning`` are tradelake's defaults, which the user's --kafka-config overrides;
    ``required`` are settings landing's guarantees depend on, which it does not."""
    conf: dict[str, object] = {**(tuning or {}), **settings.kafka_client_config(bootstrap_servers(settings))}
    conf["logger"] = LIBRDKAFKA_LOG
    conf.update(required)
    return conf


def invalid_configuration(settings: Settings, e: Exception) -> TradelakeError:
    """librdkafka's complaint about a setting, without the values of the properties file:
    it quotes an invalid value ('Invalid value "…" for configuration property'), which may be a
    credential put under the wrong key."""
    message = e.args[0].str() if isinstance(e, KafkaException) else str(e)
    for value in sorted({v for v in settings.kafka_properties.values() if v}, key=len, reverse=True):
        message = message.replace(f'"{value}"', '"…"')  # as librdkafka quotes it
        if len(value) >= 8:  # a longer value anywhere (a short one would match ordinary words)
            message = message.replace(value, "…")
    return TradelakeError(f"invalid Kafka configuration: {message}")


def admin(settings: Settings) -> AdminClient:
    try:
        return AdminClient(_client_config(settings))
    except (KafkaException, TypeError, ValueError) as e:
        raise invalid_configuration(settings, e) from None


def check_reachable(client: AdminClient, settings: Settings, timeout: float = 8.0) -> set[str]:
    """Fail with one line when the cluster does not answer; return its topic names."""
    try:
        return set(client.list_topics(timeout=timeout).topics)
    except KafkaException as e:
        raise TradelakeError(f"cannot reach Kafka at {bootstrap_servers(settings)}: {e.args[0].str()}") from None


def ensure_topics(settings: Settings) -> None:
    """Create the catalog topics that do not exist yet (producers' side, and the demo)."""
    create_missing_topics(settings, {t.name: t.partitions for t in TOPICS})


def create_missing_topics(settings: Settings, partitions: dict[str, int]) -> None:
    """Create each topic that does not exist yet with its partition count (replication 1);
    one another process created meanwhile is fine."""
    client = admin(settings)
    existing = check_reachable(client, settings)
    missing = [NewTopic(name, n, 1) for name, n in partitions.items() if name not in existing]
    for name, future in client.create_topics(missing).items() if missing else ():
        try:
            future.result()
        except KafkaException as e:
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise TradelakeError(f"cannot create topic {name}: {e.args[0].str()}") from None


def producer(settings: Settings, transactional_id: str | None = None) -> Producer:
    """A producer; with ``transactional_id``, a transactional one (idempotent, fenced by that id)."""
    required = {} if transactional_id is None else {"transactional.id": transactional_id, "enable.idempotence": True}
    try:
        return Producer(_client_config(settings, {"linger.ms": 20, "batch.num.messages": 10000}, **required))
    except (KafkaException, TypeError, ValueError) as e:
        raise invalid_configuration(settings, e) from None


# Fetch in large responses: with librdkafka's defaults (fetch.min.bytes=1) a backlog is served
# as many small fetches, and the embedded broker spent ~5 µs of CPU per record answering them;
# waiting for 1 MiB (or 100 ms) cut that by 3-4x and doubled the consume-only rate (see README).
# When the prefetch queue is full, librdkafka postpones a partition's next fetch by
# fetch.queue.backoff.ms (default 1000): a consumer that works between consume() calls, as
# landing does, drained the queue and then waited up to a second for data. At 10 ms landing
# went from ~20 to ~14 s on a 2M backlog; a plain consume loop never fills the queue and is
# unchanged (docs/benchmarks.md, 2026-12-02). A 4 MiB prefetch queue (librdkafka's default
# is 64 MiB) still keeps landing fed: ~30 MiB lower peak than 16 MiB, CPU and wall within noise
# (docs/benchmarks.md, 2026-12-03).
FETCH_TUNING = {
    "fetch.min.bytes": 1 << 20,
    "fetch.wait.max.ms": 100,
    "queued.max.messages.kbytes": 4096,
    "fetch.queue.backoff.ms": 10,
}


def exactly_once_settings(settings: Settings) -> dict[str, object]:
    """The consumer settings landing's exactly-once rests on: only committed records of
    transactions are read, offsets are the lake's (never auto-committed or auto-stored), and
    the group is ``TRADELAKE_CONSUMER_GROUP``."""
    return {
        "group.id": settings.consumer_group,
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
    }


def refuse_overrides(settings: Settings) -> None:
    """A --kafka-config that sets one of ``exactly_once_settings`` otherwise is refused, not ignored.

    Only the key is named: the file's values may be credentials.
    """
    for key, value in exactly_once_settings(settings).items():
        given = settings.kafka_properties.get(key)
        if given is not None and given.strip().lower() != str(value).lower():
            hint = "set the group with TRADELAKE_CONSUMER_GROUP" if key == "group.id" else f"tradelake sets {value}"
            raise TradelakeError(
                f"the Kafka properties file sets {key}, which exactly-once landing depends on ({hint}): "
                "remove it from the file"
            )


# A landing process in a consumer group: partitions move between processes a few at a time
# (cooperative), and a process that stops heartbeating loses them after 6 s (Kafka's minimum
# session timeout; the default 45 s would leave its partitions unlanded that long). Tansu also
# answers a first join only after half the session timeout: ~3 s instead of ~23 s.
GROUP_TUNING = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
GROUP_REQUIRED = {"partition.assignment.strategy": "cooperative-sticky"}


def consumer(settings: Settings, group: bool = False, **overrides: object) -> Consumer:
    """A consumer for landing: no auto-commit (the lake's tables decide); ``group``: it subscribes
    as a member of the consumer group (else it is assigned its partitions)."""
    refuse_overrides(settings)
    tuning = {**FETCH_TUNING, **GROUP_TUNING} if group else FETCH_TUNING
    required = {**exactly_once_settings(settings), **(GROUP_REQUIRED if group else {}), **overrides}
    conf = _client_config(settings, tuning, **required)
    try:
        return Consumer(conf)
    except (KafkaException, TypeError, ValueError) as e:
        raise invalid_configuration(settings, e) from None
