"""Customers and tradespeople: their CDC rows (with personal data) and the hidden traits that
drive their behaviour, so rankings and price bands computed downstream have real signal.

A tradesperson works in one (trade, region) *cell*. Cells are chosen so that each active
one holds at least three bookable tradespeople: a job always gets two to five leads.
"""

from __future__ import annotations

import math
import random
import unicodedata
from dataclasses import dataclass, field

from .catalog import REGIONS, TRADES, currency_of
from .clock import DAY_MS, rfc3339
from .market import AREA_CODES, REGION_CENTRES, REGION_WEIGHTS, TRADE_WEIGHTS
from .model import IdFactory

FIRST_NAMES: tuple[str, ...] = (
    "James", "Maria", "Wei", "Aisha", "Carlos", "Olivia", "Noah", "Priya", "Liam", "Sofia",
    "Mateo", "Chloé", "Ethan", "Fatima", "Lucas", "Hana", "Daniel", "Amara", "Jack", "Yuki",
    "Omar", "Emma", "Diego", "Grace", "Ravi", "Léa", "Samuel", "Nadia", "Kevin", "Zoe",
    "José", "Ingrid", "Malik", "Renée", "Tomás", "Mei", "Andre", "Lucia", "Kofi", "Sara",
)  # fmt: skip
LAST_NAMES: tuple[str, ...] = (
    "Smith", "Garcia", "Chen", "Johnson", "Nguyen", "Patel", "Brown", "Martinez", "Kim", "Wilson",
    "Lopez", "Singh", "Davis", "Okafor", "Müller", "Rodriguez", "Tremblay", "Anderson", "Haddad", "Taylor",
    "Thomas", "Hernández", "Moore", "Sato", "Jackson", "Silva", "White", "Kowalski", "Harris", "Côté",
    "Clark", "Rossi", "Lewis", "Ivanova", "Walker", "Mensah", "Young", "Dubois", "King", "Novak",
)  # fmt: skip
# Canaries get names no one else can draw, so a match in the lake is unambiguous.
CANARY_NAMES: tuple[tuple[str, str], ...] = (
    ("Ottoline", "Brightwater"),
    ("Ignatius", "Featherstonehaugh"),
    ("Marisol", "Kettleborough"),
    ("Thaddeus", "Wrenfield"),
)
TRADE_WORDS: dict[str, str] = {
    "electrician": "Electric",
    "plumber": "Plumbing",
    "hvac": "Heating & Air",
    "carpenter": "Carpentry",
    "roofer": "Roofing",
    "painter": "Painting",
    "locksmith": "Lock & Key",
    "landscaper": "Landscaping",
}
SEGMENT_BUSINESS_SHARE = 0.15
MIN_PER_CELL = 3


