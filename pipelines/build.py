"""``tradelake build``: run ``dbt build`` on the dbt project in ``dbt/`` against the lake.

dbt runs in a process of its own (``run_dbt``): project and profiles from the repository's ``dbt/`` folder,
the sources are the lake's Delta tables (``delta_scan``, see dbt/models/staging/_landing__sources.yml),
dbt's target and logs under ``$TRADELAKE_HOME/dbt/`` so that nothing is written into the
repository. dbt writes a copy of the warehouse that is published onto
``$TRADELAKE_HOME/warehouse.duckdb`` when the build succeeds (``pipelines.warehouse.building``):
readers never block a build, a build never breaks a reader, one build runs at a time. Any failing
model or test raises a TradelakeError naming the failing nodes on one line, and publishes nothing.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.catalog import RECONCILIATION_BREAKS
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import BATCHES_TABLE, PUBLISHED_SCHEMA, PUBLISHED_TABLE, STREAMS_TABLE
from pipelines.lake.tables import Lake
from pipelines.settings import Settings
from pipelines.warehouse import BUILD_WAIT_SECONDS, Reader, building, building_path
from pipelines.warehouse import WAREHOUSE_FILE as WAREHOUSE_FILE  # re-exported: pipelines.demo imports it from here

log = logging.getLogger("tradelake")

DBT_PROJECT_DIR = Path(__file__).resolve().parent.parent / "dbt"
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


def dbt_target(settings: Settings) -> Path:
    """dbt's target folder for this lake (its manifest and the last build's run_results.json)."""
    return settings.home / "dbt" / "target"


def dbt_args(settings: Settings, command: str, *extra: str) -> list[str]:
    """Arguments of a dbt command ("build", "docs generate" …) on this project and lake, with
    dbt's target and logs under the lake."""
    return [
        *command.split(),
        "--project-dir",
        str(DBT_PROJECT_DIR),
        "--profiles-dir",
        str(DBT_PROJECT_DIR),
        "--target-path",
        str(dbt_target(settings)),
        "--log-path",
        str(settings.home / "dbt" / "logs"),
        *extra,
    ]


def dbt_environment(settings: Settings) -> dict[str, str]:
    """The environment variables dbt reads for this lake: ``TRADELAKE_WAREHOUSE`` (profiles.yml:
    the file dbt writes, a build's attempt, ``pipelines.warehouse.building_path``),
    ``TRADELAKE_HOME`` and ``TRADELAKE_LAKE_URL`` (the sources' ``delta_scan`` locations and the
    lake plugin, ``pipelines/lake/dbt_plugin.py``) and the object store's AWS variables (the
    plugin's S3 secret), all from ``settings``, so that dbt reads the lake these settings describe.
    Run dbt with it inside ``pipelines.warehouse.building``, which creates and publishes the attempt."""
    env = {name.upper(): value for name, value in settings.lake.storage_options.items()}
    return env | {
        "TRADELAKE_WAREHOUSE": str(building_path(settings)),
        "TRADELAKE_HOME": str(settings.home),
        "TRADELAKE_LAKE_URL": settings.lake.url,
        "DO_NOT_TRACK": "1",
    }


def dbt_executable() -> str:
    """The ``dbt`` installed beside this interpreter (the venv's), else the one on ``PATH``."""
    beside = Path(sys.executable).with_name("dbt")
    return str(beside) if beside.exists() else (shutil.which("dbt") or "dbt")


@dataclass(frozen=True)
class DbtOutcome:
    """How a dbt command ended: its exit status and, when it ran nodes, ``run_results.json``'s results."""

    returncode: int
    results: list[dict[str, Any]] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return self.returncode == 0


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_OUTPUT_TAIL = 40  # lines of dbt's output kept for the error message


