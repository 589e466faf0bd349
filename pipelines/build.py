"""``tradelake build``: run ``dbt build`` on the dbt project in ``dbt/`` against ``$TRADELAKE_HOME``.

dbt runs in-process (``dbtRunner``): project and profiles from the repository's ``dbt/`` folder,
the warehouse ``$TRADELAKE_HOME/warehouse.duckdb`` (see dbt/profiles.yml), dbt's target and
logs under ``$TRADELAKE_HOME/dbt/`` so that nothing is written into the repository. Any failing
model or test raises a TradelakeError naming the failing nodes on one line.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.catalog import RECONCILIATION_BREAKS
from pipelines.errors import TradelakeError
from pipelines.landing.ledger import LEDGER_DIR
from pipelines.settings import Settings

log = logging.getLogger("tradelake")

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
WAREHOUSE_FILE = "warehouse.duckdb"
# Incremental models keep rows between builds (see lake_replaced).
INCREMENTAL_MODELS = ("staging.stg_fleet__gps", "staging.stg_payments__ledger")
_FAILED = {"error", "fail", "runtime error"}


@dataclass
class BuildResult:
    """What a ``dbt build`` did: node counts by status, warnings, time."""

    seconds: float
    full_refresh: bool
    statuses: dict[str, str] = field(default_factory=dict)  # unique_id -> status
    warnings: list[str] = field(default_factory=list)  # unique_ids of tests that warned
    timings: dict[str, float] = field(default_factory=dict)  # unique_id -> seconds

    @property
    def models(self) -> int:
        return sum(1 for uid in self.statuses if uid.startswith("model."))

    @property
    def tests(self) -> int:
        return sum(1 for uid in self.statuses if uid.startswith(("test.", "unit_test.")))

    def summary(self) -> str:
        counts = Counter(self.statuses.values())
        parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        refresh = " (full refresh)" if self.full_refresh else ""
        return f"dbt build{refresh}: {self.models} models, {self.tests} tests — {parts} in {self.seconds:.1f} s"


def dbt_args(settings: Settings, command: str, *extra: str) -> list[str]:
    """Arguments of a dbt command ("build", "docs generate" …) on this project and lake, with
    dbt's target and logs under the lake."""
    target = settings.home / "dbt"
    return [
        *command.split(),
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(target / "target"),
        "--log-path",
        str(target / "logs"),
        *extra,
    ]


def dbt_environment(settings: Settings) -> None:
    """dbt reads the lake's location with env_var('TRADELAKE_HOME') (profiles and sources)."""
    os.environ["TRADELAKE_HOME"] = str(settings.home)
    os.environ.setdefault("DO_NOT_TRACK", "1")


def run_dbt(settings: Settings, command: str, *extra: str):
    """Invoke dbt in-process; returns dbt's result object or raises a one-line TradelakeError."""
    from dbt.cli.main import dbtRunner  # imported late: dbt's import is slow

    dbt_environment(settings)
    (settings.home / "dbt").mkdir(parents=True, exist_ok=True)
    try:
        outcome = dbtRunner().invoke(dbt_args(settings, command, *extra))
    finally:
        _release_warehouse()
    if outcome.exception is not None:
        first = str(outcome.exception).strip().splitlines()
        raise TradelakeError(f"dbt {command} failed: {first[0] if first else type(outcome.exception).__name__}")
    return outcome


def _release_warehouse() -> None:
    """Close the DuckDB database dbt-duckdb keeps open in this process after a command.

    Otherwise the warehouse file stays locked for writing (no notebook, Dagster run or
    read-only connection of this process could open it) until the interpreter exits.
    """
    from dbt.adapters.duckdb.connections import DuckDBConnectionManager

    with DuckDBConnectionManager._LOCK:
        env = DuckDBConnectionManager._ENV
        if env is not None:
            try:
                env.close()
            finally:
                DuckDBConnectionManager.close_all_connections()


def lake_replaced(settings: Settings) -> bool:
    """True when the warehouse's incremental models hold batches the lake's ledger does not
    know: the lake was emptied and refilled (the embedded broker restarts at offset 0 and batch
    ids restart at 1), so an incremental build would keep stale rows and skip new batches."""
    warehouse = settings.home / WAREHOUSE_FILE
    if not warehouse.exists():
        return False
    ledger_glob = str(settings.home / LEDGER_DIR / "*.parquet")
    with duckdb.connect(str(warehouse), read_only=True) as con:
        has_ledger = con.execute("select count(*) from glob(?)", [ledger_glob]).fetchone()[0] > 0
        for table in INCREMENTAL_MODELS:
            schema, name = table.split(".")
            exists = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchone()[0]
            if not exists:
                continue
            last = con.execute(
                f"select _batch_id, _ingested_at from {table} order by _batch_id desc limit 1"
            ).fetchone()
            if last is None:
                continue
            if not has_ledger:
                return True
            known = con.execute(
                "select count(*) from read_parquet(?) where batch_id = ? and ingested_at = ?",
                [ledger_glob, last[0], last[1]],
            ).fetchone()[0]
            if not known:
                return True
    return False