def _ascii(text: str) -> str:
    """``Chloé Côté`` → ``chloe.cote``: e-mail local parts stay ASCII."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return plain.lower().replace(" ", ".")


def _near(rng: random.Random, centre: tuple[float, float], spread: float) -> tuple[float, float]:
    """A point within about ``spread`` degrees of ``centre`` (longitude widened for latitude)."""
    lat, lon = centre
    return (
        lat + rng.uniform(-spread, spread),
        lon + rng.uniform(-spread, spread) / math.cos(math.radians(lat)),
    )


def _clip(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


@dataclass(slots=True)
class Customer:
    customer_id: str
    full_name: str
    email: str
    phone: str
    region: str
    segment: str
    created_ms: int
    updated_ms: int

    def row(self) -> dict[str, object]:
        """The ``customers`` table row as Debezium publishes it."""
        return {
            "customer_id": self.customer_id,
            "full_name": self.full_name,
            "email": self.email,
            "phone": self.phone,
            "region": self.region,
            "segment": self.segment,
            "created_at": rfc3339(self.created_ms),
            "updated_at": rfc3339(self.updated_ms),
        }


@dataclass(slots=True)
class Tradesperson:
    """A tradesperson's row plus behaviour traits the platform never publishes.

    ``quality`` (a z-score) drives ratings and cancellations, ``punctuality`` the share of
    arrivals at the start of the window, ``response_minutes`` how fast bids follow leads,
    ``price_factor`` how expensive their bids are. ``busy_until_ms`` keeps one person in one
    place at a time: a new visit is booked only after the last one booked.
    """

    tradesperson_id: str
    display_name: str
    email: str
    phone: str
    trade: str
    region: str
    background_check: str
    joined_ms: int
    updated_ms: int
    quality: float
    punctuality: float
    response_minutes: float
    bid_probability: float
    cancel_probability: float
    price_factor: float
    home: tuple[float, float]
    busy_until_ms: int = 0

    def row(self) -> dict[str, object]:
        """The ``tradespeople`` table row as Debezium publishes it."""
        return {
            "tradesperson_id": self.tradesperson_id,
            "display_name": self.display_name,
            "email": self.email,
            "phone": self.phone,
            "trade": self.trade,
            "region": self.region,
            "background_check": self.background_check,
            "joined_at": rfc3339(self.joined_ms),
            "updated_at": rfc3339(self.updated_ms),
        }


@dataclass
class Population:
    """Everyone on the platform, and who can currently be booked.

    ``bookable_customers`` excludes the customer whose account is deleted during the run;
    ``cells`` lists, per (trade, region), the tradespeople whose background check passed.
    """

    rng: random.Random
    ids: IdFactory
    customers: list[Customer] = field(default_factory=list)
    tradespeople: list[Tradesperson] = field(default_factory=list)
    bookable_customers: list[Customer] = field(default_factory=list)
    cells: dict[tuple[str, str], list[Tradesperson]] = field(default_factory=dict)
    canary_customers: list[Customer] = field(default_factory=list)
    canary_tradespeople: list[Tradesperson] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    _cell_order: list[tuple[str, str]] = field(default_factory=list)
    _region_trades: dict[str, tuple[list[str], list[float]]] = field(default_factory=dict)

    @classmethod
    def generate(
        cls, rng: random.Random, ids: IdFactory, customers: int, tradespeople: int, snapshot_ms: int
    ) -> Population:
        """The population at the initial snapshot: ``customers`` customers and ``tradespeople``
        vetted tradespeople, the first two of each being canaries."""
        pop = cls(rng, ids)
        pop._choose_cells(max(2, min(len(TRADES) * len(REGIONS), tradespeople // 5)))
        weights = [TRADE_WEIGHTS[t] * REGION_WEIGHTS[r] for t, r in pop._cell_order]
        extra = rng.choices(pop._cell_order, weights, k=max(0, tradespeople - len(pop._cell_order) * MIN_PER_CELL))
        for i, cell in enumerate(pop._cell_order * MIN_PER_CELL + extra):
            tradesperson = pop.add_tradesperson(pop._past(snapshot_ms), cell, canary=i < 2)
            tradesperson.background_check = "passed"
            pop.cells[cell].append(tradesperson)
        for i in range(customers):
            pop.bookable_customers.append(pop.add_customer(pop._past(snapshot_ms), canary=i < 2))
        return pop

    def _past(self, snapshot_ms: int) -> int:
        """A sign-up moment between three weeks and two and a half years before the snapshot."""
        return snapshot_ms - round(self.rng.uniform(20, 900) * DAY_MS)

    def _choose_cells(self, count: int) -> None:
        """Weighted sample of (trade, region) cells without replacement (Efraimidis-Spirakis
        keys), forcing a USD and a CAD cell first so even a tiny run has both currencies."""
        keyed = sorted(
            (
                (self.rng.random() ** (1 / (TRADE_WEIGHTS[t] * REGION_WEIGHTS[r])), (t, r))
                for r in REGIONS
                for t in TRADES
            ),
            reverse=True,
        )
        ordered = [cell for _, cell in keyed]
        usd = next(c for c in ordered if currency_of(c[1]) == "USD")
        cad = next(c for c in ordered if currency_of(c[1]) == "CAD")
        rest = [c for c in ordered if c not in (usd, cad)]
        self._cell_order = [usd, cad, *rest][:count]
        for trade, region in self._cell_order:
            self.cells[(trade, region)] = []
            trades, weights = self._region_trades.setdefault(region, ([], []))
            trades.append(trade)
            weights.append(TRADE_WEIGHTS[trade])
        self.regions = [r for r in REGIONS if r in self._region_trades]

    def _identity(self, canary: bool) -> tuple[str, str, str]:
        """(first, last, last four phone digits). Canaries use reserved names and the 555-01xx
        numbers nobody else is given, so a canary string can only come from a canary."""
        if canary:
            index = len(self.canary_customers) + len(self.canary_tradespeople)
            first, last = CANARY_NAMES[index]
            return first, last, f"01{25 * index + self.rng.randint(0, 24):02d}"
        return self.rng.choice(FIRST_NAMES), self.rng.choice(LAST_NAMES), f"{self.rng.randint(200, 9999):04d}"

    def add_customer(self, created_ms: int, canary: bool = False) -> Customer:
        """A new customer row (not yet bookable: the caller decides when they can post jobs)."""
        customer_id = self.ids.next("cus", 4)
        first, last, digits = self._identity(canary)
        region = self.rng.choices(self.regions, [REGION_WEIGHTS[r] for r in self.regions])[0]
        domain = self.rng.choice(("example.com", "example.org"))
        customer = Customer(
            customer_id=customer_id,
            full_name=f"{first} {last}",
            email=f"{_ascii(first)}.{_ascii(last)}.{customer_id[4:]}@{domain}",
            phone=f"+1{AREA_CODES[region]}555{digits}",
            region=region,
            segment="business" if self.rng.random() < SEGMENT_BUSINESS_SHARE else "consumer",
            created_ms=created_ms,
            updated_ms=created_ms,
        )
        self.customers.append(customer)
        if canary:
            self.canary_customers.append(customer)
        return customer

    def add_tradesperson(
        self, joined_ms: int, cell: tuple[str, str] | None = None, canary: bool = False
    ) -> Tradesperson:
        """A new tradesperson row with a pending background check (not yet bookable)."""
        rng = self.rng
        if cell is None:
            cell = rng.choices(self._cell_order, [TRADE_WEIGHTS[t] * REGION_WEIGHTS[r] for t, r in self._cell_order])[0]
        trade, region = cell
        tradesperson_id = self.ids.next("tp", 4)
        first, last, digits = self._identity(canary)
        quality = _clip(rng.gauss(0, 1), -2.2, 2.2)
        tradesperson = Tradesperson(
            tradesperson_id=tradesperson_id,
            display_name=f"{first} {last} {TRADE_WORDS[trade]}",
            email=f"{_ascii(first)}.{_ascii(last)}.{tradesperson_id[3:]}@example.net",
            phone=f"+1{AREA_CODES[region]}555{digits}",
            trade=trade,
            region=region,
            background_check="pending",
            joined_ms=joined_ms,
            updated_ms=joined_ms,
            quality=quality,
            punctuality=_clip(0.72 + 0.09 * quality + rng.gauss(0, 0.07), 0.35, 0.97),
            response_minutes=_clip(math.exp(rng.gauss(math.log(40), 0.7)), 4, 300),
            bid_probability=_clip(rng.gauss(0.82, 0.1), 0.5, 0.98),
            cancel_probability=_clip(0.03 - 0.012 * quality + rng.gauss(0, 0.01), 0.002, 0.12),
            price_factor=_clip(rng.gauss(1.0, 0.12), 0.7, 1.4),
            home=_near(rng, REGION_CENTRES[region], 0.12),
        )
        self.tradespeople.append(tradesperson)
        if canary:
            self.canary_tradespeople.append(tradesperson)
        return tradesperson

    def bookable_tradespeople(self) -> list[Tradesperson]:
        """Everyone in a cell, in a stable order (cells in creation order, then join order)."""
        return [tp for cell in self._cell_order for tp in self.cells[cell]]

    def pick_trade(self, region: str) -> str:
        """A trade in demand in ``region`` among those the platform covers there."""
        trades, weights = self._region_trades[region]
        return self.rng.choices(trades, weights)[0]

    def other_region(self, region: str) -> str:
        """Where a moving customer goes: another region the platform covers."""
        return self.rng.choice([r for r in self.regions if r != region])

    def site_near(self, region: str) -> tuple[float, float]:
        """A job site in ``region``'s metro area."""
        return _near(self.rng, REGION_CENTRES[region], 0.10)
