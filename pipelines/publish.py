"""``tradelake publish``: the ops marts' state changes back to Kafka as derived events, exactly once.

Three topics: ``notifications.customer`` (technician en route / running late / arrived, job
completed; keyed by customer id), ``finance.reconciliation_breaks`` (a gateway_ref entering,
changing or leaving a break status) and ``rankings.changes`` (a tradesperson entering or leaving
the top 3 of their trade × region). The changes are what the published warehouse's
``ops.*_changes`` models list: each entity's state now, where it differs from the last state
the lake's ``_published`` table recorded for it.

Exactly once, across two systems (the argument: docs/decisions.md, "Publishing derived events"):

1. **The Kafka transaction is the commit point.** One transactional producer per lake
   (``transactional.id`` named after the lake): ``init_transactions`` fences any earlier
   incarnation and settles its open transaction (aborted, or completed if it was committing).
2. **Recovery before anything new.** The lake records, per topic partition, the last offset
   it knows (a Delta application transaction of ``_published``). Whatever a read_committed
   consumer finds past it was committed by a publisher that died before recording it: those
   events are recorded now, from the records themselves (their event id, entity, change
   number and state travel in the value).
3. **Deterministic ids.** A change's event id is a UUID v5 of (topic, entity, change number,
   state), and a change is only sent when the lake has not recorded that change number for
   that entity: the same change computed again gets the same id and is not sent twice; a
   stale warehouse (built before the last publish) lists changes the lake already has, which
   are skipped.
4. **Send, then record.** Events are validated against their contracts (``expectations/derived``)
   before anything is sent, produced in one transaction, and the transaction committed; then
   one Delta commit records them with their offsets. A kill before the Kafka commit leaves an
   aborted transaction (nothing published, the next run sends the same ids); a kill after it
   leaves records step 2 finds.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from pipelines import kafka
from pipelines.build import ensure_published_table
from pipelines.contracts.outbound import OUTBOUND_TOPICS, load_outbound_contracts
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import PARTITION_COLUMN, PUBLISHED_SCHEMA, PUBLISHED_TABLE
from pipelines.lake.tables import Covered, Lake
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.settings import Settings
from pipelines.warehouse import Reader
from pipelines.watermarks import high_watermarks

log = logging.getLogger(__name__)

PRODUCER = "tradelake-publish/1"
PARTITIONS = 3
NAMESPACE = uuid.UUID("5b0c5d2e-8f0e-4c1e-9a57-0d3c1f5e7a11")  # tradelake's derived event ids
# The ops model listing each topic's pending changes, and the value field that is its key.
CHANGES: dict[str, tuple[str, str]] = {
    "notifications.customer": ("ops.customer_notification_changes", "customer_id"),
    "finance.reconciliation_breaks": ("ops.reconciliation_break_changes", "gateway_ref"),
    "rankings.changes": ("ops.ranking_changes", "tradesperson_id"),
}
# The value field naming each topic's entity (the unit of change numbers).
ENTITY: dict[str, str] = {
    "notifications.customer": "job_id",
    "finance.reconciliation_breaks": "gateway_ref",
    "rankings.changes": "tradesperson_id",
}
NOTIFICATIONS = {
    "en_route": "technician.en_route",
    "running_late": "technician.running_late",
    "arrived": "technician.arrived",
    "job_completed": "job.completed",
}
# Tests only: SIGKILL this process at a named point of the protocol (before_commit: events
# produced, Kafka transaction open; after_commit: committed to Kafka, not yet in the lake), so the
# crash test hits each window for sure instead of by timing.
CRASH_AT = "TRADELAKE_TEST_CRASH_AT"
# A fixed key for the contract router's hashing: no outbound contract declares personal data.
_ROUTER_KEY = b"tradelake-publish-contracts"


@dataclass
class PublishResult:
    published: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTBOUND_TOPICS, 0))
    recovered: int = 0  # events a publisher committed to Kafka but died before recording
    skipped: int = 0  # changes the lake already had (a warehouse built before the last publish)
    run_id: int = 0

    @property
    def total(self) -> int:
        return sum(self.published.values())

    def summary(self) -> str:
        counts = ", ".join(f"{t} {n}" for t, n in self.published.items())
        return (
            f"publish: {self.total} event(s) ({counts}); {self.recovered} recovered, {self.skipped} already published"
        )


def event_id(topic: str, entity_id: str, seq: int, state: str) -> str:
    """The derived event's id: the same change always gets the same one."""
    return str(uuid.uuid5(NAMESPACE, f"{topic}|{entity_id}|{seq}|{state}"))


