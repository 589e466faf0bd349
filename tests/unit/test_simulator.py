"""The marketplace traffic simulator against SPEC §2 (restated here, independently of the
simulator's own catalog) and against the answer key it publishes in its report.

Pure unit tests: no broker, small runs (1 000-20 000 records, well under a second each).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import re
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from statistics import fmean
from typing import Any

import orjson
import pytest

from pipelines.simulator import Record, Simulation, SimulationConfig, SimulationReport

# -- SPEC §2, restated ---------------------------------------------------------------------

TRADES = {"electrician", "plumber", "hvac", "carpenter", "roofer", "painter", "locksmith", "landscaper"}
REGIONS = {"nyc", "chi", "lax", "hou", "phx", "sea", "bos", "atl", "tor", "van"}
CURRENCIES = {"USD", "CAD"}
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
MALFORMED_CLASSES = {
    "not_json",
    "not_utf8",
    "not_object",
    "missing_event_id",
    "schema_version_wrong_type",
    "unknown_version",
    "unknown_event_type",
    "missing_required_field",
    "wrong_field_type",
    "unknown_enum",
    "out_of_range",
    "bad_timestamp",
    "bad_uuid",
    "net_not_gross_minus_fee",
    "window_end_before_start",
    "cdc_bad_op",
}
STATUSES = {
    "missing_at_gateway",
    "missing_in_ledger",
    "duplicate_capture",
    "amount_mismatch",
    "uncaptured",
    "invoice_mismatch",
}
VIOLATIONS = {
    "capture_without_authorization",
    "refund_above_captured",
    "payout_above_captured",
    "review_of_uncompleted_job",
    "started_after_cancelled",
}

Check = Callable[[Any], bool]


def is_str(v: Any) -> bool:
    return isinstance(v, str)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def one_of(values: set[str]) -> Check:
    return lambda v: v in values


def between(low: float, high: float) -> Check:
    return lambda v: is_number(v) and low <= v <= high


def positive_int(v: Any) -> bool:
    return is_int(v) and v > 0


def non_negative_int(v: Any) -> bool:
    return is_int(v) and v >= 0


def non_negative(v: Any) -> bool:
    return is_number(v) and v >= 0


def timestamp(v: Any) -> bool:
    return isinstance(v, str) and bool(TIMESTAMP.match(v))


NULLABLE = "nullable"
OFFER = {"offer_id": is_str, "bid_id": is_str, "job_id": is_str, "customer_id": is_str, "tradesperson_id": is_str}
VISIT = {"appointment_id": is_str, "job_id": is_str, "tradesperson_id": is_str}
WINDOW = VISIT | {"window_start": timestamp, "window_end": timestamp}
MONEY = {"amount_cents": positive_int, "currency": one_of(CURRENCIES)}
PAYMENT = {"payment_id": is_str, "job_id": is_str, "invoice_id": is_str, "customer_id": is_str}
PAYMENT |= MONEY | {"gateway_ref": is_str}
# topic -> key field, and (event_type, version) -> {field: check}; a (check, NULLABLE) pair may be null.
TOPICS: dict[str, tuple[str, dict[tuple[str, int], dict[str, Any]]]] = {
    "marketplace.jobs": (
        "job_id",
        {
            ("job.posted", 1): {
                "job_id": is_str,
                "customer_id": is_str,
                "trade": one_of(TRADES),
                "region": one_of(REGIONS),
                "urgency": one_of({"standard", "urgent", "emergency"}),
                "budget_cents": (non_negative_int, NULLABLE),
                "currency": one_of(CURRENCIES),
                "site_lat": between(-90, 90),
                "site_lon": between(-180, 180),
            },
            ("job.cancelled", 1): {"job_id": is_str, "customer_id": is_str, "reason": (is_str, NULLABLE)},
            ("job.completed", 1): {"job_id": is_str, "customer_id": is_str, "tradesperson_id": is_str},
        },
    ),
    "marketplace.leads": (
        "job_id",
        {("lead.sent", 1): {"lead_id": is_str, "job_id": is_str, "tradesperson_id": is_str}},
    ),
    "marketplace.bids": (
        "job_id",
        {
            ("bid.placed", 1): {
                "bid_id": is_str,
                "job_id": is_str,
                "tradesperson_id": is_str,
                "amount": lambda v: is_number(v) and v > 0,
            },
            ("bid.placed", 2): {
                "bid_id": is_str,
                "job_id": is_str,
                "tradesperson_id": is_str,
                "includes_materials": lambda v: isinstance(v, bool),
            }
            | MONEY,
            ("bid.withdrawn", 1): {"bid_id": is_str, "job_id": is_str, "tradesperson_id": is_str},
        },
    ),
    "marketplace.offers": ("job_id", {("offer.accepted", 1): OFFER, ("offer.declined", 1): OFFER}),
    "marketplace.appointments": (
        "job_id",
        {
            ("appointment.scheduled", 1): WINDOW,
            ("appointment.rescheduled", 1): WINDOW,
            ("appointment.cancelled", 1): VISIT | {"cancelled_by": one_of({"customer", "tradesperson", "platform"})},
            ("appointment.started", 1): VISIT,
            ("appointment.completed", 1): VISIT,
        },
    ),
    "fleet.gps": (
        "tradesperson_id",
        {
            ("gps.ping", 1): {
                "tradesperson_id": is_str,
                "appointment_id": (is_str, NULLABLE),
                "lat": between(-90, 90),
                "lon": between(-180, 180),
                "speed_kmh": non_negative,
                "accuracy_m": non_negative,
            }
        },
    ),
    "payments.invoices": (
        "job_id",
        {
            ("invoice.issued", 1): {
                "invoice_id": is_str,
                "job_id": is_str,
                "customer_id": is_str,
                "tradesperson_id": is_str,
                "due_date": lambda v: isinstance(v, str) and bool(DATE.match(v)),
            }
            | MONEY
        },
    ),
    "payments.ledger": (
        "payment_id",
        {
            ("payment.authorized", 1): PAYMENT,
            ("payment.captured", 1): PAYMENT,
            ("payment.failed", 1): {"payment_id": is_str, "job_id": is_str, "invoice_id": is_str, "reason": is_str},
            ("payment.refunded", 1): {
                "payment_id": is_str,
                "job_id": is_str,
                "refund_id": is_str,
                "gateway_ref": is_str,
            }
            | MONEY,
            ("payout.sent", 1): {"payout_id": is_str, "payment_id": is_str, "job_id": is_str, "tradesperson_id": is_str}
            | MONEY,
        },
    ),
    "gateway.settlements": (
        "gateway_ref",
        {
            ("settlement.line", 1): {
                "line_id": is_str,
                "gateway_ref": is_str,
                "type": one_of({"charge", "refund", "chargeback", "fee_adjustment"}),
                "gross_cents": is_int,
                "fee_cents": non_negative_int,
                "net_cents": is_int,
                "currency": one_of(CURRENCIES),
                "payout_batch_id": is_str,
            }
        },
    ),
    "marketplace.reviews": (
        "tradesperson_id",
        {
            ("review.submitted", 1): {
                "review_id": is_str,
                "job_id": is_str,
                "customer_id": is_str,
                "tradesperson_id": is_str,
                "rating": lambda v: is_int(v) and 1 <= v <= 5,
                "comment": (is_str, NULLABLE),
            },
            ("review.removed", 1): {"review_id": is_str, "job_id": is_str, "tradesperson_id": is_str, "reason": is_str},
        },
    ),
}
CDC_ROWS: dict[str, tuple[str, dict[str, Check]]] = {
    "cdc.public.customers": (
        "customer_id",
        {
            "customer_id": is_str,
            "full_name": is_str,
            "email": is_str,
            "phone": is_str,
            "region": one_of(REGIONS),
            "segment": one_of({"consumer", "business"}),
            "created_at": timestamp,
            "updated_at": timestamp,
        },
    ),
    "cdc.public.tradespeople": (
        "tradesperson_id",
        {
            "tradesperson_id": is_str,
            "display_name": is_str,
            "email": is_str,
            "phone": is_str,
            "trade": one_of(TRADES),
            "region": one_of(REGIONS),
            "background_check": one_of({"pending", "passed", "failed"}),
            "joined_at": timestamp,
            "updated_at": timestamp,
        },
    ),
}
ALL_TOPICS = set(TOPICS) | set(CDC_ROWS)


def _fields_ok(value: dict[str, Any], rules: dict[str, Any]) -> bool:
    for name, rule in rules.items():
        check, nullable = rule if isinstance(rule, tuple) else (rule, None)
        if value.get(name) is None:
            if nullable is None:
                return False
        elif not check(value[name]):
            return False
    return True


def parse(record: Record) -> dict[str, Any] | None:
    """The record's value if it honours the contract of SPEC §2, else None (malformed)."""
    assert record.value is not None, "tombstones are handled by the caller"
    try:
        value = orjson.loads(record.value.decode("utf-8"))
    except (UnicodeDecodeError, orjson.JSONDecodeError):
        return None
    if not isinstance(value, dict):
        return None
    if record.topic in CDC_ROWS:
        return value if _change_ok(record, value) else None
    key_field, types = TOPICS[record.topic]
    envelope_ok = (
        isinstance(value.get("event_id"), str)
        and UUID.match(value["event_id"])
        and timestamp(value.get("event_time"))
        and is_int(value.get("schema_version"))
        and isinstance(value.get("producer", ""), str)
    )
    rules = types.get((value.get("event_type"), value.get("schema_version")))  # type: ignore[arg-type]
    if not envelope_ok or rules is None or not _fields_ok(value, rules):
        return None
    if value["event_type"] == "settlement.line" and value["net_cents"] != value["gross_cents"] - value["fee_cents"]:
        return None
    if "window_start" in value and not value["window_end"] > value["window_start"]:
        return None
    assert record.key == value[key_field].encode(), "message key is the topic's entity id"
    return value


