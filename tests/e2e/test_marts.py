"""Simulate → embedded broker → ingest → dbt build, then check the marts against values this
test computes itself from the records the simulator regenerates for the same seed.

The expected values never come from the warehouse: the test replays ``Simulation(config)``,
keeps the records the data contracts accept (the landing router decides validity, exactly as
landing did), parses their JSON in Python, removes redeliveries by event_id and applies the
SPEC §4 definitions. One simulation, ingest and build is shared by the module.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from deltalake import DeltaTable, write_deltalake

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.build import build
from pipelines.contracts import load_contracts
from pipelines.errors import TradelakeError
from pipelines.lake.location import LakeLocation
from pipelines.landing.ingest import Lander
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.produce import simulate
from pipelines.settings import Settings
from pipelines.simulator import Simulation, SimulationConfig
from pipelines.simulator.report import SimulationReport
from pipelines.watermarks import high_watermarks
from tests.conftest import TEST_PII_KEY

pytestmark = pytest.mark.e2e

CONFIG = SimulationConfig(events=25_000, seed=2026)
C = 10  # the Bayesian prior weight of SPEC §4
GRACE = timedelta(minutes=15)


@dataclass
class Lake:
    settings: Settings
    report: SimulationReport
    events: dict[str, list[dict]]  # topic -> valid events, one per event_id, production order
    rejected: Counter  # topic -> records the contracts reject

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.settings.home / "warehouse.duckdb"), read_only=True) as con:
            return con.execute(query, params or []).fetchall()


def valid_events(config: SimulationConfig) -> tuple[dict[str, list[dict]], Counter]:
    """The records the contracts accept, parsed in Python, redeliveries removed (non-CDC), and
    per topic how many records the contracts reject."""
    by_topic: dict[str, list] = defaultdict(list)
    for record in Simulation(config).records():
        by_topic[record.topic].append(record)
    contracts = load_contracts()
    events: dict[str, list[dict]] = {}
    rejected: Counter = Counter()
    for topic, records in by_topic.items():
        router = TopicRouter(contracts[topic], TEST_PII_KEY.encode())
        n = len(records)
        raw = RawRecords.from_lists(
            [0] * n, list(range(n)), [r.key for r in records], [r.value for r in records], [-1] * n
        )
        routed = router.route(raw, batch_id=1, ingested_at=datetime.now(UTC))
        rejected[topic] = len(routed.quarantined)
        accepted = sorted(routed.landed["_offset"].to_pylist())
        parsed = [json.loads(records[i].value) for i in accepted]
        if "event_id" in (parsed[0] if parsed else {}):
            seen: set[str] = set()
            parsed = [e for e in parsed if not (e["event_id"] in seen or seen.add(e["event_id"]))]
        events[topic] = parsed
    return events, rejected


@pytest.fixture(scope="module")
def built_lake(tmp_path_factory: pytest.TempPathFactory):
    """One simulated marketplace, landed and built (module-scoped: ~30 s)."""
    root = tmp_path_factory.mktemp("marts")
    with EmbeddedBroker(root / "broker") as broker:
        settings = Settings.load(
            env={"TRADELAKE_PII_KEY": TEST_PII_KEY}, home=str(root / "lake"), bootstrap_servers=broker.bootstrap_servers
        )
        kafka.ensure_topics(settings)
        report = simulate(settings, CONFIG)
        Lander(settings, batch_size=10_000).run(follow=False)
        build(settings)
        yield Lake(settings, report, *valid_events(CONFIG))


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def of_type(events: list[dict], *types: str) -> list[dict]:
    return [e for e in events if e["event_type"] in types]


def first_by(events: list[dict], key: str) -> dict[str, dict]:
    """The first event (by event_time) per ``key``."""
    first: dict[str, dict] = {}
    for e in sorted(events, key=lambda e: ts(e["event_time"])):
        first.setdefault(e[key], e)
    return first


def quantile_cont(values: list[float], q: float) -> float:
    """Continuous (linearly interpolated) quantile, as DuckDB's quantile_cont."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    low = math.floor(pos)
    return s[low] + (s[min(low + 1, len(s) - 1)] - s[low]) * (pos - low)


# -- finance ---------------------------------------------------------------------------------


def test_every_planted_break_has_its_status_and_nothing_else_breaks(built_lake: Lake):
    status = dict(built_lake.sql("select gateway_ref, status from finance.payment_reconciliation"))
    planted = built_lake.report.reconciliation_breaks
    assert all(planted.values()), "the simulation plants every status"
    for expected, refs in planted.items():
        assert {ref: status.get(ref) for ref in refs} == dict.fromkeys(refs, expected)
    planted_refs = {ref for refs in planted.values() for ref in refs}
    assert {ref for ref, s in status.items() if s != "matched"} == planted_refs

    summary = dict(built_lake.sql("select status, sum(payments) from finance.reconciliation_summary group by status"))
    assert summary == dict(Counter(status.values()))


