"""The topics of SPEC §2 (names, message keys and partition counts), and the reconciliation
statuses of SPEC §4 that both the simulator (which plants them) and the demo (which reports
them) name.

Field-level rules live in the contracts (``expectations/``); this module only knows what a
producer or the embedded broker needs to create the topics.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    name: str
    key: str
    partitions: int
    is_cdc: bool = False


TOPICS: tuple[Topic, ...] = (
    Topic("marketplace.jobs", "job_id", 3),
    Topic("marketplace.leads", "job_id", 3),
    Topic("marketplace.bids", "job_id", 3),
    Topic("marketplace.offers", "job_id", 3),
    Topic("marketplace.appointments", "job_id", 3),
    Topic("fleet.gps", "tradesperson_id", 6),
    Topic("payments.invoices", "job_id", 3),
    Topic("payments.ledger", "payment_id", 3),
    Topic("gateway.settlements", "gateway_ref", 3),
    Topic("marketplace.reviews", "tradesperson_id", 3),
    Topic("cdc.public.customers", "customer_id", 1, is_cdc=True),
    Topic("cdc.public.tradespeople", "tradesperson_id", 1, is_cdc=True),
)

TOPIC_NAMES: tuple[str, ...] = tuple(t.name for t in TOPICS)


def topic(name: str) -> Topic:
    """Look a catalog topic up by name."""
    for t in TOPICS:
        if t.name == name:
            return t
    raise KeyError(name)


# finance.payment_reconciliation.status values other than "matched", in reporting order.
RECONCILIATION_BREAKS: tuple[str, ...] = (
    "missing_at_gateway",
    "missing_in_ledger",
    "duplicate_capture",
    "amount_mismatch",
    "uncaptured",
    "invoice_mismatch",
)
