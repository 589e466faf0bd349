"""The customers and tradespeople tables over the run, as their CDC topics tell it.

A snapshot (op ``r``) of everyone comes first, as when a Debezium connector starts. Then,
while jobs flow: updates (``u``: customers move region or become business accounts, people
change phone or e-mail), sign-ups (``c``; a new tradesperson becomes bookable only once the
background check passes), one tradesperson whose check fails and whose account is deleted,
and one customer who asks for erasure (``d``, followed by a tombstone).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from .catalog import CUSTOMERS, TRADESPEOPLE
from .cdc import change
from .clock import DAY_MS, MINUTE_MS
from .market import AREA_CODES
from .model import Event, Guard
from .population import Customer, Population, Tradesperson
from .report import SimulationReport
from .sizing import Sizing

Story = Iterator[int]
UPDATE_KINDS: tuple[str, ...] = ("customer_region", "customer_segment", "customer_contact", "tradesperson_contact")
UPDATE_WEIGHTS: tuple[float, ...] = (3, 2, 2, 1)
Person = TypeVar("Person", Customer, Tradesperson)


class Directory:
    """Plans the CDC traffic; its stories yield wake-up times and dispatch changes when woken
    (so each change reads and writes the population at its own moment)."""

    def __init__(
        self,
        rng: random.Random,
        population: Population,
        sizing: Sizing,
        start_ms: int,
        dispatch: Callable[[Event], None],
        report: SimulationReport,
    ) -> None:
        self._rng = rng
        self._population = population
        self._sizing = sizing
        self._start = start_ms
        self._period = sizing.posting_days * DAY_MS
        self._dispatch = dispatch
        self._report = report
        self.snapshot_ms = start_ms - 15 * MINUTE_MS
        self._canaries: list[Customer | Tradesperson] = [*population.canary_customers, *population.canary_tradespeople]
        # Present at the snapshot, never bookable: erased / failed during the run.
        self._erased = population.add_customer(self.snapshot_ms - round(rng.uniform(30, 400) * DAY_MS))
        self._failed = population.add_tradesperson(self.snapshot_ms - round(rng.uniform(1, 10) * DAY_MS))
        report.canaries = {c.customer_id: _personal(c) for c in population.canary_customers}
        report.canaries |= {tp.tradesperson_id: _personal(tp) for tp in population.canary_tradespeople}
        report.deleted = {CUSTOMERS: [], TRADESPEOPLE: []}

    def stories(self) -> list[Story]:
        rng, start, period = self._rng, self._start, self._period
        stories = [self._snapshot(), self._updates()]
        for _ in range(self._sizing.customer_signups):
            stories.append(self._customer_signup(start + round(period * rng.uniform(0.05, 0.8))))
        for _ in range(self._sizing.tradesperson_signups):
            joined = start + round(period * rng.uniform(0.05, 0.6))
            stories.append(self._tradesperson_signup(joined, joined + rng.randint(DAY_MS, 3 * DAY_MS)))
        stories.append(self._erasure(start + round(period * rng.uniform(0.4, 0.7))))
        failed = start + round(period * rng.uniform(0.1, 0.3))
        stories.append(self._failed_check(failed, failed + rng.randint(2 * DAY_MS, 5 * DAY_MS)))
        return stories

    def _is_canary(self, person: Customer | Tradesperson) -> bool:
        return any(person is canary for canary in self._canaries)

    def _guard(self, person: Customer | Tradesperson) -> Guard:
        return Guard.PROTECTED if self._is_canary(person) else Guard.CRITICAL

    def _snapshot(self) -> Story:
        population, t = self._population, self.snapshot_ms
        for customer in list(population.customers):
            yield t
            self._dispatch(change(t, CUSTOMERS, customer.customer_id, "r", None, customer.row(), self._guard(customer)))
            t += 3
        for tp in list(population.tradespeople):
            yield t
            self._dispatch(change(t, TRADESPEOPLE, tp.tradesperson_id, "r", None, tp.row(), self._guard(tp)))
            t += 3

    def _updates(self) -> Story:
        count = self._sizing.cdc_updates
        for i in range(count):
            t = self._start + round(self._period * (i + self._rng.random()) / count)
            yield t
            kind = UPDATE_KINDS[i] if i < len(UPDATE_KINDS) else self._rng.choices(UPDATE_KINDS, UPDATE_WEIGHTS)[0]
            self._update(t, kind)

    def _pick(self, people: Sequence[Person], kind: str) -> Person:
        """Someone to update; canaries' personal data never changes, so they are not picked
        for contact changes (their clear-text values stay the ones the report names)."""
        while True:
            person = self._rng.choice(people)
            if not kind.endswith("contact") or not self._is_canary(person):
                return person

    def _update(self, t: int, kind: str) -> None:
        population, rng = self._population, self._rng
        if kind.startswith("customer"):
            customer = self._pick(population.bookable_customers, kind)
            before = customer.row()
            if kind == "customer_region":
                customer.region = population.other_region(customer.region)
            elif kind == "customer_segment":
                customer.segment = "business" if customer.segment == "consumer" else "consumer"
            else:
                customer.phone = f"+1{AREA_CODES[customer.region]}555{rng.randint(200, 9999):04d}"
            customer.updated_ms = t
            event = change(t, CUSTOMERS, customer.customer_id, "u", before, customer.row(), self._guard(customer))
        else:
            tp = self._pick(population.bookable_tradespeople(), kind)
            before = tp.row()
            tp.email = tp.email.replace("@example.net", "@example.com")
            tp.phone = f"+1{AREA_CODES[tp.region]}555{rng.randint(200, 9999):04d}"
            tp.updated_ms = t
            event = change(t, TRADESPEOPLE, tp.tradesperson_id, "u", before, tp.row(), self._guard(tp))
        self._dispatch(event)

    def _customer_signup(self, t: int) -> Story:
        yield t
        customer = self._population.add_customer(t)
        self._dispatch(change(t, CUSTOMERS, customer.customer_id, "c", None, customer.row()))
        self._population.bookable_customers.append(customer)

    def _tradesperson_signup(self, joined: int, vetted: int) -> Story:
        yield joined
        tp = self._population.add_tradesperson(joined)
        self._dispatch(change(joined, TRADESPEOPLE, tp.tradesperson_id, "c", None, tp.row()))
        yield vetted
        before = tp.row()
        tp.background_check, tp.updated_ms = "passed", vetted
        self._dispatch(change(vetted, TRADESPEOPLE, tp.tradesperson_id, "u", before, tp.row()))
        self._population.cells[(tp.trade, tp.region)].append(tp)

    def _erasure(self, t: int) -> Story:
        yield t
        customer = self._erased
        self._dispatch(change(t, CUSTOMERS, customer.customer_id, "d", customer.row(), None, Guard.PROTECTED))
        self._report.deleted[CUSTOMERS].append(customer.customer_id)

    def _failed_check(self, failed: int, deleted: int) -> Story:
        tp = self._failed
        yield failed
        before = tp.row()
        tp.background_check, tp.updated_ms = "failed", failed
        self._dispatch(change(failed, TRADESPEOPLE, tp.tradesperson_id, "u", before, tp.row()))
        yield deleted
        self._dispatch(change(deleted, TRADESPEOPLE, tp.tradesperson_id, "d", tp.row(), None, Guard.PROTECTED))
        self._report.deleted[TRADESPEOPLE].append(tp.tradesperson_id)


def _personal(person: Customer | Tradesperson) -> dict[str, str]:
    """The clear-text personal data of a canary (SPEC §2.4 fields)."""
    name = ("full_name", person.full_name) if isinstance(person, Customer) else ("display_name", person.display_name)
    return dict((name, ("email", person.email), ("phone", person.phone)))
