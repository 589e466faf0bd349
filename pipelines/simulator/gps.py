"""Truck GPS pings: every ~30 s while a tradesperson drives to a job, works on site, and
drives away. Pings are generated lazily (they are ~80 % of all traffic), but their number is
fixed up front so the run can keep to its record budget.

A moving truck's reported speed is the speed its positions imply (± 15 %), so an ETA computed
from recent speed and the distance left (ops.truck_positions) predicts the arrival.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator

from .catalog import GPS
from .clock import HOUR_MS, MINUTE_MS
from .model import Event

PING_INTERVAL_MS = 30_000
JITTER_MS = 2_500


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Equirectangular distance: plenty within one metro area."""
    mean_lat = math.radians((a[0] + b[0]) / 2)
    return math.hypot((b[0] - a[0]) * 110.57, (b[1] - a[1]) * 111.32 * math.cos(mean_lat))


def drive_ms(rng: random.Random, origin: tuple[float, float], destination: tuple[float, float]) -> int:
    """Minutes of city driving for the distance, kept between 4 and 15 (tracking starts when
    the tradesperson taps "on my way", usually after a stop nearby)."""
    minutes = min(15.0, max(4.0, distance_km(origin, destination) * rng.uniform(1.2, 1.8)))
    return round(minutes * MINUTE_MS)


def ping_count(duration_ms: int) -> int:
    return max(1, round(duration_ms / PING_INTERVAL_MS))


def _ping(
    time_ms: int,
    tradesperson_id: str,
    appointment_id: str | None,
    point: tuple[float, float],
    speed_kmh: float,
    accuracy_m: float,
) -> Event:
    return Event(
        time_ms,
        GPS,
        tradesperson_id,
        "gps.ping",
        1,
        {
            "tradesperson_id": tradesperson_id,
            "appointment_id": appointment_id,
            "lat": round(point[0], 6),
            "lon": round(point[1], 6),
            "speed_kmh": speed_kmh,
            "accuracy_m": accuracy_m,
        },
    )


def _leg(
    rng: random.Random,
    start_ms: int,
    count: int,
    step_ms: float,
    origin: tuple[float, float],
    destination: tuple[float, float],
    tradesperson_id: str,
    appointment_id: str | None,
    moving: bool,
    of: int | None = None,
) -> Iterator[Event]:
    """``count`` pings from ``start_ms``, ``step_ms`` apart with jitter smaller than the step
    (so they stay in time order), moving along the straight line or standing at ``origin``.
    ``of`` pings make the whole leg (default ``count``): fewer are pinged when the stream ends
    mid-drive."""
    random = rng.random
    total = of or count
    leg_kmh = distance_km(origin, destination) / (total * step_ms / HOUR_MS)
    for i in range(count):
        t = start_ms + round(i * step_ms) + int(random() * JITTER_MS)
        if moving:
            f = i / total
            point = (
                origin[0] + (destination[0] - origin[0]) * f + (random() - 0.5) * 0.0006,
                origin[1] + (destination[1] - origin[1]) * f + (random() - 0.5) * 0.0006,
            )
            speed = round(leg_kmh * (0.85 + 0.3 * random()), 1)
            accuracy = round(3 + 9 * random(), 1)
        else:
            point = (origin[0] + (random() - 0.5) * 0.0001, origin[1] + (random() - 0.5) * 0.0001)
            speed = round(random() * random() * 2, 1)
            accuracy = round(4 + 26 * random(), 1)
        yield _ping(t, tradesperson_id, appointment_id, point, speed, accuracy)


def visit(
    rng: random.Random,
    tradesperson_id: str,
    appointment_id: str,
    home: tuple[float, float],
    site: tuple[float, float],
    depart_ms: int,
    arrive_ms: int,
    leave_ms: int,
    drive_away_pings: int,
) -> tuple[int, Iterator[Event]]:
    """Pings of one visit: driving to the site and working there (``appointment_id`` set), then
    driving away towards home between jobs (``appointment_id`` null). Returns (count, pings)."""
    to_site = ping_count(arrive_ms - depart_ms)
    on_site = ping_count(leave_ms - arrive_ms)
    away_end = (site[0] + (home[0] - site[0]) * 0.3, site[1] + (home[1] - site[1]) * 0.3)

    def pings() -> Iterator[Event]:
        yield from _leg(
            rng,
            depart_ms,
            to_site,
            (arrive_ms - depart_ms) / to_site,
            home,
            site,
            tradesperson_id,
            appointment_id,
            True,
        )
        yield from _leg(
            rng,
            arrive_ms,
            on_site,
            (leave_ms - arrive_ms) / on_site,
            site,
            site,
            tradesperson_id,
            appointment_id,
            False,
        )
        yield from _leg(
            rng,
            leave_ms + PING_INTERVAL_MS,
            drive_away_pings,
            PING_INTERVAL_MS,
            site,
            away_end,
            tradesperson_id,
            None,
            True,
        )

    return to_site + on_site + drive_away_pings, pings()


def en_route(
    rng: random.Random,
    tradesperson_id: str,
    appointment_id: str,
    home: tuple[float, float],
    site: tuple[float, float],
    depart_ms: int,
    arrive_ms: int,
    cut_ms: int,
) -> tuple[int, Iterator[Event]]:
    """Pings of a drive to the site that the stream ends in the middle of, at ``cut_ms``: the
    truck is still on its way. Returns (count, pings)."""
    total = ping_count(arrive_ms - depart_ms)
    step = (arrive_ms - depart_ms) / total
    count = min(total, max(1, math.ceil((cut_ms - depart_ms) / step)))
    return count, _leg(rng, depart_ms, count, step, home, site, tradesperson_id, appointment_id, True, of=total)


def idle(
    rng: random.Random, tradesperson_id: str, home: tuple[float, float], start_ms: int, count: int
) -> Iterator[Event]:
    """``count`` pings of a drive between jobs (to a supplier, say): no appointment."""
    destination = (home[0] + rng.uniform(-0.05, 0.05), home[1] + rng.uniform(-0.05, 0.05))
    return _leg(rng, start_ms, count, PING_INTERVAL_MS, home, destination, tradesperson_id, None, True)