def _change_ok(record: Record, value: dict[str, Any]) -> bool:
    id_field, row_rules = CDC_ROWS[record.topic]
    source = value.get("source")
    if (
        value.get("op") not in {"r", "c", "u", "d"}
        or not non_negative_int(value.get("ts_ms"))
        or not isinstance(source, dict)
        or source.get("db") != "marketplace"
        or source.get("table") != record.topic.rsplit(".", 1)[1]
        or not non_negative_int(source.get("lsn"))
        or not is_int(source.get("txId"))
    ):
        return False
    rows = [value.get("before"), value.get("after")]
    if value["op"] != "d" and value.get("after") is None:
        return False
    if not all(row is None or (isinstance(row, dict) and _fields_ok(row, row_rules)) for row in rows):
        return False
    row = value["after"] or value["before"]
    assert orjson.loads(record.key or b"") == {id_field: row[id_field]}, "CDC key is the primary key as JSON"
    return True


def _ms(ts: str) -> int:
    return round(datetime.fromisoformat(ts).astimezone(UTC).timestamp() * 1000)


# -- runs (cached: a Simulation is deterministic) --------------------------------------------


@cache
def run(events: int, seed: int = 42, malformed_rate: float = 0.005) -> tuple[list[Record], SimulationReport]:
    simulation = Simulation(SimulationConfig(events=events, seed=seed, malformed_rate=malformed_rate))
    records = list(simulation.records())
    return records, simulation.report


