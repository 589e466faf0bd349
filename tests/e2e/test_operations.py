"""Live operations end to end (#15): simulate → land → build → publish through the embedded broker.

The expected values come from the simulation itself (its records and its report of what it
planted), not from the warehouse: every job once in ops.job_status, exactly the planted late
trucks running late, the derived topics holding valid events that say what the marts imply,
once each — also after a SIGKILL at each step of publishing. The topics are read back with an
independent read_committed consumer.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.build import build
from pipelines.contracts.outbound import OUTBOUND_TOPICS, load_outbound_contracts
from pipelines.lake.schemas import PUBLISHED_TABLE
from pipelines.landing.ingest import Lander
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.produce import simulate
from pipelines.publish import CRASH_AT, PARTITIONS, event_id
from pipelines.settings import Settings
from pipelines.simulator import Simulation, SimulationConfig
from pipelines.simulator.report import SimulationReport
from tests.conftest import TEST_PII_KEY, cli_env, run_cli
from tests.e2e.lake_checks import read_table

pytestmark = pytest.mark.e2e

CONFIG = SimulationConfig(events=6000, seed=15, malformed_rate=0.0)
NOTIFIED = {"completed", "invoiced", "paid", "paid_out"}


def sql(settings: Settings, query: str) -> list[tuple]:
    with duckdb.connect(str(settings.home / "warehouse.duckdb"), read_only=True) as con:
        return con.execute(query).fetchall()


def read_topics(settings: Settings) -> list[tuple[str, bytes, dict]]:
    """Every record of the derived topics, as a read_committed consumer gets them."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.bootstrap_servers,
            "group.id": "test-operations-reader",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(t, p, 0) for t in OUTBOUND_TOPICS for p in range(PARTITIONS)])
    records, ends = [], set()
    try:
        while len(ends) < len(OUTBOUND_TOPICS) * PARTITIONS:
            msg = consumer.poll(10)
            assert msg is not None, "the derived topics could not be read to their end"
            if msg.error() is not None:
                assert msg.error().code() == KafkaError._PARTITION_EOF, msg.error().str()
                ends.add((msg.topic(), msg.partition()))
                continue
            records.append((msg.topic(), msg.key(), json.loads(msg.value())))
    finally:
        consumer.close()
    return records


def implied_events(settings: Settings) -> set[str]:
    """The event ids the marts imply when nothing was published before: the first change of
    every entity, in its current state (computed from the marts' own columns, not the change
    models)."""
    notifications = sql(
        settings,
        """
        select s.job_id,
            case when s.state in ('completed', 'invoiced', 'paid', 'paid_out') then 'job_completed'
                 when s.state = 'on_site' then 'arrived'
                 when s.state = 'en_route' and t.running_late then 'running_late'
                 when s.state = 'en_route' then 'en_route' end
        from ops.job_status s left join ops.truck_positions t on t.job_id = s.job_id
        where s.en_route_at is not null
        """,
    )
    breaks = sql(settings, "select gateway_ref, status from finance.payment_reconciliation where status <> 'matched'")
    top3 = sql(
        settings, "select tradesperson_id, 'top3' from rankings.tradesperson_rankings where rank_in_trade_region <= 3"
    )
    return {
        event_id(topic, entity, 1, state)
        for topic, rows in (
            ("notifications.customer", notifications),
            ("finance.reconciliation_breaks", breaks),
            ("rankings.changes", top3),
        )
        for entity, state in rows
        if state is not None
    }


def landed_and_built(root: Path, broker: EmbeddedBroker) -> tuple[Settings, SimulationReport]:
    settings = Settings.load(
        env={"TRADELAKE_PII_KEY": TEST_PII_KEY}, home=str(root / "lake"), bootstrap_servers=broker.bootstrap_servers
    )
    kafka.ensure_topics(settings)
    report = simulate(settings, CONFIG)
    Lander(settings, batch_size=10_000).run(follow=False)
    build(settings)
    return settings, report


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory):
    """One simulated marketplace landed, built and published once with the CLI."""
    root = tmp_path_factory.mktemp("operations")
    with EmbeddedBroker(root / "broker") as broker:
        settings, report = landed_and_built(root, broker)
        result = run_cli("publish", settings=settings)
        assert result.returncode == 0, result.stderr
        yield settings, report, result.stdout


def test_every_job_appears_once_in_job_status(published):
    settings, _, _ = published
    posted = Counter()
    for record in Simulation(CONFIG).records():
        value = json.loads(record.value) if record.value else {}
        if record.topic == "marketplace.jobs" and value.get("event_type") == "job.posted":
            posted[value["job_id"]] += 1  # redeliveries repeat the job: counted once below
    rows = sql(settings, "select job_id from ops.job_status")
    assert sorted(job for (job,) in rows) == sorted(posted)


