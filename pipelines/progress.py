"""Periodic progress lines for long work: counts, rates, and what is left.

Lines rather than a redrawn bar, because ingest runs for hours under Dagster, systemd or CI
where only appended log lines survive.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("tradelake")


class Progress:
    def __init__(self, what: str, every: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.what = what
        self.every = every
        self.clock = clock
        self.started = clock()
        self.last = self.started

    def elapsed(self) -> float:
        return max(self.clock() - self.started, 1e-9)

    def rate(self, count: int) -> float:
        return count / self.elapsed()

    def tick(self, count: int, detail: Callable[[], str] = lambda: "") -> None:
        """Log a line when ``every`` seconds have passed since the last one."""
        now = self.clock()
        if now - self.last >= self.every:
            self.last = now
            self.log(count, detail())

    def log(self, count: int, detail: str = "") -> None:
        extra = f" · {detail}" if detail else ""
        log.info("%s: %s records (%s/s)%s", self.what, f"{count:,}", f"{self.rate(count):,.0f}", extra)