@cache
def valid(events: int, seed: int = 42, malformed_rate: float = 0.005) -> list[tuple[Record, dict[str, Any]]]:
    """Contract-abiding records with their parsed values (tombstones left out)."""
    records, _ = run(events, seed, malformed_rate)
    parsed = [(r, parse(r)) for r in records if r.value is not None]
    return [(r, v) for r, v in parsed if v is not None]


def unique_events(events: int, seed: int = 42, malformed_rate: float = 0.005) -> list[dict[str, Any]]:
    """Valid envelope events with redeliveries removed (first delivery per event_id), as staging sees them."""
    seen: set[str] = set()
    unique = []
    for record, value in valid(events, seed, malformed_rate):
        if record.topic in CDC_ROWS or value["event_id"] in seen:
            continue
        seen.add(value["event_id"])
        unique.append(value)
    return unique


# -- determinism and the stream ----------------------------------------------------------------


def test_same_config_yields_identical_bytes_and_another_seed_differs():
    def produce(seed: int) -> list[tuple[str, bytes | None, bytes | None]]:
        return [(r.topic, r.key, r.value) for r in Simulation(SimulationConfig(events=3000, seed=seed)).records()]

    first = produce(5)
    assert first == produce(5)
    assert first != produce(6)


def test_records_stream_once_and_the_report_is_json():
    simulation = Simulation(SimulationConfig(events=1000))
    records = list(simulation.records())
    with pytest.raises(RuntimeError):
        simulation.records()
    report = json.loads(json.dumps(simulation.report.to_dict()))
    assert report["total_records"] == len(records) == sum(report["records_per_topic"].values())
    assert set(report["reconciliation_breaks"]) == STATUSES and set(report["lifecycle_violations"]) == VIOLATIONS