def test_the_planted_late_trucks_and_only_they_are_running_late(published):
    settings, report, _ = published
    rows = dict(sql(settings, "select appointment_id, running_late from ops.truck_positions where running_late"))
    assert set(rows) == set(report.running_late)
    en_route = sql(
        settings,
        "select appointment_id, running_late, job_state from ops.truck_positions where appointment_id is not null",
    )
    assert {a for a, _, _ in en_route} == set(report.en_route)
    assert all(state == "en_route" for _, _, state in en_route)


def test_the_derived_topics_hold_valid_events_once_each_as_the_marts_imply(published):
    settings, report, stdout = published
    records = read_topics(settings)
    contracts = load_outbound_contracts()
    for topic in OUTBOUND_TOPICS:
        values = [(key, v) for t, key, v in records if t == topic]
        assert values, topic
        raw = RawRecords.from_lists(
            [0] * len(values),
            list(range(len(values))),
            [k for k, _ in values],
            [json.dumps(v).encode() for _, v in values],
            [-1] * len(values),
        )
        routed = TopicRouter(contracts[topic], b"k" * 16).route(raw, batch_id=0, ingested_at=datetime.now(UTC))
        assert len(routed.quarantined) == 0, routed.quarantined.column("reason").to_pylist()[:3]
    ids = Counter(v["event_id"] for _, _, v in records)
    assert max(ids.values()) == 1
    assert set(ids) == implied_events(settings)
    notifications = {v["job_id"]: (key, v) for t, key, v in records if t == "notifications.customer"}
    late = {v["appointment_id"] for _, v in notifications.values() if v["notification"] == "running_late"}
    assert late == set(report.running_late)
    assert all(key.decode() == v["customer_id"] for key, v in notifications.values()), "keyed by customer id"
    breaks = {v["gateway_ref"]: v["status"] for t, _, v in records if t == "finance.reconciliation_breaks"}
    assert breaks == {ref: status for status, refs in report.reconciliation_breaks.items() for ref in refs}
    assert f"publish: {len(records)} event(s)" in stdout


def test_publishing_again_publishes_nothing_even_after_a_new_build(published):
    settings, _, _ = published
    before = read_topics(settings)
    again = run_cli("publish", settings=settings)
    assert again.returncode == 0, again.stderr
    assert "publish: 0 event(s)" in again.stdout
    build(settings)  # the change models now compare with what was published
    assert sql(settings, "select count(*) from ops.customer_notification_changes") == [(0,)]
    again = run_cli("publish", settings=settings)
    assert "publish: 0 event(s)" in again.stdout and "0 already published" in again.stdout
    assert len(read_topics(settings)) == len(before)


@pytest.mark.parametrize("crash_at", ["before_commit", "after_commit", "timed"])
def test_sigkill_during_publishing_then_restart_sends_each_event_once(tmp_path: Path, broker, crash_at: str):
    """A publisher killed with the Kafka transaction open, or committed but not yet recorded in the
    lake, or at an arbitrary moment: the next run sends the rest, nothing twice, nothing missing."""
    settings, _ = landed_and_built(tmp_path, broker)
    env = cli_env(settings)
    if crash_at == "timed":  # killed again and again at moments spread over a publish (~1.5 s)
        for delay in (0.5, 0.7, 0.9, 1.0, 1.1, 1.2, 1.3, 1.4, 1.6):
            process = subprocess.Popen([sys.executable, "-m", "pipelines.cli", "publish"], env=env)
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
    else:
        killed = run_cli("publish", settings=settings, env={CRASH_AT: crash_at})
        assert killed.returncode == -signal.SIGKILL
    restarted = run_cli("publish", settings=settings)
    assert restarted.returncode == 0, restarted.stderr
    print(crash_at, restarted.stdout)  # -rA shows what the restart found (recovered or sent)
    recovered = int(re.search(r"(\d+) recovered", restarted.stdout).group(1))
    if crash_at == "after_commit":  # all of it was on Kafka: restored to the lake, nothing sent
        assert recovered > 0 and "publish: 0 event(s)" in restarted.stdout, restarted.stdout
    records = read_topics(settings)
    ids = Counter(v["event_id"] for _, _, v in records)
    # The embedded broker delivers aborted transactional records to read_committed consumers
    # (docs/decisions.md): an aborted attempt's events are then on the topic, and the lake
    # records them as published (what every consumer saw) rather than sending them twice.
    assert [i for i, n in ids.items() if n > 1] == []
    assert set(ids) == implied_events(settings)
    recorded = read_table(settings, PUBLISHED_TABLE)["event_id"].to_pylist()
    assert sorted(recorded) == sorted(ids), "the lake records exactly what the topics hold"
