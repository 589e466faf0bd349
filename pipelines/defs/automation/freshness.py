"""The marts' freshness SLO: ``TRADELAKE_MART_FRESHNESS_MINUTES``, read when the code location loads.

Continuous mode (``tradelake run``, or the lag sensor) rebuilds the marts within a minute of new
data, so a mart that has not been rebuilt for minutes is late: ``WARN`` after 5 minutes without
a materialization, ``FAIL`` after 15 (the default, ``5,15``). ``TRADELAKE_MART_FRESHNESS_MINUTES``
is ``WARN,FAIL`` or ``FAIL`` alone (no warning), in minutes, at least 1 each (Dagster's
floor) and ``WARN`` below ``FAIL``.
"""

import math
import os
from collections.abc import Mapping
from datetime import timedelta

import dagster as dg

from pipelines.errors import TradelakeError

FRESHNESS_VARIABLE = "TRADELAKE_MART_FRESHNESS_MINUTES"
DEFAULT_FRESHNESS = "5,15"


def mart_freshness_policy(env: Mapping[str, str] | None = None) -> dg.FreshnessPolicy:
    """The marts' policy from ``env`` (default: the process's environment)."""
    env = os.environ if env is None else env
    value = (env.get(FRESHNESS_VARIABLE) or DEFAULT_FRESHNESS).strip()
    try:
        minutes = [float(part) for part in value.split(",")]
    except ValueError:
        minutes = []
    if not 0 < len(minutes) <= 2 or not all(1 <= m < math.inf for m in minutes) or minutes != sorted(set(minutes)):
        raise TradelakeError(
            f"{FRESHNESS_VARIABLE}={value!r}: expected minutes as WARN,FAIL (e.g. {DEFAULT_FRESHNESS}) or FAIL, "
            "each at least 1, WARN below FAIL"
        )
    *warn, fail = (timedelta(minutes=m) for m in minutes)
    return dg.FreshnessPolicy.time_window(fail_window=fail, warn_window=warn[0] if warn else None)