@pytest.mark.parametrize("events", [1000, 4000, 15000])
@pytest.mark.parametrize("seed", [1, 2])
def test_total_is_within_five_percent_of_the_target(events, seed):
    records, report = run(events, seed)
    assert abs(len(records) - events) <= 0.05 * events
    assert report.total_records == len(records)
    assert {t: n for t, n in report.records_per_topic.items() if n} == Counter(r.topic for r in records)


# -- coverage of the catalog -------------------------------------------------------------------


@pytest.mark.parametrize("events", [1000, 2000])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_topic_and_event_type_version_appears(events, seed):
    records, _ = run(events, seed)
    assert {r.topic for r in records} == ALL_TOPICS
    seen = {(r.topic, v["event_type"], v["schema_version"]) for r, v in valid(events, seed) if r.topic in TOPICS}
    expected = {(topic, *kind) for topic, (_, types) in TOPICS.items() for kind in types}
    assert seen == expected
    ops = {(r.topic, v["op"]) for r, v in valid(events, seed) if r.topic in CDC_ROWS}
    assert {op for topic, op in ops if topic == "cdc.public.customers"} == {"r", "c", "u", "d"}
    assert {op for topic, op in ops if topic == "cdc.public.tradespeople"} == {"r", "c", "u", "d"}


@pytest.mark.parametrize("events", [5000, 20000])
def test_gps_pings_dominate_like_production(events):
    records, _ = run(events)
    share = sum(r.topic == "fleet.gps" for r in records) / len(records)
    assert 0.70 <= share <= 0.85
    pings = [v for r, v in valid(events) if r.topic == "fleet.gps"]
    between_jobs = sum(p["appointment_id"] is None for p in pings) / len(pings)
    assert 0.02 < between_jobs < 0.3, "mostly pings of a visit, some between jobs"


# -- contract conformance and malformed traffic ----------------------------------------------


def _malformed_per_topic(records: list[Record]) -> Counter[str]:
    return Counter(r.topic for r in records if r.value is not None and parse(r) is None)


def test_every_record_but_the_malformed_ones_honours_the_contract():
    records, report = run(5000)
    per_topic: Counter[str] = Counter()
    for (topic, _), n in report.malformed.items():
        per_topic[topic] += n
    assert _malformed_per_topic(records) == per_topic
    assert 0 < sum(per_topic.values()) < 0.02 * len(records)


def test_every_malformed_class_appears_and_breaks_the_contract():
    records, report = run(20000, malformed_rate=0.05)
    assert {cls for _, cls in report.malformed} == MALFORMED_CLASSES
    per_topic: Counter[str] = Counter()
    for (topic, _), n in report.malformed.items():
        per_topic[topic] += n
    assert _malformed_per_topic(records) == per_topic
    assert len({topic for topic, _ in report.malformed}) >= 10, "spread over the topics"
    assert 0.04 < sum(per_topic.values()) / len(records) < 0.06