def _rfc3339(value: Any) -> str | None:
    if value is None:
        return None
    moment = value.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def derived_event(topic: str, row: dict[str, Any], detected_at: datetime) -> tuple[str, dict[str, Any]]:
    """(Kafka key, value) of one change row of ``topic``'s ops model."""
    state, seq = str(row["state"]), int(row["seq"])
    envelope: dict[str, Any] = {
        "event_id": event_id(topic, str(row["entity_id"]), seq, state),
        "schema_version": 1,
        "producer": PRODUCER,
        "change_seq": seq,
    }
    if topic == "notifications.customer":
        body = {
            "event_type": NOTIFICATIONS[state],
            "event_time": _rfc3339(row["changed_at"]),
            "customer_id": row["customer_id"],
            "job_id": row["job_id"],
            "tradesperson_id": row["tradesperson_id"],
            "appointment_id": row["appointment_id"],
            "notification": state,
            "eta": _rfc3339(row["eta"]),
            "distance_km": row["distance_km"],
        }
    elif topic == "finance.reconciliation_breaks":
        previous = row["previous_state"]
        kind = "closed" if state == "matched" else "opened" if previous in (None, "matched") else "changed"
        body = {
            "event_type": f"break.{kind}",
            "event_time": _rfc3339(detected_at),
            "gateway_ref": row["gateway_ref"],
            "status": state,
            "previous_status": previous,
            "payment_id": row["payment_id"],
            "job_id": row["job_id"],
            "currency": row["currency"],
            "difference_cents": int(row["difference_cents"]),
        }
    else:
        body = {
            "event_type": "top3.entered" if state == "top3" else "top3.left",
            "event_time": _rfc3339(detected_at),
            "tradesperson_id": row["tradesperson_id"],
            "trade": row["trade"],
            "region": row["region"],
            "rank_in_trade_region": row["rank_in_trade_region"],
            "score": row["score"],
        }
    return str(row[CHANGES[topic][1]]), envelope | body


def _state(topic: str, value: dict[str, Any]) -> str:
    """The entity state an event announces (the inverse of ``derived_event``)."""
    if topic == "notifications.customer":
        return str(value["notification"])
    if topic == "finance.reconciliation_breaks":
        return str(value["status"])
    return "top3" if value["event_type"] == "top3.entered" else "not_top3"


def validate(topic: str, events: list[tuple[str, dict[str, Any]]], router: TopicRouter) -> None:
    """Refuse the whole run when any event breaks its contract: nothing is sent."""
    if not events:
        return
    n = len(events)
    raw = RawRecords.from_lists(
        [0] * n, list(range(n)), [k.encode() for k, _ in events], [json.dumps(v).encode() for _, v in events], [-1] * n
    )
    routed = router.route(raw, batch_id=0, ingested_at=datetime.now(UTC))
    if len(routed.quarantined):
        first = routed.quarantined.slice(0, 1).to_pylist()[0]
        value = events[first["_offset"]][1]
        raise TradelakeError(
            f"publish: {len(routed.quarantined)} {topic} event(s) break their contract, nothing sent; "
            f"first: {value['event_type']} {value['event_id']}: {first['reason']}"
        )


