"""Derived events against their contracts (expectations/derived), without a broker: what publish
sends validates, a broken event refuses the whole run, and ids are deterministic per change."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pipelines.contracts.outbound import OUTBOUND_TOPICS, load_outbound_contracts
from pipelines.errors import TradelakeError
from pipelines.landing.router import TopicRouter
from pipelines.publish import derived_event, event_id, validate

AT = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
ROWS = {
    "notifications.customer": {
        "entity_id": "job_1", "seq": 2, "state": "running_late", "previous_state": "en_route", "changed_at": AT,
        "customer_id": "cus_1", "job_id": "job_1", "tradesperson_id": "tp_1", "appointment_id": "apt_1",
        "eta": AT, "distance_km": 3.2,
    },
    "finance.reconciliation_breaks": {
        "entity_id": "gw_1", "seq": 1, "state": "amount_mismatch", "previous_state": None, "gateway_ref": "gw_1",
        "payment_id": "pay_1", "job_id": "job_1", "currency": "USD", "difference_cents": -120,
    },
    "rankings.changes": {
        "entity_id": "tp_1", "seq": 3, "state": "not_top3", "previous_state": "top3", "tradesperson_id": "tp_1",
        "trade": None, "region": None, "rank_in_trade_region": None, "score": None,
    },
}  # fmt: skip


@pytest.fixture(scope="module")
def routers() -> dict[str, TopicRouter]:
    return {t: TopicRouter(c, b"test-key-of-16-bytes") for t, c in load_outbound_contracts().items()}


@pytest.mark.parametrize("topic", OUTBOUND_TOPICS)
def test_a_change_row_makes_an_event_its_contract_accepts(topic, routers):
    key, value = derived_event(topic, ROWS[topic], AT)
    validate(topic, [(key, value)], routers[topic])
    row = ROWS[topic]
    assert value["event_id"] == event_id(topic, row["entity_id"], row["seq"], row["state"])
    assert value["change_seq"] == row["seq"]


def test_event_types_follow_the_change():
    assert derived_event("notifications.customer", ROWS["notifications.customer"], AT)[1]["event_type"] == (
        "technician.running_late"
    )
    assert derived_event("finance.reconciliation_breaks", ROWS["finance.reconciliation_breaks"], AT)[1][
        "event_type"
    ] == ("break.opened")
    changed = ROWS["finance.reconciliation_breaks"] | {"previous_state": "uncaptured"}
    assert derived_event("finance.reconciliation_breaks", changed, AT)[1]["event_type"] == "break.changed"
    closed = ROWS["finance.reconciliation_breaks"] | {"state": "matched", "previous_state": "uncaptured"}
    assert derived_event("finance.reconciliation_breaks", closed, AT)[1]["event_type"] == "break.closed"
    assert derived_event("rankings.changes", ROWS["rankings.changes"], AT)[1]["event_type"] == "top3.left"


def test_ids_are_the_same_for_the_same_change_and_differ_otherwise():
    a = event_id("rankings.changes", "tp_1", 1, "top3")
    assert a == event_id("rankings.changes", "tp_1", 1, "top3")
    assert (
        len({a, event_id("rankings.changes", "tp_1", 2, "top3"), event_id("rankings.changes", "tp_2", 1, "top3")}) == 3
    )


def test_an_event_breaking_its_contract_refuses_the_run(routers):
    good = derived_event("notifications.customer", ROWS["notifications.customer"], AT)
    bad = derived_event("notifications.customer", ROWS["notifications.customer"] | {"distance_km": -1.0}, AT)
    with pytest.raises(TradelakeError, match=r"break their contract, nothing sent.*distance_km"):
        validate("notifications.customer", [good, bad], routers["notifications.customer"])
    entered = ROWS["rankings.changes"] | {"state": "top3", "rank_in_trade_region": 5, "trade": "plumber"}
    with pytest.raises(TradelakeError, match="rank_in_trade_region"):
        validate("rankings.changes", [derived_event("rankings.changes", entered, AT)], routers["rankings.changes"])
