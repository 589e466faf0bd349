"""Reference data that makes the traffic look like a real North-American trades marketplace.

Prices, visit lengths, city geography and demand weights are invented but plausible, so that
the marts computed downstream (price bands per trade and region, rankings, GPS-based
punctuality) show the shapes an analyst would expect rather than uniform noise.
"""

from __future__ import annotations

# Share of demand per trade and per region (relative weights).
TRADE_WEIGHTS: dict[str, float] = {
    "electrician": 0.17,
    "plumber": 0.20,
    "hvac": 0.14,
    "carpenter": 0.10,
    "roofer": 0.07,
    "painter": 0.12,
    "locksmith": 0.08,
    "landscaper": 0.12,
}
REGION_WEIGHTS: dict[str, float] = {
    "nyc": 0.16,
    "chi": 0.11,
    "lax": 0.13,
    "hou": 0.10,
    "phx": 0.08,
    "sea": 0.08,
    "bos": 0.07,
    "atl": 0.09,
    "tor": 0.11,
    "van": 0.07,
}

# City centres (lat, lon), UTC offsets in November (standard time everywhere) and phone area codes.
REGION_CENTRES: dict[str, tuple[float, float]] = {
    "nyc": (40.7128, -74.0060),
    "chi": (41.8781, -87.6298),
    "lax": (34.0522, -118.2437),
    "hou": (29.7604, -95.3698),
    "phx": (33.4484, -112.0740),
    "sea": (47.6062, -122.3321),
    "bos": (42.3601, -71.0589),
    "atl": (33.7490, -84.3880),
    "tor": (43.6532, -79.3832),
    "van": (49.2827, -123.1207),
}
UTC_OFFSET_HOURS: dict[str, int] = {
    "nyc": -5,
    "chi": -6,
    "lax": -8,
    "hou": -6,
    "phx": -7,
    "sea": -8,
    "bos": -5,
    "atl": -5,
    "tor": -5,
    "van": -8,
}
AREA_CODES: dict[str, str] = {
    "nyc": "212",
    "chi": "312",
    "lax": "213",
    "hou": "713",
    "phx": "602",
    "sea": "206",
    "bos": "617",
    "atl": "404",
    "tor": "416",
    "van": "604",
}

# Typical job value in USD (low, high) before regional and urgency factors; CAD is converted.
TRADE_PRICE_USD: dict[str, tuple[int, int]] = {
    "electrician": (120, 1100),
    "plumber": (150, 900),
    "hvac": (180, 2400),
    "carpenter": (150, 1500),
    "roofer": (350, 5500),
    "painter": (250, 2800),
    "locksmith": (80, 350),
    "landscaper": (100, 1200),
}
REGION_PRICE_FACTOR: dict[str, float] = {
    "nyc": 1.25,
    "chi": 1.05,
    "lax": 1.20,
    "hou": 0.92,
    "phx": 0.90,
    "sea": 1.15,
    "bos": 1.20,
    "atl": 0.93,
    "tor": 1.00,
    "van": 1.05,
}
URGENCY_PRICE_FACTOR: dict[str, float] = {"standard": 1.0, "urgent": 1.15, "emergency": 1.45}
URGENCY_WEIGHTS: dict[str, float] = {"standard": 0.70, "urgent": 0.22, "emergency": 0.08}
CAD_PER_USD = 1.38

# Minutes on site per visit (low, high). Service calls, not renovations: GPS pings are sent
# every ~30 s while en route and on site, and these lengths keep them at the ~80 % share of
# traffic the production fleet topic has.
TRADE_VISIT_MINUTES: dict[str, tuple[int, int]] = {
    "electrician": (12, 35),
    "plumber": (12, 35),
    "hvac": (15, 40),
    "carpenter": (15, 40),
    "roofer": (18, 45),
    "painter": (18, 45),
    "locksmith": (8, 25),
    "landscaper": (15, 40),
}

# Relative job-posting intensity per UTC hour (North-American daytime is 12:00-24:00 UTC)
# and per weekday (Monday = 0): fewer jobs at night and at weekends.
HOURLY_DEMAND: tuple[float, ...] = (
    0.55, 0.45, 0.35, 0.25, 0.15, 0.08, 0.06, 0.06, 0.08, 0.10, 0.15, 0.30,
    0.55, 0.80, 0.95, 1.00, 1.00, 0.95, 0.95, 0.90, 0.85, 0.80, 0.75, 0.65,
)  # fmt: skip
WEEKDAY_DEMAND: tuple[float, ...] = (1.0, 1.0, 0.95, 0.95, 0.9, 0.7, 0.6)

PLATFORM_COMMISSION = 0.12  # share of the captured amount the marketplace keeps before payout


def gateway_fee_cents(gross_cents: int) -> int:
    """The gateway's card fee on a charge: 2.9 % + 30 cents, rounded half up."""
    return (gross_cents * 29 + 500) // 1000 + 30