@contextmanager
def _publish_lock(settings: Settings) -> Iterator[None]:
    """One publisher per home at a time (a second one waits)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / "publish.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _app_id(topic: str, partition: int) -> str:
    return f"tradelake-publish:{topic}:{partition}"


def transactional_id(settings: Settings) -> str:
    """One per lake: a restarted publisher of the same lake fences the one before it."""
    return "tradelake-publish-" + hashlib.sha256(settings.lake.url.encode()).hexdigest()[:16]


def ensure_topics(settings: Settings) -> None:
    kafka.create_missing_topics(settings, dict.fromkeys(OUTBOUND_TOPICS, PARTITIONS))


def _row(topic: str, value: dict[str, Any], partition: int, offset: int, run_id: int, now: datetime) -> dict[str, Any]:
    return {
        "event_id": value["event_id"],
        "topic": topic,
        "entity_id": str(value[ENTITY[topic]]),
        "seq": int(value["change_seq"]),
        "state": _state(topic, value),
        "kafka_partition": partition,
        "kafka_offset": offset,
        "run_id": run_id,
        "published_at": now,
        PARTITION_COLUMN: now.date(),
    }


def _record(lake: Lake, rows: list[dict[str, Any]]) -> None:
    """One Delta commit of published events, carrying per topic partition the last offset covered."""
    if not rows:
        return
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    for r in rows:
        key = (r["topic"], r["kafka_partition"])
        low, high = spans.get(key, (r["kafka_offset"], r["kafka_offset"]))
        spans[key] = (min(low, r["kafka_offset"]), max(high, r["kafka_offset"]))
    covered = [Covered(_app_id(t, p), low, high) for (t, p), (low, high) in sorted(spans.items())]
    lake.append(PUBLISHED_TABLE, pa.Table.from_pylist(rows, schema=PUBLISHED_SCHEMA), covered)


def _recover(settings: Settings, lake: Lake, run_id: int) -> int:
    """Record the events a read_committed consumer finds past the offsets the lake knows."""
    positions = [(t, p) for t in OUTBOUND_TOPICS for p in range(PARTITIONS)]
    known = lake.committed(PUBLISHED_TABLE, [_app_id(t, p) for t, p in positions])
    ends = high_watermarks(settings, positions)
    starts = {}
    for t, p in positions:
        after = known.get(_app_id(t, p), -1) + 1
        # a recreated topic (an embedded broker restarted) starts again at 0
        starts[(t, p)] = after if after <= ends[(t, p)] else 0
    todo = [pos for pos in positions if starts[pos] < ends[pos]]
    if not todo:
        return 0
    recorded = _recorded_ids(lake)
    consumer = kafka.consumer(settings, **{"enable.partition.eof": True, "fetch.wait.max.ms": 10})
    rows: list[dict[str, Any]] = []
    now = datetime.now(UTC)
    try:
        consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in todo])
        pending, deadline = set(todo), time.monotonic() + 30
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            position = (msg.topic(), msg.partition())
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    pending.discard(position)
                    continue
                raise TradelakeError(f"publish: cannot read back {msg.topic()}: {msg.error().str()}")
            if msg.offset() + 1 >= ends[position]:
                pending.discard(position)
            value = json.loads(msg.value())
            if value["event_id"] not in recorded:
                recorded.add(value["event_id"])
                rows.append(_row(msg.topic(), value, msg.partition(), msg.offset(), run_id, now))
        if pending:
            raise TradelakeError(f"publish: reading back {sorted(pending)} timed out; nothing sent, run it again")
    finally:
        consumer.close()
    _record(lake, rows)
    if rows:
        log.warning("publish: recorded %d event(s) a previous publisher sent but did not record", len(rows))
    return len(rows)


def _recorded_ids(lake: Lake) -> set[str]:
    table = lake.read(PUBLISHED_TABLE, columns=["event_id"])
    return set() if table is None else set(table["event_id"].to_pylist())


def _recorded_seqs(lake: Lake) -> dict[tuple[str, str], int]:
    """The last change number the lake has recorded per (topic, entity)."""
    table = lake.read(PUBLISHED_TABLE, columns=["topic", "entity_id", "seq"])
    latest: dict[tuple[str, str], int] = {}
    for topic, entity, seq in zip(*(table[c].to_pylist() for c in ("topic", "entity_id", "seq")), strict=True):
        latest[(topic, entity)] = max(seq, latest.get((topic, entity), 0))
    return latest


def _next_run(lake: Lake) -> int:
    table = lake.read(PUBLISHED_TABLE, columns=["run_id"])
    return 1 + max(table["run_id"].to_pylist(), default=0)


def pending_changes(settings: Settings) -> dict[str, list[dict[str, Any]]]:
    """Each topic's change rows in the published warehouse (one snapshot for the three)."""
    with Reader.of(settings).snapshot() as con:
        try:
            return {
                topic: con.execute(f"select * from {model} order by entity_id").fetch_arrow_table().to_pylist()
                for topic, (model, _) in CHANGES.items()
            }
        except duckdb.CatalogException:
            raise TradelakeError("the published warehouse has no ops marts yet: run 'tradelake build' first") from None