def test_reconciliation_amounts_follow_the_ledger_and_the_gateway(built_lake: Lake):
    """Captured, charged, refunded and payout amounts of every gateway_ref, from the events."""
    ledger, lines = built_lake.events["payments.ledger"], built_lake.events["gateway.settlements"]
    ref_of = {e["payment_id"]: e["gateway_ref"] for e in ledger if e.get("gateway_ref")}
    expected: dict[str, Counter] = defaultdict(Counter)
    for e in ledger:
        ref = ref_of.get(e["payment_id"])
        if ref is None:
            continue
        entry = expected[ref]  # every ref the ledger knows has a row
        column = {"payment.captured": "captured", "payment.refunded": "refunded", "payout.sent": "payout"}
        if e["event_type"] in column:
            entry[column[e["event_type"]]] += e["amount_cents"]
    for line in first_by(lines, "line_id").values():
        if line["type"] == "charge":
            expected[line["gateway_ref"]]["charged"] += line["gross_cents"]
        expected[line["gateway_ref"]]["fee"] += line["fee_cents"]
    rows = built_lake.sql(
        "select gateway_ref, ledger_captured_cents, gateway_charge_cents, ledger_refunded_cents, payout_cents,"
        " gateway_fee_cents, difference_cents from finance.payment_reconciliation"
    )
    assert len(rows) == len(expected)
    for ref, captured, charged, refunded, payout, fee, difference in rows:
        e = expected[ref]
        assert (captured, charged, refunded, payout, fee) == (
            e["captured"],
            e["charged"],
            e["refunded"],
            e["payout"],
            e["fee"],
        ), ref
        assert difference == captured - charged


def test_lifecycle_violations_are_exactly_the_planted_ones(built_lake: Lake):
    found = set(built_lake.sql("select violation, entity_id from audit.lifecycle_violations"))
    planted = {(kind, entity) for kind, ids in built_lake.report.lifecycle_violations.items() for entity in ids}
    assert all(built_lake.report.lifecycle_violations.values())
    assert found == planted


# -- pricing ---------------------------------------------------------------------------------


def test_price_band_of_the_busiest_group(built_lake: Lake):
    jobs = first_by(of_type(built_lake.events["marketplace.jobs"], "job.posted"), "job_id")
    bid_events = built_lake.events["marketplace.bids"]
    placed = first_by(of_type(bid_events, "bid.placed"), "bid_id")
    withdrawn = {e["bid_id"] for e in of_type(bid_events, "bid.withdrawn")}
    accepted_jobs = {e["job_id"] for e in of_type(built_lake.events["marketplace.offers"], "offer.accepted")}

    def group(job: dict) -> tuple[str, str, date, str]:
        day = ts(job["event_time"]).date()
        return job["trade"], job["region"], day - timedelta(days=day.weekday()), job["currency"]

    amounts: dict[tuple, list[int]] = defaultdict(list)
    bidders: dict[tuple, set[str]] = defaultdict(set)
    v1_seen = False
    for bid in placed.values():
        job = jobs.get(bid["job_id"])
        if job is None:
            continue
        bidders[group(job)].add(bid["tradesperson_id"])
        if bid["bid_id"] in withdrawn:
            continue
        if bid["schema_version"] == 1:  # major units, USD implied: round half away from zero
            cents, currency, v1_seen = math.floor(bid["amount"] * 100 + 0.5), "USD", True
        else:
            cents, currency = bid["amount_cents"], bid["currency"]
        assert currency == job["currency"]
        amounts[group(job)].append(cents)
    assert v1_seen, "the simulation sends legacy v1 bids"
    busiest = max(amounts, key=lambda g: (len(amounts[g]), g))
    members = [j for j in jobs.values() if group(j) == busiest]
    values = amounts[busiest]

    row = built_lake.sql(
        "select jobs_posted, bids, bid_p25_cents, bid_median_cents, bid_p75_cents, accept_rate, demand_supply_ratio"
        " from pricing.price_bands where trade = ? and region = ? and week_start = ? and currency = ?",
        list(busiest),
    )
    assert len(row) == 1
    jobs_posted, bids, p25, median, p75, accept_rate, ratio = row[0]
    assert (jobs_posted, bids) == (len(members), len(values))
    assert median == pytest.approx(statistics.median(values))
    assert (p25, p75) == pytest.approx((quantile_cont(values, 0.25), quantile_cont(values, 0.75)))
    assert accept_rate == pytest.approx(sum(j["job_id"] in accepted_jobs for j in members) / len(members))
    assert ratio == pytest.approx(len(members) / len(bidders[busiest]))


