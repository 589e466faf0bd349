"""The contract is the gate: records at the very edges of what the contracts accept land, and
a real ``dbt build`` over them is green; the values that once landed and broke it for good
(NaN, impossible dates, integers beyond 64 bits, duplicate keys) are quarantined instead.

Records are routed by the real routers and committed by the real committer into Delta tables
in a temp dir; the build is tradelake's own (dbt, DuckDB, every model and test).
"""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

from pipelines.build import build
from pipelines.catalog import TOPICS
from pipelines.contracts import load_contracts
from pipelines.lake.tables import Lake
from pipelines.landing.committer import Committer
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.landing.stats import IngestStats
from pipelines.warehouse import Reader
from tests.component.contract_seeds import seeds
from tests.component.dbt_lake import empty_lake, start_stream

EVENT_TIMES = ["2024-02-29T23:59:59.999999999Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2026-02-28T10:00:00Z"]
# Per suite: field values at the edge of what its contract accepts (each lands as its own record).
EDGES: dict[str, list[dict[str, Any]]] = {
    "marketplace.bids__bid.placed.v1": [{"amount": 1e10}, {"amount": 0.01}],
    "marketplace.bids__bid.placed.v2": [{"amount_cents": 10**12}],
    "payments.invoices__invoice.issued.v1": [
        {"due_date": "2026-02-28"},
        {"due_date": "2024-02-29"},
        {"amount_cents": 10**12},
    ],
    "payments.ledger__payment.captured.v1": [{"amount_cents": 10**12}],
    "gateway.settlements__settlement.line.v1": [
        {"gross_cents": -(10**12), "fee_cents": 0, "net_cents": -(10**12)},
        {"gross_cents": 10**12, "fee_cents": 10**12, "net_cents": 0},
    ],
    "fleet.gps__gps.ping.v1": [{"speed_kmh": 1e308, "accuracy_m": 1.7976931348623157e308, "lat": -90, "lon": 180}],
    "marketplace.appointments__appointment.scheduled.v1": [
        {"window_start": "0001-01-01T00:00:00Z", "window_end": "9999-12-31T23:59:59.999999999Z"}
    ],
    "marketplace.appointments__appointment.started.v1": [{"window_start": "not a timestamp: undeclared here"}],
}
CDC_EDGES = [
    {"source": {"lsn": 2**63 - 1, "txId": -(2**63)}, "ts_ms": 253402300799999},
    {"source": {"lsn": 2**63 - 2, "txId": 2**63 - 1}, "ts_ms": 0},
]
# Formerly landed, then broke every build: quarantined now, naming their rule.
POISON: dict[str, list[tuple[str, str, str]]] = {  # suite -> (field, raw JSON literal, rule)
    "marketplace.bids__bid.placed.v1": [("amount", "NaN", "amount is a number")],
    "marketplace.bids__bid.placed.v2": [("amount_cents", "18446744073709551615", "amount_cents is an integer")],
    "payments.ledger__payment.captured.v1": [("amount_cents", "9223372036854775808", "amount_cents is an integer")],
    "payments.invoices__invoice.issued.v1": [("due_date", '"2026-13-45"', "due_date is a calendar date")],
    "marketplace.jobs__job.posted.v1": [("event_time", '"2026-02-30T10:00:00Z"', "event_time is a calendar timestamp")],
}


def _fresh(record: dict[str, Any], n: int) -> dict[str, Any]:
    """A copy of ``record`` that is another event (staging keeps one row per event_id / CDC change)."""
    out = copy.deepcopy(record)
    if "event_id" in out:
        out["event_id"] = str(uuid.UUID(int=n))
    return out


def _merge(record: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    for k, v in change.items():
        if isinstance(v, dict):
            _merge(record.setdefault(k, {}), v)
        else:
            record[k] = v
    return record


def _records() -> tuple[dict[str, list[bytes]], list[tuple[str, str]]]:
    values: dict[str, list[bytes]] = {t.name: [] for t in TOPICS}
    poison: list[tuple[str, str]] = []  # (topic, rule)
    n = 0
    for (suite, variant), seed in sorted(seeds().items()):
        topic = suite.split("__")[0]
        if topic.startswith("cdc."):
            for i, change in enumerate(CDC_EDGES):
                n += 1
                values[topic].append(json.dumps(_merge(_fresh(seed, n), change) | {"op": seed["op"]}).encode())
                if variant == "d":  # a delete's change id is its before image's key and LSN
                    values[topic][-1] = json.dumps(
                        _merge(_fresh(seed, n), {"source": {"lsn": 2**62 + i}, "ts_ms": change["ts_ms"]})
                    ).encode()
            continue
        changes = [{"event_time": t} for t in EVENT_TIMES] + EDGES.get(suite, [])
        for change in changes:
            n += 1
            values[topic].append(json.dumps(_merge(_fresh(seed, n), change)).encode())
        for field, literal, rule in POISON.get(suite, []):
            n += 1
            text = json.dumps(_merge(_fresh(seed, n), {field: "__poison__"})).replace('"__poison__"', literal)
            values[topic].append(text.encode())
            poison.append((topic, rule))
        n += 1
        twice = json.dumps(_fresh(seed, n))[:-1] + ', "event_id": "' + str(uuid.UUID(int=n + 10**6)) + '"}'
        values[topic].append(twice.encode())
        poison.append((topic, "no key twice in one object"))
    return values, poison


def test_edge_values_land_and_build_green_poison_is_quarantined(tmp_path):
    settings = empty_lake(tmp_path / "home")
    contracts = load_contracts()
    for t in TOPICS:
        start_stream(settings, t.name, f"id-{t.name}", t.partitions, "first seen")
    values, poison = _records()
    lake = Lake(settings.lake)
    committer = Committer(
        lake,
        {t: TopicRouter(tc, b"k" * 32) for t, tc in contracts.items()},
        contracts,
        {t: f"id-{t}" for t in contracts},
        {},
        1,
        IngestStats(),
        lambda *_: None,
    )
    raw = {
        t: RawRecords.from_lists([0] * len(v), list(range(len(v))), [b"k"] * len(v), v, [0] * len(v))
        for t, v in values.items()
    }
    batch = committer.route(raw, 1, {(t, 0): 0 for t in raw})
    committer.commit(batch)
    quarantined = {t: sum(b.quarantined.values()) for t, b in batch.topics.items()}
    assert sum(quarantined.values()) == len(poison), quarantined

    result = build(settings)  # raises (one line) when any model or test fails
    assert result.models > 0

    with Reader.of(settings).snapshot() as con:
        rules = {r for (r,) in con.execute("select unnest(rules) from staging.stg_lake__quarantine").fetchall()}
        assert rules == {rule for _, rule in poison}
        bids = con.execute("select max(amount_cents) from staging.stg_marketplace__bids").fetchone()[0]
        assert bids == 10**12, "v1 amount 1e10 is 10^12 cents, as v2's largest"
        dates = {
            d for (d,) in con.execute("select cast(due_date as varchar) from staging.stg_payments__invoices").fetchall()
        }
        assert {"2026-02-28", "2024-02-29"} <= dates
        lsn = con.execute("select max(source_lsn) from staging.stg_cdc__customers").fetchone()[0]
        assert lsn == 2**63 - 1
        started = con.execute(
            "select count(*), count(window_start) from staging.stg_marketplace__appointments"
            " where event_type = 'appointment.started'"
        ).fetchone()
        assert started[0] > 0 and started[1] == 0, "an undeclared window_start does not land"
        assert con.execute("select count(*) from finance.payment_reconciliation").fetchone()[0] > 0