def _transactional_producer(settings: Settings) -> Producer:
    producer = kafka.producer(settings, transactional_id=transactional_id(settings))
    try:
        producer.init_transactions(60)
    except KafkaException as e:
        raise TradelakeError(f"publish: cannot start a Kafka transaction: {e.args[0].str()}") from None
    return producer


def publish(settings: Settings) -> PublishResult:
    """Publish every pending change once (see the module docstring for why it is exactly once)."""
    with _publish_lock(settings):
        # read first (a missing warehouse is one line); rows the lake already has are skipped below,
        # against what it records after recovery
        pending = pending_changes(settings)
        ensure_topics(settings)
        ensure_published_table(settings)
        lake = Lake(settings.lake)
        routers = {t: TopicRouter(c, _ROUTER_KEY) for t, c in load_outbound_contracts().items()}
        producer = _transactional_producer(settings)  # fences and settles any earlier publisher
        result = PublishResult(run_id=_next_run(lake))
        result.recovered = _recover(settings, lake, result.run_id)
        seqs = _recorded_seqs(lake)
        detected_at = datetime.now(UTC)
        batch: list[tuple[str, str, dict[str, Any]]] = []
        for topic, rows in pending.items():
            events = []
            for row in rows:
                if int(row["seq"]) <= seqs.get((topic, str(row["entity_id"])), 0):
                    result.skipped += 1
                    continue
                events.append(derived_event(topic, row, detected_at))
            validate(topic, events, routers[topic])
            batch += [(topic, key, value) for key, value in events]
        if batch:
            rows = _send(producer, batch, result.run_id)
            _record(lake, rows)
            for topic, *_ in batch:
                result.published[topic] += 1
        log.info("%s", result.summary())
        return result


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_AT) == name:
        os.kill(os.getpid(), signal.SIGKILL)


def _send(producer: Producer, batch: list[tuple[str, str, dict[str, Any]]], run_id: int) -> list[dict[str, Any]]:
    """Produce ``batch`` in one Kafka transaction and commit it; the lake rows of what was sent."""
    rows: list[dict[str, Any]] = []
    failures: list[str] = []
    now = datetime.now(UTC)

    def delivered(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err.str()}")
            return
        value = json.loads(msg.value())
        rows.append(_row(msg.topic(), value, msg.partition(), msg.offset(), run_id, now))

    try:
        producer.begin_transaction()
        for topic, key, value in batch:
            while True:
                try:
                    producer.produce(topic, key=key.encode(), value=json.dumps(value).encode(), on_delivery=delivered)
                    break
                except BufferError:
                    producer.poll(0.05)
        producer.flush(60)
        if failures or len(rows) != len(batch):
            producer.abort_transaction(30)
            raise TradelakeError(f"publish: {len(batch) - len(rows)} event(s) not delivered, transaction aborted")
        _crash_point("before_commit")
        producer.commit_transaction(60)
        _crash_point("after_commit")
    except KafkaException as e:
        raise TradelakeError(f"publish: the Kafka transaction failed, nothing recorded: {e.args[0].str()}") from None
    return rows
