"""One job's whole story, planned the moment it is posted.

posted → leads → bids (v1 or v2) → withdrawals → accepted/declined offers or a cancellation →
appointment (rescheduled, cancelled) → drive, arrival, work (GPS pings) → completion →
invoice → authorization and capture → gateway settlement → payout → refunds → review.

Planning a job as a whole keeps its timeline coherent (the invoice follows the accepted bid,
the capture the authorization) and tells the run, before any of it is produced, how many
records the job will cost. Planted scenarios bend one job's story into a reconciliation
break or a lifecycle violation, and the plan says which, for the report.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import gps
from .catalog import (
    APPOINTMENTS,
    BIDS,
    INVOICES,
    JOBS,
    LEADS,
    LEDGER,
    OFFERS,
    REVIEWS,
    SETTLEMENTS,
    URGENCIES,
    currency_of,
)
from .clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, date_iso, rfc3339
from .market import (
    CAD_PER_USD,
    PLATFORM_COMMISSION,
    REGION_PRICE_FACTOR,
    TRADE_PRICE_USD,
    TRADE_VISIT_MINUTES,
    URGENCY_PRICE_FACTOR,
    URGENCY_WEIGHTS,
    UTC_OFFSET_HOURS,
    gateway_fee_cents,
)
from .model import Event, Guard, IdFactory
from .population import Population, Tradesperson
from .report import RECONCILIATION_STATUSES

MISSING_AT_GATEWAY, MISSING_IN_LEDGER, DUPLICATE_CAPTURE, AMOUNT_MISMATCH, UNCAPTURED, INVOICE_MISMATCH = (
    RECONCILIATION_STATUSES
)
# A visit the customer cancelled but the tradesperson made anyway, then reviewed in anger:
# "appointment started after it was cancelled" and "review of a job that never completed".
CANCELLED_VISIT = "cancelled_visit"
SCENARIOS: tuple[str, ...] = (*RECONCILIATION_STATUSES, CANCELLED_VISIT)
# The other three lifecycle violations ride on reconciliation scenarios they cannot disturb,
# so a 1000-event run still fits every planted case:
#   amount_mismatch   + capture_without_authorization (captured, no authorization event)
#   missing_at_gateway + payout_above_captured        (payout = captured + commission)
#   invoice_mismatch  + refund_above_captured         (the invoice amount refunded, > captured)

# Jobs the stream ends in the middle of: the tradesperson is driving to the site when the last
# records are produced, running late (the ETA is past window_start + 15 min) or on time.
EN_ROUTE_LATE = "en_route_late"
EN_ROUTE_ON_TIME = "en_route_on_time"
EN_ROUTE: tuple[str, ...] = (EN_ROUTE_LATE, EN_ROUTE_ON_TIME, EN_ROUTE_LATE, EN_ROUTE_ON_TIME)

# Optional event types owed until one job has shown each, so small runs contain them all.
SHOWCASE: tuple[str, ...] = ("v1_bid", "withdrawn", "declined", "rescheduled", "review_removed")

V1_SHARE = 0.30  # USD bids still sent by the legacy app (major units)
WITHDRAW_RATE = 0.08
CANCEL_BEFORE_HIRE_RATE = 0.06
RESCHEDULE_RATE = 0.12
CUSTOMER_CANCEL_RATE = 0.03
PLATFORM_CANCEL_RATE = 0.01
NATURAL_DECLINE_RATE = 0.03  # card declined at authorization: no gateway_ref, a retry follows
REFUND_RATE = 0.05
CHARGEBACK_RATE = 0.005
FEE_ADJUSTMENT_RATE = 0.005
REVIEW_RATE = 0.70
REVIEW_REMOVAL_RATE = 0.03
CHARGEBACK_FEE_CENTS = 1500

JOB_CANCEL_REASONS: tuple[str | None, ...] = ("found_another_provider", "no_longer_needed", "budget_exceeded", None)
DECLINE_REASONS: tuple[str, ...] = ("card_declined", "insufficient_funds", "expired_card")
REMOVAL_REASONS: tuple[str, ...] = ("spam", "offensive_language", "not_a_genuine_customer", "conflict_of_interest")
COMMENTS: dict[int, tuple[str, ...]] = {
    1: ("Never again.", "Showed up late and left a mess.", "Did not fix the problem."),
    2: ("Overpriced for what was done.", "Had to call twice to get an answer."),
    3: ("Job done, communication could be better.", "Okay work, arrived late."),
    4: ("Good work, fair price.", "Solid job, would hire again.", "Quick and tidy."),
    5: ("Fantastic, highly recommend!", "On time, explained everything, spotless.", "Best tradesperson we've had."),
}
URGENCY_DAYS: dict[str, tuple[int, int]] = {"standard": (1, 6), "urgent": (1, 2), "emergency": (1, 1)}


@dataclass
class JobPlan:
    """Everything a job will produce: non-GPS events in time order, lazy GPS tracks, how many
    records that makes, and what it plants."""

    events: list[Event]
    tracks: list[Iterator[Event]]
    records: int
    breaks: list[tuple[str, str]] = field(default_factory=list)  # (status, gateway_ref)
    violations: list[tuple[str, str]] = field(default_factory=list)  # (kind, id)
    until_ms: int = 0  # the plan's last event or ping
    en_route: tuple[str, str, bool] | None = None  # (appointment_id, tradesperson_id, running late)


class JobPlanner:
    """Plans jobs one after another against the shared population."""

    def __init__(self, rng: random.Random, gps_rng: random.Random, ids: IdFactory, population: Population) -> None:
        self.rng = rng
        self.gps_rng = gps_rng
        self.ids = ids
        self.population = population
        self._owed = list(SHOWCASE)
        self._instances = dict.fromkeys(SCENARIOS, 0)

    def plan(self, posted_ms: int, scenario: str | None) -> JobPlan:
        """The plan of a job posted at ``posted_ms``, bent by ``scenario`` if one is given."""
        instance = 0
        if scenario is not None:
            instance = self._instances[scenario]
            self._instances[scenario] += 1
        return _Job(self, posted_ms, scenario, instance).plan()

    def plan_en_route(self, posted_ms: int, late: bool, horizon_ms: int, exclude: set[str]) -> JobPlan | None:
        """A job whose tradesperson (none of ``exclude``) sets off to the site after
        ``horizon_ms`` and is still driving when the stream ends: on time, or running late."""
        job = _Job(self, posted_ms, EN_ROUTE_LATE if late else EN_ROUTE_ON_TIME, 0, exclude)
        return job.plan_en_route(late, horizon_ms)

    def take_showcase(self, currency: str) -> frozenset[str]:
        """The optional event types still owed that a job in ``currency`` can show (v1 bids are
        USD only, their amount carries no currency)."""
        taken = [f for f in self._owed if f != "v1_bid" or currency == "USD"]
        self._owed = [f for f in self._owed if f not in taken]
        return frozenset(taken)


class _Job:
    """The planning of one job; methods follow the story's phases."""

    def __init__(
        self, planner: JobPlanner, posted_ms: int, scenario: str | None, instance: int, exclude: set[str] | None = None
    ) -> None:
        self.planner = planner
        self.rng = rng = planner.rng
        self.ids = planner.ids
        self.posted = posted_ms
        self.scenario = scenario
        self.instance = instance
        population = planner.population
        self.customer = rng.choice(population.bookable_customers)
        self.region = self.customer.region
        self.trade = population.pick_trade(self.region)
        self.currency = currency_of(self.region)
        self.site = population.site_near(self.region)
        self.job_id = self.ids.next("job", 6)
        self.exclude = exclude or set()
        planted_alone = scenario == CANCELLED_VISIT or scenario in EN_ROUTE
        self.force = frozenset() if planted_alone else planner.take_showcase(self.currency)
        # Planted scenarios and showcase jobs must reach their end: nothing may cancel them.
        self.must_finish = scenario is not None or bool(self.force)
        self.events: list[Event] = []
        self.tracks: list[Iterator[Event]] = []
        self.pings = 0
        self.until_ms = posted_ms
        self.en_route: tuple[str, str, bool] | None = None
        self.breaks: list[tuple[str, str]] = []
        self.violations: list[tuple[str, str]] = []
        self.urgency = "standard"
        self.fair_cents = 0.0

    # -- helpers -------------------------------------------------------------------------

    def add(
        self, time_ms: int, topic: str, key: str, event_type: str, fields: dict[str, Any], version: int = 1
    ) -> None:
        if self.scenario is not None:
            guard = Guard.PROTECTED
        elif topic in (INVOICES, LEDGER, SETTLEMENTS) or event_type == "job.completed":
            guard = Guard.CRITICAL
        else:
            guard = Guard.FREE
        self.events.append(Event(time_ms, topic, key, event_type, version, fields, guard))

    def between(self, low_ms: int, high_ms: int) -> int:
        """A log-uniform delay: most waits are short, a few are long."""
        return round(math.exp(self.rng.uniform(math.log(low_ms), math.log(high_ms))))

    def plan(self) -> JobPlan:
        self.post()
        hired = self.bidding()
        if hired is not None:
            tradesperson, amount_cents, decided = hired
            done = self.visits(tradesperson, decided)
            if done is not None:
                self.billing(tradesperson, amount_cents, done)
        return self.finish()

    def plan_en_route(self, late: bool, horizon_ms: int) -> JobPlan | None:
        """None when nobody could be hired (a small population's trade × region may have no free
        tradesperson): the caller plants another job."""
        self.post()
        hired = self.bidding()
        if hired is None:
            return None
        tradesperson, _, decided = hired
        self.drive_in(tradesperson, decided, late, horizon_ms)
        return self.finish()

    def finish(self) -> JobPlan:
        self.events.sort(key=lambda e: e.time_ms)
        until = max(self.until_ms, self.events[-1].time_ms)
        return JobPlan(
            self.events, self.tracks, len(self.events) + self.pings, self.breaks, self.violations, until, self.en_route
        )

    # -- posting and bidding -------------------------------------------------------------

    def post(self) -> None:
        rng = self.rng
        self.urgency = rng.choices(URGENCIES, [URGENCY_WEIGHTS[u] for u in URGENCIES])[0]
        low, high = TRADE_PRICE_USD[self.trade]
        usd = math.exp(rng.uniform(math.log(low), math.log(high)))
        usd *= REGION_PRICE_FACTOR[self.region] * URGENCY_PRICE_FACTOR[self.urgency]
        self.fair_cents = usd * 100 * (CAD_PER_USD if self.currency == "CAD" else 1.0)
        budget = None if rng.random() < 0.3 else max(5000, round(self.fair_cents * rng.uniform(0.7, 1.6) / 5000) * 5000)
        self.add(
            self.posted,
            JOBS,
            self.job_id,
            "job.posted",
            {
                "job_id": self.job_id,
                "customer_id": self.customer.customer_id,
                "trade": self.trade,
                "region": self.region,
                "urgency": self.urgency,
                "budget_cents": budget,
                "currency": self.currency,
                "site_lat": round(self.site[0], 6),
                "site_lon": round(self.site[1], 6),
            },
        )

    def bid_cents(self, tradesperson: Tradesperson) -> int:
        """A quote around the job's fair price, in round dollars (some ending in .99)."""
        quote = self.fair_cents * tradesperson.price_factor * math.exp(self.rng.gauss(0, 0.1))
        dollars = max(40, round(quote / 500) * 5)
        return dollars * 100 - 1 if self.rng.random() < 0.2 else dollars * 100

    def bidding(self) -> tuple[Tradesperson, int, int] | None:
        """Leads, bids, withdrawals and the customer's choice: (hired, amount, decided at)."""
        rng, job_id = self.rng, self.job_id
        cell = self.planner.population.cells[(self.trade, self.region)]
        pool = [tp for tp in cell if tp.tradesperson_id not in self.exclude]
        wanted = rng.randint(2, 5)
        if self.force & {"withdrawn", "declined"}:
            wanted = max(wanted, 4)
        bids: list[tuple[int, str, Tradesperson, int]] = []
        for i, tradesperson in enumerate(rng.sample(pool, min(wanted, len(pool)))):
            tp_id = tradesperson.tradesperson_id
            sent = self.posted + rng.randint(MINUTE_MS, 15 * MINUTE_MS)
            lead = {"lead_id": self.ids.next("lead", 7), "job_id": job_id, "tradesperson_id": tp_id}
            self.add(sent, LEADS, job_id, "lead.sent", lead)
            forced = bool(self.force) or (self.scenario is not None and i == 0)
            if not forced and rng.random() >= tradesperson.bid_probability:
                continue
            response = tradesperson.response_minutes * MINUTE_MS * math.exp(rng.gauss(0, 0.6))
            placed = sent + round(min(10 * HOUR_MS, max(2 * MINUTE_MS, response)))
            bid_id = self.ids.next("bid", 7)
            cents = self.bid_cents(tradesperson)
            head = {"bid_id": bid_id, "job_id": job_id, "tradesperson_id": tp_id}
            legacy = self.currency == "USD" and (("v1_bid" in self.force and not bids) or rng.random() < V1_SHARE)
            if legacy:
                self.add(placed, BIDS, job_id, "bid.placed", head | {"amount": cents / 100}, version=1)
            else:
                v2 = {"amount_cents": cents, "currency": self.currency, "includes_materials": rng.random() < 0.45}
                self.add(placed, BIDS, job_id, "bid.placed", head | v2, version=2)
            bids.append((placed, bid_id, tradesperson, cents))
        if not bids:
            reason = {"job_id": job_id, "customer_id": self.customer.customer_id, "reason": "no_bids"}
            self.add(self.posted + rng.randint(DAY_MS, 3 * DAY_MS), JOBS, job_id, "job.cancelled", reason)
            return None

        decided = max(b[0] for b in bids) + rng.randint(30 * MINUTE_MS, 20 * HOUR_MS)
        withdrawn = [rng.random() < WITHDRAW_RATE for _ in bids]
        if "withdrawn" in self.force:
            withdrawn[-1] = True
        if all(withdrawn):
            withdrawn[0] = False  # somebody is still in
        for (placed, bid_id, tradesperson, _), gone in zip(bids, withdrawn, strict=True):
            if gone:
                at = placed + round((decided - placed) * rng.uniform(0.1, 0.9))
                head = {"bid_id": bid_id, "job_id": job_id, "tradesperson_id": tradesperson.tradesperson_id}
                self.add(at, BIDS, job_id, "bid.withdrawn", head)
        active = [b for b, gone in zip(bids, withdrawn, strict=True) if not gone]

        if not self.must_finish and rng.random() < CANCEL_BEFORE_HIRE_RATE:
            reason = {
                "job_id": job_id,
                "customer_id": self.customer.customer_id,
                "reason": rng.choice(JOB_CANCEL_REASONS),
            }
            self.add(decided, JOBS, job_id, "job.cancelled", reason)
            return None
        cheapest = min(b[3] for b in active)
        weights = [math.exp(-3 * (cents / cheapest - 1) + 0.6 * tp.quality) for _, _, tp, cents in active]
        winner = rng.choices(range(len(active)), weights)[0]
        for i, (_, bid_id, tradesperson, _) in enumerate(active):
            offer = {
                "offer_id": self.ids.next("off", 7),
                "bid_id": bid_id,
                "job_id": job_id,
                "customer_id": self.customer.customer_id,
                "tradesperson_id": tradesperson.tradesperson_id,
            }
            if i == winner:
                self.add(decided, OFFERS, job_id, "offer.accepted", offer)
            else:
                self.add(decided + rng.randint(5 * SECOND_MS, 5 * MINUTE_MS), OFFERS, job_id, "offer.declined", offer)
        _, _, hired, cents = active[winner]
        return hired, cents, decided

    # -- appointments and the visit ------------------------------------------------------

    def window(self, tradesperson: Tradesperson, after_ms: int, min_days: int, max_days: int) -> tuple[int, int]:
        """A 2-4 h arrival window starting 08:00-15:00 local time, ``min_days``..``max_days``
        after ``after_ms``, once the tradesperson's previous booked visit is over."""
        offset = UTC_OFFSET_HOURS[self.region] * HOUR_MS
        day = (after_ms + offset) // DAY_MS + self.rng.randint(min_days, max_days)
        start = day * DAY_MS + self.rng.randint(8, 15) * HOUR_MS - offset
        while start < tradesperson.busy_until_ms:
            day += 1
            start = day * DAY_MS + self.rng.randint(8, 15) * HOUR_MS - offset
        return start, start + self.rng.randint(2, 4) * HOUR_MS

    def appointment(self, event_type: str, at: int, appointment_id: str, tp_id: str, **extra: str) -> None:
        fields = {"appointment_id": appointment_id, "job_id": self.job_id, "tradesperson_id": tp_id, **extra}
        self.add(at, APPOINTMENTS, self.job_id, event_type, fields)

    def schedule(self, event_type: str, at: int, appointment_id: str, tp_id: str, window: tuple[int, int]) -> None:
        start, end = window
        self.appointment(event_type, at, appointment_id, tp_id, window_start=rfc3339(start), window_end=rfc3339(end))

    def arrival(self, tradesperson: Tradesperson, window: tuple[int, int]) -> int:
        """On time (by the window start + 15 min) with the tradesperson's punctuality, otherwise
        later in the window, and now and then up to an hour after it."""
        rng = self.rng
        start, end = window
        draw = rng.random()
        if draw < tradesperson.punctuality:
            return start + rng.randint(-12 * MINUTE_MS, 14 * MINUTE_MS)
        if draw < tradesperson.punctuality + (1 - tradesperson.punctuality) * 0.7:
            return start + rng.randint(16 * MINUTE_MS, end - start - 10 * MINUTE_MS)
        return end + rng.randint(MINUTE_MS, 60 * MINUTE_MS)

    def canceller(self, tradesperson: Tradesperson) -> str | None:
        draw = self.rng.random()
        if draw < tradesperson.cancel_probability:
            return "tradesperson"
        draw -= tradesperson.cancel_probability
        if draw < CUSTOMER_CANCEL_RATE:
            return "customer"
        if draw < CUSTOMER_CANCEL_RATE + PLATFORM_CANCEL_RATE:
            return "platform"
        return None

    def track(self, tradesperson: Tradesperson, appointment_id: str, arrive: int, leave: int) -> None:
        """Book the visit's GPS pings, and the tradesperson until well after they drove away."""
        drive = gps.drive_ms(self.rng, tradesperson.home, self.site)
        away = self.rng.randint(3, 8)
        count, pings = gps.visit(
            self.planner.gps_rng,
            tradesperson.tradesperson_id,
            appointment_id,
            tradesperson.home,
            self.site,
            arrive - drive,
            arrive,
            leave,
            away,
        )
        self.tracks.append(pings)
        self.pings += count
        self.until_ms = max(self.until_ms, leave + (away + 1) * gps.PING_INTERVAL_MS + gps.JITTER_MS)
        free = leave + (away + 1) * gps.PING_INTERVAL_MS + 45 * MINUTE_MS
        tradesperson.busy_until_ms = max(tradesperson.busy_until_ms, free)

    def drive_in(self, tradesperson: Tradesperson, decided: int, late: bool, horizon_ms: int) -> None:
        """Scheduled, then on the road after ``horizon_ms`` (so these are the truck's latest
        pings), cut off 40-70 % of the way. Running late: the planned arrival is 30-50 minutes
        after window_start, well past the 15 minutes' grace; on time: 5-20 minutes before it."""
        rng, tp_id = self.rng, tradesperson.tradesperson_id
        booked = decided + rng.randint(5 * MINUTE_MS, 3 * HOUR_MS)
        appointment_id = self.ids.next("apt", 6)
        drive = gps.drive_ms(rng, tradesperson.home, self.site)
        depart = max(horizon_ms, booked + 10 * HOUR_MS) + rng.randint(MINUTE_MS, 20 * MINUTE_MS)
        arrive = depart + drive
        lateness = rng.randint(30, 50) if late else -rng.randint(5, 20)
        start = arrive - lateness * MINUTE_MS
        self.schedule("appointment.scheduled", booked, appointment_id, tp_id, (start, start + 3 * HOUR_MS))
        cut = depart + round(drive * rng.uniform(0.4, 0.7))
        count, pings = gps.en_route(
            self.planner.gps_rng, tp_id, appointment_id, tradesperson.home, self.site, depart, arrive, cut
        )
        self.tracks.append(pings)
        self.pings += count
        self.until_ms = cut + gps.JITTER_MS
        self.en_route = (appointment_id, tp_id, late)

    def visits(self, tradesperson: Tradesperson, decided: int) -> int | None:
        """Scheduling through completion; the completion time, or None if the job ends here."""
        rng, tp_id = self.rng, tradesperson.tradesperson_id
        booked = decided + rng.randint(5 * MINUTE_MS, 3 * HOUR_MS)
        appointment_id = self.ids.next("apt", 6)
        window = self.window(tradesperson, booked, *URGENCY_DAYS[self.urgency])
        self.schedule("appointment.scheduled", booked, appointment_id, tp_id, window)
        last = booked
        if "rescheduled" in self.force or (self.scenario != CANCELLED_VISIT and rng.random() < RESCHEDULE_RATE):
            last = booked + round((window[0] - booked) * rng.uniform(0.2, 0.9))
            window = self.window(tradesperson, window[0], 1, 3)
            self.schedule("appointment.rescheduled", last, appointment_id, tp_id, window)

        if self.scenario == CANCELLED_VISIT:
            self.cancelled_visit(tradesperson, appointment_id, last, window)
            return None
        who = None if self.must_finish else self.canceller(tradesperson)
        if who is not None:
            cancelled = last + round((window[0] - last) * rng.uniform(0.1, 0.95))
            self.appointment("appointment.cancelled", cancelled, appointment_id, tp_id, cancelled_by=who)
            if rng.random() < 0.5:
                reason = {
                    "job_id": self.job_id,
                    "customer_id": self.customer.customer_id,
                    "reason": "appointment_cancelled",
                }
                self.add(
                    cancelled + rng.randint(5 * MINUTE_MS, 2 * HOUR_MS), JOBS, self.job_id, "job.cancelled", reason
                )
                return None
            booked = cancelled + rng.randint(HOUR_MS, DAY_MS)
            appointment_id = self.ids.next("apt", 6)
            window = self.window(tradesperson, booked, 1, 4)
            self.schedule("appointment.scheduled", booked, appointment_id, tp_id, window)

        arrive = self.arrival(tradesperson, window)
        low, high = TRADE_VISIT_MINUTES[self.trade]
        leave = arrive + rng.randint(low * MINUTE_MS, high * MINUTE_MS)
        self.track(tradesperson, appointment_id, arrive, leave)
        self.appointment("appointment.started", arrive, appointment_id, tp_id)
        self.appointment("appointment.completed", leave, appointment_id, tp_id)
        return leave

    def cancelled_visit(
        self, tradesperson: Tradesperson, appointment_id: str, last: int, window: tuple[int, int]
    ) -> None:
        """The customer cancels; the tradesperson comes anyway, the job is cancelled on the
        doorstep, and the customer reviews a job that never happened."""
        rng, tp_id = self.rng, tradesperson.tradesperson_id
        cancelled = last + round((window[0] - last) * rng.uniform(0.3, 0.9))
        self.appointment("appointment.cancelled", cancelled, appointment_id, tp_id, cancelled_by="customer")
        arrive = self.arrival(tradesperson, window)
        leave = arrive + rng.randint(3 * MINUTE_MS, 12 * MINUTE_MS)
        self.track(tradesperson, appointment_id, arrive, leave)
        self.appointment("appointment.started", arrive, appointment_id, tp_id)
        self.violations.append(("started_after_cancelled", appointment_id))
        gone = leave + rng.randint(MINUTE_MS, 15 * MINUTE_MS)
        reason = {"job_id": self.job_id, "customer_id": self.customer.customer_id, "reason": "appointment_cancelled"}
        self.add(gone, JOBS, self.job_id, "job.cancelled", reason)
        review_id = self.review(gone + self.between(HOUR_MS, 2 * DAY_MS), tradesperson, rng.choice((1, 1, 2)), False)
        self.violations.append(("review_of_uncompleted_job", review_id))

    # -- money ---------------------------------------------------------------------------

    def ledger(self, at: int, payment_id: str, event_type: str, fields: dict[str, Any]) -> None:
        self.add(at, LEDGER, payment_id, event_type, {"payment_id": payment_id, "job_id": self.job_id, **fields})

    def settle(self, at: int, gateway_ref: str, kind: str, gross_cents: int, fee_cents: int) -> None:
        """A line of the gateway's settlement feed, in that day's payout batch."""
        line = {
            "line_id": self.ids.next("sl", 7),
            "gateway_ref": gateway_ref,
            "type": kind,
            "gross_cents": gross_cents,
            "fee_cents": fee_cents,
            "net_cents": gross_cents - fee_cents,
            "currency": self.currency,
            "payout_batch_id": "pb_" + date_iso(at).replace("-", ""),
        }
        self.add(at, SETTLEMENTS, gateway_ref, "settlement.line", line)

    def billing(self, tradesperson: Tradesperson, bid_cents: int, done: int) -> None:
        """Completion, invoice, payment, settlement, payout, refunds and the review, with the
        planted reconciliation scenario (if any) bending exactly one of them."""
        rng, scenario, ids = self.rng, self.scenario, self.ids
        tp_id, customer_id = tradesperson.tradesperson_id, self.customer.customer_id
        completed = done + rng.randint(MINUTE_MS, 20 * MINUTE_MS)
        done_fields = {"job_id": self.job_id, "customer_id": customer_id, "tradesperson_id": tp_id}
        self.add(completed, JOBS, self.job_id, "job.completed", done_fields)

        issued = completed + self.between(5 * MINUTE_MS, 6 * HOUR_MS)
        invoice_cents = bid_cents if rng.random() < 0.6 else int(round(bid_cents * rng.uniform(0.92, 1.25), -2))
        invoice_id = ids.next("inv", 6)
        invoice = {
            "invoice_id": invoice_id,
            "job_id": self.job_id,
            "customer_id": customer_id,
            "tradesperson_id": tp_id,
            "amount_cents": invoice_cents,
            "currency": self.currency,
            "due_date": date_iso(issued + 14 * DAY_MS),
        }
        self.add(issued, INVOICES, self.job_id, "invoice.issued", invoice)
        captured_cents = invoice_cents
        if scenario == INVOICE_MISMATCH:  # the customer paid the quote, not the invoice
            captured_cents -= max(100, int(round(invoice_cents * rng.uniform(0.05, 0.2), -2)))

        paid = issued + self.between(30 * MINUTE_MS, 72 * HOUR_MS)
        if scenario is None and rng.random() < NATURAL_DECLINE_RATE:
            reason = {"invoice_id": invoice_id, "reason": rng.choice(DECLINE_REASONS)}
            self.ledger(paid, ids.next("pay", 6), "payment.failed", reason)
            paid += self.between(HOUR_MS, 36 * HOUR_MS)
        if scenario == UNCAPTURED:  # authorized, then the capture failed (or never came)
            payment_id, gateway_ref = ids.next("pay", 6), ids.gateway_ref()
            money = {"invoice_id": invoice_id, "customer_id": customer_id, "amount_cents": captured_cents}
            self.ledger(
                paid, payment_id, "payment.authorized", money | {"currency": self.currency, "gateway_ref": gateway_ref}
            )
            if self.instance % 2 == 0:
                failure = {"invoice_id": invoice_id, "reason": "capture_declined"}
                self.ledger(paid + rng.randint(20 * SECOND_MS, 10 * MINUTE_MS), payment_id, "payment.failed", failure)
            self.breaks.append((UNCAPTURED, gateway_ref))
            paid += self.between(2 * HOUR_MS, 48 * HOUR_MS)

        payment_id, gateway_ref = ids.next("pay", 6), ids.gateway_ref()
        money = {
            "invoice_id": invoice_id,
            "customer_id": customer_id,
            "amount_cents": captured_cents,
            "currency": self.currency,
            "gateway_ref": gateway_ref,
        }
        if scenario == AMOUNT_MISMATCH:
            self.violations.append(("capture_without_authorization", payment_id))
        else:
            self.ledger(paid, payment_id, "payment.authorized", money)
        captured = paid + rng.randint(2 * SECOND_MS, 10 * MINUTE_MS)
        if scenario != MISSING_IN_LEDGER:
            self.ledger(captured, payment_id, "payment.captured", money)
            if scenario == DUPLICATE_CAPTURE and self.instance % 2 == 0:  # the ledger posted it twice
                self.ledger(captured + rng.randint(SECOND_MS, 90 * SECOND_MS), payment_id, "payment.captured", money)
        settled = captured + rng.randint(2 * HOUR_MS, 30 * HOUR_MS)
        if scenario != MISSING_AT_GATEWAY:
            charged = captured_cents
            if scenario == AMOUNT_MISMATCH:
                charged += rng.choice((-1, 1)) * rng.randint(1, 500)
            self.settle(settled, gateway_ref, "charge", charged, gateway_fee_cents(charged))
            if scenario == DUPLICATE_CAPTURE and self.instance % 2 == 1:  # the gateway charged twice
                again = settled + rng.randint(MINUTE_MS, 20 * HOUR_MS)
                self.settle(again, gateway_ref, "charge", charged, gateway_fee_cents(charged))
        if scenario in RECONCILIATION_STATUSES and scenario != UNCAPTURED:
            self.breaks.append((scenario, gateway_ref))

        if scenario != MISSING_IN_LEDGER:
            commission = round(captured_cents * PLATFORM_COMMISSION)
            payout_id = ids.next("po", 6)
            payout_cents = (
                captured_cents + commission if scenario == MISSING_AT_GATEWAY else captured_cents - commission
            )
            payout = {"payout_id": payout_id, "payment_id": payment_id, "job_id": self.job_id, "tradesperson_id": tp_id}
            payout |= {"amount_cents": payout_cents, "currency": self.currency}
            self.add(captured + rng.randint(DAY_MS, 3 * DAY_MS), LEDGER, payment_id, "payout.sent", payout)
            if scenario == MISSING_AT_GATEWAY:
                self.violations.append(("payout_above_captured", payout_id))

        refund_cents = 0
        if scenario == INVOICE_MISMATCH:
            refund_cents = invoice_cents
        elif scenario is None and rng.random() < REFUND_RATE:
            refund_cents = captured_cents if rng.random() < 0.4 else round(captured_cents * rng.uniform(0.1, 0.6))
        if refund_cents:
            refunded = captured + rng.randint(DAY_MS, 14 * DAY_MS)
            refund_id = ids.next("rf", 5)
            refund = {"refund_id": refund_id, "amount_cents": refund_cents, "currency": self.currency}
            self.ledger(refunded, payment_id, "payment.refunded", refund | {"gateway_ref": gateway_ref})
            self.settle(refunded + rng.randint(2 * HOUR_MS, 30 * HOUR_MS), gateway_ref, "refund", -refund_cents, 0)
            if scenario == INVOICE_MISMATCH:
                self.violations.append(("refund_above_captured", refund_id))
        if scenario is None and rng.random() < CHARGEBACK_RATE:
            disputed = captured + rng.randint(7 * DAY_MS, 30 * DAY_MS)
            self.settle(disputed, gateway_ref, "chargeback", -captured_cents, CHARGEBACK_FEE_CENTS)
        if scenario is None and rng.random() < FEE_ADJUSTMENT_RATE:
            self.settle(
                settled + rng.randint(DAY_MS, 10 * DAY_MS), gateway_ref, "fee_adjustment", 0, rng.randint(1, 50)
            )

        removed = "review_removed" in self.force
        if removed or rng.random() < REVIEW_RATE:
            rating = min(5, max(1, round(rng.gauss(4.35 + 0.45 * tradesperson.quality, 0.75))))
            at = completed + self.between(2 * HOUR_MS, 7 * DAY_MS)
            self.review(at, tradesperson, rating, removed or rng.random() < REVIEW_REMOVAL_RATE)

    def review(self, at: int, tradesperson: Tradesperson, rating: int, removed: bool) -> str:
        rng, tp_id = self.rng, tradesperson.tradesperson_id
        review_id = self.ids.next("rev", 6)
        review = {
            "review_id": review_id,
            "job_id": self.job_id,
            "customer_id": self.customer.customer_id,
            "tradesperson_id": tp_id,
            "rating": rating,
            "comment": None if rng.random() < 0.4 else rng.choice(COMMENTS[rating]),
        }
        self.add(at, REVIEWS, tp_id, "review.submitted", review)
        if removed:
            removal = {"review_id": review_id, "job_id": self.job_id, "tradesperson_id": tp_id}
            removal["reason"] = rng.choice(REMOVAL_REASONS)
            self.add(at + rng.randint(6 * HOUR_MS, 5 * DAY_MS), REVIEWS, tp_id, "review.removed", removal)
        return review_id