# -- rankings --------------------------------------------------------------------------------


def test_bayesian_rating_and_on_time_rate_of_a_tradesperson(built_lake: Lake):
    review_events = built_lake.events["marketplace.reviews"]
    removed = {e["review_id"] for e in of_type(review_events, "review.removed")}
    standing = [r for r in first_by(of_type(review_events, "review.submitted"), "review_id").values()
                if r["review_id"] not in removed]  # fmt: skip
    m = statistics.fmean(r["rating"] for r in standing)

    appointments: dict[str, list[dict]] = defaultdict(list)
    for e in built_lake.events["marketplace.appointments"]:
        appointments[e["appointment_id"]].append(e)
    judged: dict[str, list[bool]] = defaultdict(list)  # tradesperson -> on time per started appointment
    rescheduled_and_started: set[str] = set()
    for events in appointments.values():
        schedules = of_type(events, "appointment.scheduled", "appointment.rescheduled")
        starts = of_type(events, "appointment.started")
        if not schedules or not starts:
            continue
        latest = max(schedules, key=lambda e: (ts(e["event_time"]), e["event_type"] == "appointment.rescheduled"))
        arrival = min(ts(e["event_time"]) for e in starts)
        tradesperson = min(events, key=lambda e: ts(e["event_time"]))["tradesperson_id"]
        judged[tradesperson].append(arrival <= ts(latest["window_start"]) + GRACE)
        if len(schedules) > 1:
            rescheduled_and_started.add(tradesperson)

    ratings: dict[str, list[int]] = defaultdict(list)
    for r in standing:
        ratings[r["tradesperson_id"]].append(r["rating"])
    current = {
        tp for (tp,) in built_lake.sql("select tradesperson_id from dimensions.dim_tradespeople where is_current")
    }
    candidates = [tp for tp in rescheduled_and_started & set(ratings) & current if not all(judged[tp])]
    assert candidates, "a tradesperson with reviews, a rescheduled visit and a late arrival"
    tp = max(candidates, key=lambda t: (len(judged[t]), t))

    row = built_lake.sql(
        "select reviews, avg_rating, bayesian_rating, on_time_rate from rankings.tradesperson_rankings"
        " where tradesperson_id = ?",
        [tp],
    )
    reviews, avg_rating, bayesian, on_time = row[0]
    n, total = len(ratings[tp]), sum(ratings[tp])
    assert (reviews, avg_rating) == (n, pytest.approx(total / n))
    assert bayesian == pytest.approx((C * m + total) / (C + n))
    assert on_time == pytest.approx(sum(judged[tp]) / len(judged[tp]))

    # someone without reviews gets m, and nothing to measure is null, not 0
    (unreviewed,) = built_lake.sql(
        "select count(*) filter (where abs(bayesian_rating - ?) > 1e-9) from rankings.tradesperson_rankings"
        " where reviews = 0",
        [m],
    )[0]
    assert unreviewed == 0
    (zero_rates,) = built_lake.sql(
        "select count(*) from rankings.tradesperson_rankings where appointments_started = 0 and on_time_rate = 0"
    )[0]
    assert zero_rates == 0


def test_ranks_cover_exactly_the_tradespeople_with_a_completed_job(built_lake: Lake):
    completed = defaultdict(set)
    for e in of_type(built_lake.events["marketplace.jobs"], "job.completed"):
        completed[e["tradesperson_id"]].add(e["job_id"])
    rows = built_lake.sql(
        "select tradesperson_id, jobs_completed, rank_in_trade_region from rankings.tradesperson_rankings"
    )
    for tp, jobs_completed, rank in rows:
        assert jobs_completed == len(completed.get(tp, ()))
        assert (rank is None) == (jobs_completed == 0)
    deleted = built_lake.report.deleted.get("cdc.public.tradespeople", [])
    assert deleted and not {tp for tp, _, _ in rows} & set(deleted)


# -- dimensions ------------------------------------------------------------------------------