# The story tests run without malformed traffic: a malformed record may stand in for a
# posting or an offer, which would leave references dangling.
CLEAN = (20000, 42, 0.0)


def test_v1_bids_are_usd_and_about_a_third_of_usd_bids():
    bids = [v for v in unique_events(*CLEAN) if v["event_type"] == "bid.placed"]
    jobs = {v["job_id"]: v for v in unique_events(*CLEAN) if v["event_type"] == "job.posted"}
    usd = [b for b in bids if jobs[b["job_id"]]["currency"] == "USD"]
    v1 = [b for b in bids if b["schema_version"] == 1]
    assert all(jobs[b["job_id"]]["currency"] == "USD" for b in v1)
    assert 0.2 < len(v1) / len(usd) < 0.4
    assert all(b["currency"] == jobs[b["job_id"]]["currency"] for b in bids if b["schema_version"] == 2)
    assert all(round(b["amount"], 2) == b["amount"] for b in v1)


# -- redeliveries, late events, CDC ----------------------------------------------------------


def test_redeliveries_repeat_earlier_bytes_exactly():
    records, report = run(20000)
    seen: set[tuple[str, bytes | None, bytes]] = set()
    repeats: Counter[str] = Counter()
    for r in records:
        if r.value is None:
            continue
        if (r.topic, r.key, r.value) in seen:
            repeats[r.topic] += 1
        seen.add((r.topic, r.key, r.value))
    assert repeats == Counter({t: n for t, n in report.redeliveries_per_topic.items() if n})
    assert 0.005 < sum(repeats.values()) / len(records) < 0.015
    assert not any(t in CDC_ROWS for t in repeats)


def test_late_events_arrive_hours_after_their_time():
    records, report = run(20000)
    seen: set[bytes] = set()
    latest, late = "", 0
    for record, value in valid(20000):
        if record.topic in CDC_ROWS or record.value in seen:
            continue  # redeliveries repeat old event times on purpose
        seen.add(record.value or b"")
        if value["event_time"] < latest:
            late += 1
        latest = max(latest, value["event_time"])
    total_late = sum(report.late_per_topic.values())
    assert 0.01 < total_late / len(records) < 0.03
    assert 0.8 * total_late <= late <= total_late


def test_tombstones_follow_their_delete_with_the_same_key():
    records, report = run(4000)
    tombstones = [i for i, r in enumerate(records) if r.value is None]
    assert len(tombstones) == sum(report.tombstones_per_topic.values()) == 2
    for i in tombstones:
        tombstone = records[i]
        assert tombstone.topic in CDC_ROWS
        previous = next(r for r in reversed(records[:i]) if r.topic == tombstone.topic)
        assert previous.key == tombstone.key
        assert orjson.loads(previous.value or b"")["op"] == "d"
        id_field = CDC_ROWS[tombstone.topic][0]
        assert orjson.loads(tombstone.key or b"")[id_field] in report.deleted[tombstone.topic]


def test_cdc_snapshot_first_lsn_strictly_increasing_and_times_consistent():
    changes = [(r, v) for r, v in valid(20000) if r.topic in CDC_ROWS]
    for topic in CDC_ROWS:
        ops = [v["op"] for r, v in changes if r.topic == topic]
        first_other = next(i for i, op in enumerate(ops) if op != "r")
        assert set(ops[:first_other]) == {"r"} and "r" not in ops[first_other:]
        lsns = [v["source"]["lsn"] for r, v in changes if r.topic == topic]
        assert all(a < b for a, b in itertools.pairwise(lsns))
        times = [v["ts_ms"] for r, v in changes if r.topic == topic]
        assert times == sorted(times)
    for _, v in changes:
        if v["op"] in {"c", "u"}:  # the row's updated_at is the change time
            assert _ms(v["after"]["updated_at"]) == v["ts_ms"]


def test_canaries_are_named_and_appear_in_clear_only_in_cdc_rows():
    records, report = run(5000)
    flat = report.canaries_flat()
    assert len(report.canaries) == 4 and len(flat) == 12
    cdc_text = b"".join(r.value for r in records if r.topic in CDC_ROWS and r.value)
    other_text = b"".join(r.value for r in records if r.topic not in CDC_ROWS and r.value)
    for value in flat:
        assert value.encode() in cdc_text
        assert value.encode() not in other_text


