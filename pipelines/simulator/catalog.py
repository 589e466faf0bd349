"""The event catalog of SPEC §2 as the simulator needs it: topic names, enumerations, producers.

Kept apart from the generator so that the enumerations used to *generate* traffic are visibly
the contract's, and the tests can state the contract independently of this module.
"""

from __future__ import annotations

JOBS = "marketplace.jobs"
LEADS = "marketplace.leads"
BIDS = "marketplace.bids"
OFFERS = "marketplace.offers"
APPOINTMENTS = "marketplace.appointments"
GPS = "fleet.gps"
INVOICES = "payments.invoices"
LEDGER = "payments.ledger"
SETTLEMENTS = "gateway.settlements"
REVIEWS = "marketplace.reviews"
CUSTOMERS = "cdc.public.customers"
TRADESPEOPLE = "cdc.public.tradespeople"

TOPICS: tuple[str, ...] = (
    JOBS,
    LEADS,
    BIDS,
    OFFERS,
    APPOINTMENTS,
    GPS,
    INVOICES,
    LEDGER,
    SETTLEMENTS,
    REVIEWS,
    CUSTOMERS,
    TRADESPEOPLE,
)
CDC_TOPICS: frozenset[str] = frozenset({CUSTOMERS, TRADESPEOPLE})

TRADES: tuple[str, ...] = (
    "electrician",
    "plumber",
    "hvac",
    "carpenter",
    "roofer",
    "painter",
    "locksmith",
    "landscaper",
)
REGIONS: tuple[str, ...] = ("nyc", "chi", "lax", "hou", "phx", "sea", "bos", "atl", "tor", "van")
CAD_REGIONS: frozenset[str] = frozenset({"tor", "van"})
URGENCIES: tuple[str, ...] = ("standard", "urgent", "emergency")


def currency_of(region: str) -> str:
    """Money of a region: tor and van bill in CAD, every other region in USD (SPEC §2.2)."""
    return "CAD" if region in CAD_REGIONS else "USD"


# Which service emits each topic, as the envelope's optional ``producer``. The v1 bids come
# from the old mobile-app backend that still speaks the major-units schema.
PRODUCERS: dict[str, str] = {
    JOBS: "jobs-service/3.1.0",
    LEADS: "matching-service/2.0.4",
    BIDS: "bids-service/2.4.1",
    OFFERS: "offers-service/1.5.0",
    APPOINTMENTS: "scheduling-service/2.2.3",
    GPS: "fleet-tracker/4.0.1",
    INVOICES: "billing-service/1.12.0",
    LEDGER: "payments-service/3.3.2",
    SETTLEMENTS: "gateway-connector/1.2.0",
    REVIEWS: "reviews-service/1.6.4",
}
LEGACY_BIDS_PRODUCER = "bids-service/1.9.7"