def test_scd2_keeps_every_change_and_closes_deleted_rows(built_lake: Lake):
    for topic, dim, key in (
        ("cdc.public.customers", "dim_customers", "customer_id"),
        ("cdc.public.tradespeople", "dim_tradespeople", "tradesperson_id"),
    ):
        changes = [e for e in built_lake.events[topic] if e["op"] != "d"]
        versions = built_lake.sql(f"select {key}, source_lsn, valid_to is null, is_current from dimensions.{dim}")
        assert sorted((k, lsn) for k, lsn, _, _ in versions) == sorted(
            (e["after"][key], e["source"]["lsn"]) for e in changes
        )
        assert all(open_ == current for _, _, open_, current in versions)
        for entity in built_lake.report.deleted[topic]:
            rows = built_lake.sql(
                f"select is_current, is_deleted from dimensions.{dim} where {key} = ? order by source_lsn", [entity]
            )
            assert rows and not any(current for current, _ in rows) and rows[-1][1]


# -- audit -----------------------------------------------------------------------------------


def test_completeness_matches_the_broker_and_the_simulation(built_lake: Lake):
    rows = built_lake.sql(
        "select topic, partition, first_offset, last_offset, records, landed, quarantined, tombstones, redeliveries"
        " from audit.ingestion_completeness"
    )
    hws = high_watermarks(built_lake.settings, [(t, p) for t, p, *_ in rows])
    per_topic: dict[str, Counter] = defaultdict(Counter)
    for topic, partition, first, last, records, landed, quarantined, tombstones, redeliveries in rows:
        assert (first, last + 1, records) == (0, hws[(topic, partition)], hws[(topic, partition)])
        assert records == landed + quarantined + tombstones
        per_topic[topic].update(
            records=records, quarantined=quarantined, tombstones=tombstones, redeliveries=redeliveries
        )
    report = built_lake.report
    for topic, produced in report.records_per_topic.items():
        assert per_topic[topic] == Counter(  # Counter equality counts a missing key as 0
            records=produced,
            quarantined=built_lake.rejected[topic],
            tombstones=report.tombstones_per_topic[topic],
            redeliveries=report.redeliveries_per_topic[topic],
        ), topic
    (quarantined,) = built_lake.sql("select count(*) from audit.quarantine where reason is not null")[0]
    assert quarantined == sum(built_lake.rejected.values())


def test_a_failing_dbt_test_names_the_node(built_lake: Lake, tmp_path: Path):
    """A ``_batches`` row whose counts do not add up fails the completeness test, by name."""
    home = tmp_path / "lake"
    copy = replace(built_lake.settings, home=home, lake=LakeLocation.from_env({}, home))
    shutil.copytree(built_lake.settings.lake.url, copy.lake.url)  # Delta logs name their files relatively
    batches = DeltaTable(copy.lake.table_uri("_batches")).to_pyarrow_table()
    bad = batches.slice(0, 1).to_pylist()[0] | {"batch_id": 999_999, "records": 1, "landed": 2}
    write_deltalake(copy.lake.table_uri("_batches"), pa.Table.from_pylist([bad], schema=batches.schema), mode="append")
    with pytest.raises(TradelakeError) as failure:
        build(copy, select="stg_lake__batches")
    message = str(failure.value)
    assert "\n" not in message
    assert "expression_is_true_stg_lake__batches_records_landed_quarantined_tombstones" in message


def test_nothing_landed_is_a_clear_error(tmp_path: Path):
    with pytest.raises(TradelakeError, match="nothing has landed"):
        build(Settings.load(env={}, home=str(tmp_path / "empty")))


def test_incremental_build_drops_a_redelivery_that_lands_in_a_later_batch(built_lake: Lake):
    """Runs last: it adds a batch to the shared lake (a GPS ping redelivered, one new ping)."""
    settings = built_lake.settings
    gps = built_lake.events["fleet.gps"]
    old = dict(gps[0])
    new = dict(gps[1], event_id="00000000-0000-4000-8000-000000000001")
    producer = kafka.producer(settings)
    for event in (old, new):
        producer.produce("fleet.gps", key=event["tradesperson_id"].encode(), value=json.dumps(event).encode())
    assert producer.flush(30) == 0
    Lander(settings).run(follow=False)

    result = build(settings)
    assert not result.full_refresh
    counts = dict(
        built_lake.sql(
            "select event_id, count(*) from staging.stg_fleet__gps where event_id in (?, ?) group by event_id",
            [old["event_id"], new["event_id"]],
        )
    )
    assert counts == {old["event_id"]: 1, new["event_id"]: 1}
    (redeliveries,) = built_lake.sql(
        "select sum(redeliveries) from audit.ingestion_completeness where topic = 'fleet.gps'"
    )[0]
    assert redeliveries == built_lake.report.redeliveries_per_topic["fleet.gps"] + 1