# -- the marketplace story -------------------------------------------------------------------


def test_jobs_follow_their_customer_region_and_reach_the_right_tradespeople():
    moves: defaultdict[str, list[tuple[int, str]]] = defaultdict(list)  # customer -> [(ts_ms, region)]
    cell_of: dict[str, tuple[str, str]] = {}
    for record, v in valid(*CLEAN):
        if record.topic == "cdc.public.customers" and v["after"]:
            moves[v["after"]["customer_id"]].append((v["ts_ms"], v["after"]["region"]))
        elif record.topic == "cdc.public.tradespeople" and v["after"]:
            cell_of[v["after"]["tradesperson_id"]] = (v["after"]["trade"], v["after"]["region"])
    events = unique_events(*CLEAN)
    jobs = {v["job_id"]: v for v in events if v["event_type"] == "job.posted"}
    for job in jobs.values():
        history = moves[job["customer_id"]]
        at = bisect.bisect_right([ts for ts, _ in history], _ms(job["event_time"])) - 1
        assert job["region"] == history[at][1], "the customer's region when posting"
        assert job["currency"] == ("CAD" if job["region"] in {"tor", "van"} else "USD")
    leads: Counter[str] = Counter()
    for v in events:
        if v["event_type"] == "lead.sent":
            leads[v["job_id"]] += 1
            job = jobs[v["job_id"]]
            assert cell_of[v["tradesperson_id"]] == (job["trade"], job["region"])
    assert set(leads.values()) <= {2, 3, 4, 5}
    assert any(job["budget_cents"] is None for job in jobs.values())


