"""How big a marketplace to simulate for a target number of records.

Everything scales from ``events``: the number of jobs, the population that serves them and
the length of the run. Jobs are posted at most ~100 a day, so a bigger target means a longer
run rather than more jobs in flight: the heap of pending events, which holds only the jobs
currently in flight, stays bounded however many records are asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import SimulationConfig
from .jobs import CANCELLED_VISIT

JOB_RECORDS = 93  # mean records one job produces (GPS pings included), measured over seeds
# Records of a job carrying a planted scenario (measured): it always completes and is paid,
# except the cancelled visit, which ends on the doorstep.
SCENARIO_RECORDS = 104
CANCELLED_VISIT_RECORDS = 61
SCENARIO_RECORDS_SD = 18
EN_ROUTE_RECORDS = 28  # records of a job the stream ends while its tradesperson drives there
JOBS_PER_DAY = 100
MIN_POSTING_DAYS = 14
SCENARIO_SHARE = 0.005  # share of jobs carrying each planted reconciliation scenario
ENVELOPE_SHARE = 0.99  # share of records that can be redelivered (all but CDC)
CRITICAL_SHARE = 0.15  # share of records a malformed copy is added to rather than replacing


@dataclass(frozen=True)
class Sizing:
    jobs: int  # expected number of jobs (the run stops on its record budget, not on this)
    job_records: int  # records budget for jobs and idle GPS traffic
    customers: int  # at the snapshot, besides the one deleted during the run
    tradespeople: int  # vetted at the snapshot, besides the one who fails the check
    customer_signups: int
    tradesperson_signups: int
    cdc_updates: int
    posting_days: int
    scenario_instances: int  # jobs per planted scenario

    @property
    def cdc_records(self) -> int:
        """CDC records the run produces: the snapshot (with the two doomed rows), updates, sign-ups
        (a tradesperson's is an insert then the check passing), the failed check, two deletes and
        their tombstones."""
        snapshot = self.customers + self.tradespeople + 2
        return snapshot + self.cdc_updates + self.customer_signups + 2 * self.tradesperson_signups + 1 + 4


def scenario_records(scenario: str) -> int:
    """The expected records of a job planted with ``scenario``."""
    return CANCELLED_VISIT_RECORDS if scenario == CANCELLED_VISIT else SCENARIO_RECORDS


def _population(jobs: int) -> tuple[int, int, int, int, int]:
    customers = min(10_000, max(8, round(jobs * 0.45)))
    tradespeople = min(1_500, max(10, round(jobs * 0.12)))
    customer_signups = max(1, round(customers * 0.04))
    tradesperson_signups = max(1, round(tradespeople * 0.04))
    updates = max(4, round((customers + tradespeople) * 0.06))
    return customers, tradespeople, customer_signups, tradesperson_signups, updates


def size(config: SimulationConfig) -> Sizing:
    """Solve for the number of jobs whose records, with the CDC traffic of the population they
    need, plus the expected redeliveries and extra malformed copies, make ``config.events``."""
    base = config.events / (1 + config.redelivery_rate * ENVELOPE_SHARE + config.malformed_rate * CRITICAL_SHARE)
    jobs = max(1, round(base / JOB_RECORDS))
    for _ in range(3):
        probe = Sizing(jobs, 0, *_population(jobs), 0, 0)
        jobs = max(1, round((base - probe.cdc_records) / JOB_RECORDS))
    customers, tradespeople, customer_signups, tradesperson_signups, updates = _population(jobs)
    probe = Sizing(jobs, 0, customers, tradespeople, customer_signups, tradesperson_signups, updates, 0, 0)
    return Sizing(
        jobs=jobs,
        job_records=max(0, round(base) - probe.cdc_records),
        customers=customers,
        tradespeople=tradespeople,
        customer_signups=customer_signups,
        tradesperson_signups=tradesperson_signups,
        cdc_updates=updates,
        posting_days=max(MIN_POSTING_DAYS, math.ceil(jobs / JOBS_PER_DAY)),
        scenario_instances=max(1, round(jobs * SCENARIO_SHARE)),
    )
