"""The run: a clock-ordered heap of stories, producing records in production order.

Every actor (the CDC directory, the job-posting process, each job in flight, each late event
or pending redelivery) sits in one heap keyed by the time it next acts. Popping the earliest
and letting it act produces records in the order a real marketplace would emit them, while
memory holds only what is in flight — never the history, never the whole output.

A story is a generator that yields the epoch-ms time it wants to be woken at, and does its
work (dispatching events) when resumed: so a change reads and writes shared state at its
own moment, not when it was planned.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from collections.abc import Iterator
from statistics import fmean

import orjson

from . import gps
from .catalog import CDC_TOPICS, LEGACY_BIDS_PRODUCER, PRODUCERS
from .cdc import ChangeLog, key_bytes
from .clock import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS, rfc3339, to_ms
from .config import SimulationConfig
from .directory import Directory
from .jobs import EN_ROUTE, EN_ROUTE_LATE, SCENARIOS, JobPlan, JobPlanner
from .malformed import Injector
from .market import HOURLY_DEMAND, WEEKDAY_DEMAND
from .model import Event, Guard, IdFactory, Record
from .population import Population
from .report import SimulationReport
from .sizing import EN_ROUTE_RECORDS, SCENARIO_RECORDS_SD, scenario_records, size

Story = Iterator[int]
_Pending = Story | Event | Record
LATE_DELAY_MS = (HOUR_MS, 3 * DAY_MS)  # "hours to days" after the event_time
REDELIVERY_DELAY_MS = (SECOND_MS, 6 * HOUR_MS)  # a producer retry, seconds to hours later


def uuid4(rng: random.Random) -> str:
    """``str(uuid.UUID(int=rng.getrandbits(128), version=4))``, without building the object:
    the version nibble set to 4 and the variant bits to 10, formatted 8-4-4-4-12."""
    n = rng.getrandbits(128) & ~(0xF000 << 64) & ~(0xC000 << 48) | (0x4000 << 64) | (0x8000 << 48)
    h = f"{n:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _demand(ms: int) -> float:
    """Relative posting intensity at ``ms`` (1970-01-01 was a Thursday: weekday 3)."""
    return HOURLY_DEMAND[ms // HOUR_MS % 24] * WEEKDAY_DEMAND[(ms // DAY_MS + 3) % 7]


def scenario_slots(rng: random.Random, jobs: int, instances: int) -> dict[int, str]:
    """Which job (by posting index) carries which planted scenario: ``instances`` of each,
    spread at random over the expected jobs."""
    kinds = [scenario for scenario in SCENARIOS for _ in range(instances)]
    rng.shuffle(kinds)
    positions = sorted(rng.sample(range(max(jobs, len(kinds))), len(kinds)))
    return dict(zip(positions, kinds, strict=True))


class Simulation:
    """Deterministic marketplace traffic for one ``SimulationConfig``.

    ``records()`` streams the records once, in production order; ``report`` is complete when
    the stream is exhausted; ``sizing`` says how big a marketplace the target asked for. Every
    random draw comes from generators seeded with the config's seed (string seeds, hashed the
    same in every process), so a config always yields the same bytes.
    """

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.sizing = size(config)
        self.report = SimulationReport(target_events=config.events, seed=config.seed)

        def stream(name: str) -> random.Random:
            return random.Random(f"tradelake/{config.seed}/{name}")

        self._world = stream("world")  # who does what, when (planning)
        self._noise = stream("noise")  # late, redelivered and malformed traffic
        self._event_ids = stream("event-ids")
        self._gps = stream("gps")
        self._start = to_ms(config.start)
        # Candidate postings come faster than jobs, as thinning by demand keeps only some.
        self._candidate_gap_ms = (
            self.sizing.posting_days * DAY_MS / self.sizing.jobs * fmean(HOURLY_DEMAND) * fmean(WEEKDAY_DEMAND)
        )
        ids = IdFactory()
        snapshot = self._start - 15 * MINUTE_MS
        self._population = Population.generate(
            self._world, ids, self.sizing.customers, self.sizing.tradespeople, snapshot
        )
        self._directory = Directory(
            self._world, self._population, self.sizing, self._start, self._dispatch, self.report
        )
        self._planner = JobPlanner(self._world, self._gps, ids, self._population)
        self._changelog = ChangeLog(stream("wal"))
        self._injector = Injector(self._noise, config.malformed_rate)
        self._heap: list[tuple[int, int, _Pending]] = []
        self._sequence = itertools.count()
        self._out: list[Record] = []
        self._now = 0
        self._horizon = self._start  # the latest event or ping planned so far
        self._consumed = False

    def records(self) -> Iterator[Record]:
        """The records in production order (a stream: it can be consumed once)."""
        if self._consumed:
            raise RuntimeError("Simulation.records() streams once; build a new Simulation to replay it")
        self._consumed = True
        return self._run()

    # -- the scheduler -------------------------------------------------------------------

    def _push(self, at: int, item: _Pending) -> None:
        heapq.heappush(self._heap, (at, next(self._sequence), item))

    def _start_story(self, story: Story) -> None:
        first = next(story, None)
        if first is not None:
            self._push(first, story)

    def _run(self) -> Iterator[Record]:
        for story in (*self._directory.stories(), self._job_source()):
            self._start_story(story)
        heap, out, report = self._heap, self._out, self.report
        while heap:
            self._now, _, item = heapq.heappop(heap)
            if isinstance(item, Event):  # a late event whose time has come
                self._produce(item)
            elif isinstance(item, Record):  # a producer retry
                self._emit(item)
                report.redeliveries_per_topic[item.topic] += 1
            else:
                wake = next(item, None)
                if wake is not None:
                    self._push(wake, item)
            if out:
                yield from out
                out.clear()

    # -- producing -----------------------------------------------------------------------

    def _between(self, bounds: tuple[int, int]) -> int:
        low, high = bounds
        return round(math.exp(self._noise.uniform(math.log(low), math.log(high))))

    def _dispatch(self, event: Event) -> None:
        """An event happens now: produce it, or hold it back if it is one that arrives late."""
        if event.topic not in CDC_TOPICS and self._noise.random() < self.config.late_rate:
            self.report.late_per_topic[event.topic] += 1
            self._push(event.time_ms + self._between(LATE_DELAY_MS), event)
        else:
            self._produce(event)

    def _emit(self, record: Record) -> None:
        self._out.append(record)
        self.report.records_per_topic[record.topic] += 1

    def _envelope(self, event: Event) -> dict[str, object]:
        value: dict[str, object] = {
            "event_id": uuid4(self._event_ids),
            "event_type": event.event_type,
            "event_time": rfc3339(event.time_ms),
            "schema_version": event.version,
            "producer": LEGACY_BIDS_PRODUCER
            if event.event_type == "bid.placed" and event.version == 1
            else PRODUCERS[event.topic],
        }
        value.update(event.fields)
        return value

    def _produce(self, event: Event) -> None:
        """Serialise an event into its record(s): the valid record, a malformed one instead of
        it or besides it, a tombstone after a delete, a redelivery scheduled for later."""
        topic = event.topic
        cdc = topic in CDC_TOPICS
        value = self._changelog.value(event) if cdc else self._envelope(event)
        key = key_bytes(topic, event.key) if cdc else event.key.encode()
        flaw = self._injector.pick(event)
        if flaw is None or event.guard is Guard.CRITICAL:
            record = Record(topic, key, orjson.dumps(value))
            self._emit(record)
            if cdc and event.event_type == "d":
                self._emit(Record(topic, key, None))
                self.report.tombstones_per_topic[topic] += 1
            elif not cdc and self._noise.random() < self.config.redelivery_rate:
                self._push(self._now + self._between(REDELIVERY_DELAY_MS), record)
            if flaw is not None and cdc:  # the extra copy takes its own WAL position
                value = self._changelog.value(event)
        if flaw is not None:
            self._emit(Record(topic, key, self._injector.corrupt(flaw, event, value)))
            self.report.malformed[(topic, flaw)] = self.report.malformed.get((topic, flaw), 0) + 1

    # -- jobs ----------------------------------------------------------------------------

    def _next_posting(self, after: int) -> int:
        """The next job posting: a Poisson process thinned by the hour and weekday demand."""
        t = after
        while True:
            t += 1 + round(self._world.expovariate(1 / self._candidate_gap_ms))
            if self._world.random() < _demand(t):
                return t

    def _job_source(self) -> Story:
        """Posts jobs until the record budget is spent and every planted scenario is placed,
        tops the budget up with idle GPS traffic, and ends with the jobs still en route.

        Room is kept for the scenarios still to come (their expected size plus two standard
        deviations) and the jobs en route, so that at 1 000 events, where they are most of the
        jobs, placing them all does not overshoot the target."""
        budget, planned = self.sizing.job_records - EN_ROUTE_RECORDS * len(EN_ROUTE), 0
        slots = scenario_slots(self._world, self.sizing.jobs, self.sizing.scenario_instances)
        expected = sum(scenario_records(s) for s in slots.values())
        t, index, spent = self._start, 0, False
        while slots or not spent:
            t = self._next_posting(t)
            yield t
            scenario = slots.pop(index, None)
            if scenario is None and spent:
                scenario = slots.pop(min(slots))
            if scenario is not None:
                expected -= scenario_records(scenario)
            index += 1
            plan = self._planner.plan(t, scenario)
            reserved = expected + 2 * SCENARIO_RECORDS_SD * math.sqrt(len(slots))
            if scenario is None and planned + plan.records + reserved > budget:
                spent = True
                continue
            planned += plan.records
            self._commit(plan)
        self._idle_traffic(t, budget - planned)
        self._en_route(t)

    def _en_route(self, after: int) -> None:
        """The jobs the stream ends with: posted two days before the latest moment planned so
        far, their tradespeople (all different) driving to the site after it, so each truck's
        latest ping is on the way to its appointment."""
        busy: set[str] = set()
        for kind in EN_ROUTE:
            posted = max(after + MINUTE_MS, self._horizon - 2 * DAY_MS)
            # a job nobody could be hired for is dropped (never committed) and another planted
            plans = (self._planner.plan_en_route(posted, kind == EN_ROUTE_LATE, self._horizon, busy) for _ in range(50))
            plan = next((p for p in plans if p is not None), None)
            if plan is None:  # no free tradesperson left anywhere: the stream ends with fewer trucks en route
                continue
            assert plan.en_route is not None
            appointment_id, tradesperson_id, late = plan.en_route
            busy.add(tradesperson_id)
            self.report.en_route.append(appointment_id)
            if late:
                self.report.running_late.append(appointment_id)
            self._commit(plan)

    def _commit(self, plan: JobPlan) -> None:
        self._horizon = max(self._horizon, plan.until_ms)
        for status, gateway_ref in plan.breaks:
            self.report.reconciliation_breaks[status].append(gateway_ref)
        for kind, entity_id in plan.violations:
            self.report.lifecycle_violations[kind].append(entity_id)
        # The job's own events and each GPS track are separate stories: the heap interleaves them.
        for events in (iter(plan.events), *plan.tracks):
            self._start_story(self._play(events))

    def _play(self, events: Iterator[Event]) -> Story:
        for event in events:
            yield event.time_ms
            self._dispatch(event)

    def _idle_traffic(self, after: int, count: int) -> None:
        """``count`` GPS pings of tradespeople driving between jobs (no appointment), each
        drive booked after the driver's last visit."""
        tradespeople = self._population.bookable_tradespeople()
        while count > 0:
            pings = min(count, self._world.randint(8, 30))
            tp = self._world.choice(tradespeople)
            begin = max(after, tp.busy_until_ms) + self._world.randint(5 * MINUTE_MS, 90 * MINUTE_MS)
            tp.busy_until_ms = begin + pings * gps.PING_INTERVAL_MS + 45 * MINUTE_MS
            self._horizon = max(self._horizon, begin + pings * gps.PING_INTERVAL_MS + gps.JITTER_MS)
            self._start_story(self._play(gps.idle(self._gps, tp.tradesperson_id, tp.home, begin, pings)))
            count -= pings