def build(settings: Settings, select: str | None = None, full_refresh: bool = False) -> BuildResult:
    """``dbt build`` (models, dbt tests and unit tests) of the whole project or of ``select``."""
    if not (settings.home / "landing").is_dir():
        raise TradelakeError(f"nothing has landed in {settings.home} yet: run 'tradelake ingest' first")
    if not full_refresh and lake_replaced(settings):
        log.info("build: the lake was refilled since the last build; rebuilding incremental models from scratch")
        full_refresh = True
    extra = ["--log-level", "warn"]
    if select:
        extra += ["--select", select]
    if full_refresh:
        extra.append("--full-refresh")
    started = time.monotonic()
    outcome = run_dbt(settings, "build", *extra)
    result = BuildResult(seconds=time.monotonic() - started, full_refresh=full_refresh)
    failed: list[str] = []
    for r in outcome.result.results if outcome.result is not None else []:
        status = str(r.status)
        result.statuses[r.node.unique_id] = status
        result.timings[r.node.unique_id] = r.execution_time
        if status == "warn":
            result.warnings.append(r.node.unique_id)
        if status in _FAILED:
            message = " ".join((r.message or status).split())
            failed.append(f"{r.node.resource_type} {r.node.name} ({message[:160]})")
    if failed or not outcome.success:
        detail = "; ".join(failed) if failed else "see dbt's log under " + str(settings.home / "dbt" / "logs")
        raise TradelakeError(f"dbt build failed: {len(failed)} node(s): {detail}")
    log.info("%s", result.summary())
    return result


def _money(cents: float | None, currency: str) -> str:
    return "—" if cents is None else f"{cents / 100:,.2f} {currency}"


def headline(settings: Settings) -> str:
    """A few numbers from the marts for the demo: breaks by status, the best tradespeople of
    the three busiest trades, and the latest week's price bands in the busiest region."""
    warehouse = settings.home / WAREHOUSE_FILE
    if not warehouse.exists():
        raise TradelakeError(f"no warehouse at {warehouse}: run 'tradelake build' first")
    lines: list[str] = []
    with duckdb.connect(str(warehouse), read_only=True) as con:
        by_status = dict(
            con.execute("select status, count(*) from finance.payment_reconciliation group by status").fetchall()
        )
        total = sum(by_status.values())
        breaks = ", ".join(f"{s} {by_status[s]}" for s in RECONCILIATION_BREAKS if by_status.get(s))
        lines.append(f"payment reconciliation: {total:,} payments, {total - by_status.get('matched', 0):,} breaks")
        lines.append(f"  {breaks or 'none'}")

        top = con.execute(
            """
            with busiest as (
                select trade from rankings.tradesperson_rankings
                group by trade order by sum(jobs_completed) desc, trade limit 3
            )
            select r.trade, r.tradesperson_id, r.region, r.score, r.bayesian_rating, r.reviews,
                   r.on_time_rate, r.jobs_completed
            from rankings.tradesperson_rankings as r
            inner join busiest using (trade)
            where r.rank_in_trade_region is not null
            qualify row_number() over (partition by r.trade order by r.score desc, r.tradesperson_id) = 1
            order by r.trade
            """
        ).fetchall()
        lines.append("top-ranked tradesperson of the busiest trades:")
        for trade, tp, region, score, rating, reviews, on_time, jobs in top:
            punctual = "—" if on_time is None else f"{on_time:.0%}"
            lines.append(
                f"  {trade:<12} {tp} ({region}) score {score:.3f}, rating {rating:.2f} ({reviews} reviews), "
                f"on time {punctual}, {jobs} jobs"
            )

        region_week = con.execute(
            """
            select region, max(week_start) filter (where bids > 0) from pricing.price_bands
            group by region order by sum(jobs_posted) desc, region limit 1
            """
        ).fetchone()
        if region_week and region_week[1] is not None:
            region, week = region_week
            bands = con.execute(
                """
                select trade, currency, jobs_posted, bids, bid_p25_cents, bid_median_cents, bid_p75_cents
                from pricing.price_bands where region = ? and week_start = ? order by jobs_posted desc, trade
                """,
                [region, week],
            ).fetchall()
            lines.append(f"price bands, {region}, week of {week}:")
            for trade, currency, jobs, bids, p25, median, p75 in bands:
                lines.append(
                    f"  {trade:<12} {jobs:>4} jobs {bids:>4} bids  median {_money(median, currency)}"
                    f"  (p25 {_money(p25, currency)}, p75 {_money(p75, currency)})"
                )
    return "\n".join(lines)