def run_dbt(settings: Settings, command: str, *extra: str) -> DbtOutcome:
    """Run a dbt command in a dbt process given ``dbt_environment(settings)``; its output passes
    through. Raises a one-line TradelakeError when dbt could not run the command at all (a
    project, profile or connection error); nodes that fail are in the outcome's results.

    A process rather than ``dbtRunner`` in this one: in-process dbt reads ``env_var()`` from
    ``os.environ`` only, so the lake could only be handed to it by writing this process's
    environment, under every other thread (landing runs beside builds in ``tradelake run``).
    A dbt process is handed its environment, lets the warehouse go when it exits, and does its
    CPU work beside this process rather than under its GIL.

    A command that opens the warehouse (``build``, ``docs generate`` …) runs inside
    ``pipelines.warehouse.building``: the file it opens is that build's attempt."""
    target = dbt_target(settings)
    target.mkdir(parents=True, exist_ok=True)
    results_file = target / "run_results.json"
    results_file.unlink(missing_ok=True)  # a previous command's
    process = subprocess.Popen(
        [dbt_executable(), *dbt_args(settings, command, *extra)],
        env=os.environ | dbt_environment(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    tail: deque[str] = deque(maxlen=_OUTPUT_TAIL)
    assert process.stdout is not None
    with process.stdout:
        for line in process.stdout:
            sys.stdout.write(line)
            tail.append(_ANSI.sub("", line).rstrip())
    returncode = process.wait()
    results = json.loads(results_file.read_text())["results"] if results_file.exists() else []
    if returncode != 0 and not results:
        raise TradelakeError(f"dbt {command} failed: {_dbt_error(list(tail))}")
    return DbtOutcome(returncode, results)


def _dbt_error(lines: list[str]) -> str:
    """dbt's error on one line: what follows its "Encountered an error:", else its last line."""
    text = [line.strip() for line in lines if line.strip()]
    for i, line in enumerate(text):
        if line.endswith("Encountered an error:"):
            return ": ".join(text[i + 1 : i + 3]) or line
    return text[-1] if text else "no output"


def _node(unique_id: str) -> str:
    """``model.tradelake.price_bands`` → ``model price_bands`` (a test's id ends with a hash, a
    unit test's is ``unit_test.<package>.<model>.<name>``)."""
    kind, _package, *rest = unique_id.split(".")
    return f"{kind} {rest[0] if kind == 'test' else rest[-1]}"


def lake_replaced(settings: Settings, warehouse: Path) -> bool:
    """True when an incremental build could skip committed rows: rebuild the incremental models.

    They read, per Kafka partition, only the rows after the last (``_batch_id``, ``_offset``)
    they hold (``incremental_offset_filter`` in dbt/macros/landing.sql). That is sound as long
    as the lake is the one they were built from; a lake emptied and refilled (the embedded
    broker keeps its data in memory: a new one starts at offset 0, and batch ids restart at 1)
    would have its first rows skipped. Two checks on the lake's small tables, per model, against
    the newest row the model holds:

    - ``_streams``: a stream of the model's topic started after that row was ingested (a
      refilled lake's first stream, or a topic reset). This stands for "a stream newer than
      the warehouse's last build" without recording builds: a model's newest row is never
      newer than its last build, and once a build has read the new stream's rows it holds a
      newer one. (A reset alone would not need the rebuild, the filter orders a later stream
      after the earlier one by batch id; it is rare, and a rebuild is always safe.)
    - ``_batches``: no batch of the lake covers that row (same topic, batch, partition, offset
      within the batch's range): the warehouse holds data the lake lacks, e.g. it was built
      from another lake. (A batch's ``_batches`` rows are committed after its topic rows: if
      ingest stopped between the two just after a build read the topic rows, builds rebuild
      until ingest resumes and finishes that batch. Wasteful, never wrong.)

    ``warehouse``: the build's attempt (``pipelines.warehouse.building``), the rows this build starts from.
    """
    if not warehouse.exists():
        return False
    newest = []  # per model holding rows: (topic, batch_id, partition, offset, newest _ingested_at)
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in INCREMENTAL_MODELS:
            schema, name = table.split(".")
            exists = con.execute(
                "select count(*) from information_schema.tables where table_schema = ? and table_name = ?",
                [schema, name],
            ).fetchone()[0]
            if not exists:
                continue
            row = con.execute(
                f"select _topic, _batch_id, _partition, _offset, max(_ingested_at) over () from {table}"
                " order by _batch_id desc, _partition desc, _offset desc limit 1"
            ).fetchone()
            if row is not None:
                newest.append(row)
    if not newest:
        return False
    lake = Lake(settings.lake)
    batches = lake.read(BATCHES_TABLE, ["topic", "batch_id", "partition", "first_offset", "last_offset"])
    streams = lake.read(STREAMS_TABLE, ["topic", "since"])
    return any(
        _stream_started_after(streams, topic, ingested_at) or not _covered(batches, topic, batch_id, partition, offset)
        for topic, batch_id, partition, offset, ingested_at in newest
    )


def _stream_started_after(streams: pa.Table | None, topic: str, ingested_at: datetime) -> bool:
    if streams is None:
        return False
    since = streams.filter(pc.field("topic") == topic)["since"]
    return len(since) > 0 and pc.max(since).as_py() > ingested_at


def _covered(batches: pa.Table | None, topic: str, batch_id: int, partition: int, offset: int) -> bool:
    if batches is None:
        return False
    found = batches.filter(
        (pc.field("topic") == topic)
        & (pc.field("batch_id") == batch_id)
        & (pc.field("partition") == partition)
        & (pc.field("first_offset") <= offset)
        & (pc.field("last_offset") >= offset)
    )
    return len(found) > 0


def ensure_published_table(settings: Settings) -> None:
    """Create the lake's ``_published`` table when no publish has yet: the ops change models read
    it (what was already published) from the first build on."""
    Lake(settings.lake).ensure(PUBLISHED_TABLE, PUBLISHED_SCHEMA)


def build(
    settings: Settings, select: str | None = None, full_refresh: bool = False, wait: float = BUILD_WAIT_SECONDS
) -> BuildResult:
    """``dbt build`` (models, dbt tests and unit tests) of the whole project or of ``select``,
    published if it succeeds. Waits up to ``wait`` seconds for a build in progress."""
    if not Lake(settings.lake).exists(BATCHES_TABLE):
        raise TradelakeError(f"nothing has landed in {settings.lake.url} yet: run 'tradelake ingest' first")
    ensure_published_table(settings)
    started = time.monotonic()
    with building(settings, wait) as warehouse:
        if not full_refresh and lake_replaced(settings, warehouse):
            log.info("build: the lake changed under the warehouse (refilled, or a topic reset): full refresh")
            full_refresh = True
        extra = ["--log-level", "warn"]
        if select:
            extra += ["--select", select]
        if full_refresh:
            extra.append("--full-refresh")
        outcome = run_dbt(settings, "build", *extra)
        result = BuildResult(seconds=0.0, full_refresh=full_refresh)
        failed: list[str] = []
        for r in outcome.results:
            unique_id, status = r["unique_id"], str(r["status"])
            result.statuses[unique_id] = status
            result.timings[unique_id] = r["execution_time"]
            if status == "warn":
                result.warnings.append(unique_id)
            if status in _FAILED:
                message = " ".join((r.get("message") or status).split())
                failed.append(f"{_node(unique_id)} ({message[:160]})")
        if failed or not outcome.success:
            detail = "; ".join(failed) if failed else "see dbt's log under " + str(settings.home / "dbt" / "logs")
            raise TradelakeError(f"dbt build failed: {len(failed)} node(s): {detail}")
    result.seconds = time.monotonic() - started  # with the wait, the copy and the publication
    log.info("%s", result.summary())
    return result


def _money(cents: float | None, currency: str) -> str:
    return "—" if cents is None else f"{cents / 100:,.2f} {currency}"


def headline(settings: Settings) -> str:
    """A few numbers from the marts for the demo: breaks by status, the best tradespeople of
    the three busiest trades, and the latest week's price bands in the busiest region."""
    lines: list[str] = []
    with Reader.of(settings).snapshot() as con:
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
        lines += operations_lines(con)
    return "\n".join(lines)


def operations_lines(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The live counts of the ops marts: jobs by state, trucks on the way and late, events published."""
    by_state = con.execute(
        "select state, count(*) from ops.job_status group by state, state_rank order by state_rank"
    ).fetchall()
    on_way, late = con.execute(
        "select count(*) filter (where appointment_id is not null and arrived_at is null),"
        " count(*) filter (where running_late and arrived_at is null) from ops.truck_positions"
    ).fetchone()
    published = con.execute(
        "select topic, count(*) from staging.stg_lake__published group by topic order by topic"
    ).fetchall()
    total = sum(n for _, n in published)
    return [
        f"operations: {sum(n for _, n in by_state):,} jobs — " + ", ".join(f"{s} {n:,}" for s, n in by_state),
        f"  trucks on the way: {on_way:,}, running late: {late:,}",
        f"  derived events published: {total:,}"
        + (" (" + ", ".join(f"{t} {n:,}" for t, n in published) + ")" if published else ""),
    ]