def test_prices_invoices_and_settlements_are_realistic():
    events = unique_events(*CLEAN)
    bids = {v["bid_id"]: v for v in events if v["event_type"] == "bid.placed"}
    jobs = {v["job_id"]: v for v in events if v["event_type"] == "job.posted"}
    cents = {b: round(v["amount"] * 100) if v["schema_version"] == 1 else v["amount_cents"] for b, v in bids.items()}
    plumber_usd = sorted(c for b, c in cents.items() if jobs[bids[b]["job_id"]]["trade"] == "plumber")
    if plumber_usd:
        assert 10_000 <= plumber_usd[len(plumber_usd) // 2] <= 120_000
    accepted = {v["job_id"]: cents[v["bid_id"]] for v in events if v["event_type"] == "offer.accepted"}
    for v in events:
        if v["event_type"] == "invoice.issued":
            assert 0.9 <= v["amount_cents"] / accepted[v["job_id"]] <= 1.3
            assert v["due_date"] > v["event_time"][:10]
        if v["event_type"] == "settlement.line" and v["type"] == "charge":
            assert v["fee_cents"] == (v["gross_cents"] * 29 + 500) // 1000 + 30
            assert v["payout_batch_id"] == "pb_" + v["event_time"][:10].replace("-", "")
    ratings = [v["rating"] for v in events if v["event_type"] == "review.submitted"]
    assert fmean(ratings) > 3.8 and Counter(ratings).most_common(1)[0][0] in {4, 5}


def test_appointments_windows_arrivals_and_gps_tell_one_story():
    events = unique_events(*CLEAN)
    windows: dict[str, tuple[str, str]] = {}
    for v in events:
        if v["event_type"] in {"appointment.scheduled", "appointment.rescheduled"}:
            start, end = v["window_start"], v["window_end"]
            hours = (_ms(end) - _ms(start)) / 3_600_000
            assert hours in {2, 3, 4}
            assert _ms(start) - _ms(v["event_time"]) >= 8 * 3_600_000, "a day or more later (next local day)"
            windows[v["appointment_id"]] = (start, end)
    arrivals = [v for v in events if v["event_type"] == "appointment.started"]
    on_time = sum(_ms(a["event_time"]) <= _ms(windows[a["appointment_id"]][0]) + 15 * 60_000 for a in arrivals)
    very_late = sum(_ms(a["event_time"]) > _ms(windows[a["appointment_id"]][1]) for a in arrivals)
    assert 0.5 < on_time / len(arrivals) < 0.95 and 0 < very_late / len(arrivals) < 0.15
    assert all(_ms(a["event_time"]) <= _ms(windows[a["appointment_id"]][1]) + 3_600_000 for a in arrivals), (
        "at most an hour late"
    )
    visited = {a["appointment_id"] for a in arrivals}
    pinged = {v["appointment_id"] for v in events if v["event_type"] == "gps.ping" and v["appointment_id"]}
    en_route = set(run(*CLEAN[:2], CLEAN[2])[1].en_route)
    assert pinged == visited | en_route and not visited & en_route, "visits, and drives the stream ends in"


# -- the planted answer key ------------------------------------------------------------------


def reconcile(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """SPEC §4 finance.payment_reconciliation statuses, computed from deduplicated events."""
    invoices = {v["invoice_id"]: v["amount_cents"] for v in events if v["event_type"] == "invoice.issued"}
    ref_of_payment = {v["payment_id"]: v["gateway_ref"] for v in events if "gateway_ref" in v and "payment_id" in v}
    captures: defaultdict[str, list[int]] = defaultdict(list)
    charges: defaultdict[str, list[int]] = defaultdict(list)
    attempted: set[str] = set()
    invoiced: dict[str, int] = {}
    for v in events:
        kind = v["event_type"]
        if kind in {"payment.authorized", "payment.captured"}:
            invoiced[v["gateway_ref"]] = invoices[v["invoice_id"]]
            attempted.add(v["gateway_ref"])
        if kind == "payment.captured":
            captures[v["gateway_ref"]].append(v["amount_cents"])
        if kind == "payment.failed" and v["payment_id"] in ref_of_payment:
            attempted.add(ref_of_payment[v["payment_id"]])
        elif kind == "settlement.line" and v["type"] == "charge":
            charges[v["gateway_ref"]].append(v["gross_cents"])
    statuses: defaultdict[str, set[str]] = defaultdict(set)
    for ref in attempted | set(charges):
        captured, charged = captures.get(ref, []), charges.get(ref, [])
        if captured and not charged:
            status = "missing_at_gateway"
        elif charged and not captured:
            status = "missing_in_ledger"
        elif len(charged) > 1 or len(captured) > 1:
            status = "duplicate_capture"
        elif sum(captured) != sum(charged):
            status = "amount_mismatch"
        elif not captured and not charged:
            status = "uncaptured"
        elif sum(captured) != invoiced[ref]:
            status = "invoice_mismatch"
        else:
            continue
        statuses[status].add(ref)
    return dict(statuses)


def lifecycle_violations(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """SPEC §4 audit.lifecycle_violations, by the id of the offending entity."""
    by_type: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in events:
        by_type[v["event_type"]].append(v)
    authorized = {v["payment_id"] for v in by_type["payment.authorized"]}
    captured: Counter[str] = Counter()
    for v in by_type["payment.captured"]:
        captured[v["payment_id"]] += v["amount_cents"]
    completed = {v["job_id"] for v in by_type["job.completed"]}
    cancelled_at = {v["appointment_id"]: v["event_time"] for v in by_type["appointment.cancelled"]}
    found = {
        "capture_without_authorization": {v["payment_id"] for v in by_type["payment.captured"]} - authorized,
        "refund_above_captured": {
            v["refund_id"] for v in by_type["payment.refunded"] if v["amount_cents"] > captured[v["payment_id"]]
        },
        "payout_above_captured": {
            v["payout_id"] for v in by_type["payout.sent"] if v["amount_cents"] > captured[v["payment_id"]]
        },
        "review_of_uncompleted_job": {
            v["review_id"] for v in by_type["review.submitted"] if v["job_id"] not in completed
        },
        "started_after_cancelled": {
            v["appointment_id"]
            for v in by_type["appointment.started"]
            if v["appointment_id"] in cancelled_at and v["event_time"] > cancelled_at[v["appointment_id"]]
        },
    }
    return {kind: ids for kind, ids in found.items() if ids}


@pytest.mark.parametrize(
    ("events", "seed", "malformed_rate"), [(1000, 1, 0.005), (1000, 2, 0.005), (1000, 3, 0.005), (20000, 42, 0.05)]
)
def test_planted_breaks_are_exactly_what_the_marts_will_find(events, seed, malformed_rate):
    _, report = run(events, seed, malformed_rate)
    assert all(report.reconciliation_breaks[s] for s in STATUSES), "every status is planted at least once"
    assert all(report.lifecycle_violations[k] for k in VIOLATIONS), "every violation is planted at least once"
    unique = unique_events(events, seed, malformed_rate)
    assert reconcile(unique) == {s: set(refs) for s, refs in report.reconciliation_breaks.items()}
    assert lifecycle_violations(unique) == {k: set(ids) for k, ids in report.lifecycle_violations.items()}
    payments = sum(v["event_type"] == "payment.captured" for v in unique)
    assert len(report.reconciliation_breaks["duplicate_capture"]) <= max(1, 0.02 * payments)


# -- trucks on the road ------------------------------------------------------------------------


def _haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


@pytest.mark.parametrize(("events", "seed"), [(1000, 1), (20000, 42)])
def test_the_stream_ends_with_trucks_on_their_way_some_running_late(events, seed):
    """Each planted drive is its truck's latest ping, heading to the job's site with a speed that
    its positions imply: the ETA from that speed is past window_start + 15 min exactly for the
    planted late arrivals."""
    _, report = run(events, seed)
    unique = unique_events(events, seed)
    assert len(report.en_route) == 4 and len(report.running_late) == 2
    assert set(report.running_late) < set(report.en_route)
    sites = {v["job_id"]: (v["site_lat"], v["site_lon"]) for v in unique if v["event_type"] == "job.posted"}
    windows = {v["appointment_id"]: v for v in unique if v["event_type"] == "appointment.scheduled"}
    started = {v["appointment_id"] for v in unique if v["event_type"] == "appointment.started"}
    latest: dict[str, dict[str, Any]] = {}
    track: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in unique:
        if v["event_type"] == "gps.ping":
            track[v["appointment_id"]].append(v)
            if v["tradesperson_id"] not in latest or v["event_time"] > latest[v["tradesperson_id"]]["event_time"]:
                latest[v["tradesperson_id"]] = v
    for appointment_id in report.en_route:
        window = windows[appointment_id]
        ping = latest[window["tradesperson_id"]]
        assert ping["appointment_id"] == appointment_id and appointment_id not in started
        pings = sorted(track[appointment_id], key=lambda p: p["event_time"])
        site = sites[window["job_id"]]
        distances = [_haversine_km((p["lat"], p["lon"]), site) for p in pings]
        assert distances[-1] < distances[0], "moving toward the site"
        speed = fmean(p["speed_kmh"] for p in pings[-3:])
        eta = _ms(ping["event_time"]) + distances[-1] / speed * 3_600_000
        late = eta > _ms(window["window_start"]) + 15 * 60_000
        assert late == (appointment_id in report.running_late), appointment_id


def test_reported_speeds_are_the_speeds_positions_imply():
    pings: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
    for v in unique_events(*CLEAN):
        if v["event_type"] == "gps.ping" and v["appointment_id"] and v["speed_kmh"] > 5:
            pings[v["appointment_id"]].append(v)
    ratios = []
    for track in pings.values():
        track.sort(key=lambda p: p["event_time"])
        for a, b in itertools.pairwise(track):
            hours = (_ms(b["event_time"]) - _ms(a["event_time"])) / 3_600_000
            if b["speed_kmh"] > 5 and hours > 0:
                ratios.append(_haversine_km((a["lat"], a["lon"]), (b["lat"], b["lon"])) / hours / b["speed_kmh"])
    assert len(ratios) > 1000
    assert 0.8 < statistics.median(ratios) < 1.2
