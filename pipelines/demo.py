"""``tradelake demo``: the whole path on the embedded broker, in about a minute."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

from pipelines.broker import EmbeddedBroker
from pipelines.build import WAREHOUSE_FILE, headline
from pipelines.errors import TradelakeError
from pipelines.lake.maintain import lake_tables
from pipelines.lake.tables import Lake
from pipelines.materialize import materialize_all
from pipelines.produce import simulate
from pipelines.settings import Settings
from pipelines.simulator import SimulationConfig
from pipelines.summary import format_lake

log = logging.getLogger("tradelake")


def reset_lake(settings: Settings) -> None:
    """Start from an empty lake and warehouse (not the personal-data key): a new embedded
    broker starts at offset 0 with new topic IDs, so the old lake no longer describes it.

    A lake in object storage is never deleted by the demo: it must already be empty.
    """
    if settings.lake.is_local:
        shutil.rmtree(settings.lake.url, ignore_errors=True)
    else:
        lake = Lake(settings.lake)
        found = [name for name in lake_tables() if lake.exists(name)]
        if found:
            names = ", ".join(found[:3]) + (", …" if len(found) > 3 else "")
            raise TradelakeError(
                f"the demo starts from an empty lake, but {settings.lake.url} already holds {len(found)} table(s) "
                f"({names}): point TRADELAKE_LAKE_URL at an empty prefix"
            )
    for name in (WAREHOUSE_FILE, WAREHOUSE_FILE + ".wal"):
        (settings.home / name).unlink(missing_ok=True)


def run_demo(settings: Settings, events: int, seed: int) -> None:
    if settings.bootstrap_servers:
        log.info("demo: using the configured cluster %s", settings.bootstrap_servers)
        _run(settings, events, seed)
        return
    reset_lake(settings)
    with EmbeddedBroker(settings.home) as broker:
        log.info("demo: embedded broker (Tansu) on %s, lake at %s", broker.bootstrap_servers, settings.lake.url)
        _run(replace(settings, bootstrap_servers=broker.bootstrap_servers), events, seed)


def _run(settings: Settings, events: int, seed: int) -> None:
    log.info("demo: simulating %s marketplace events (seed %d)", f"{events:,}", seed)
    report = simulate(settings, SimulationConfig(events=events, seed=seed))
    log.info("demo: materializing every Dagster asset: landing, contract checks, dbt build (staging → marts)")
    dbt_log = settings.home / "logs" / "demo-dbt.log"
    dbt_log.parent.mkdir(parents=True, exist_ok=True)
    with open(dbt_log, "w") as out:  # dbt's streamed lines
        done = materialize_all(settings, log_level="WARNING", output=out)
    log.info("demo: dbt's output is in %s; the full run log is in the Dagster UI", dbt_log)
    if not done.success:
        raise TradelakeError(done.summary())
    print()
    print(f"produced {sum(report.records_per_topic.values()):,} records; {done.summary()}")
    print(format_lake(settings))
    print()
    print(headline(settings))
    print()
    print(f"lake: {settings.lake.url} (Delta Lake tables; readers go through each table's Delta log)")
    print("  <topic>/      one table per topic (e.g. fleet.gps): valid records with lineage columns")
    print("  _quarantine/  rejected records of every topic: redacted raw bytes and the rules broken")
    print("  _batches/     one row per micro-batch and partition: offsets, counts, contract results")
    print("  _streams/     the Kafka topic ID each topic is read from (and its resets)")
    print("  _published/   every derived event tradelake publish sent back to Kafka (notifications, breaks, top 3)")
    print("  _owners/      which landing process took and gave up each partition (consumer groups)")
    print(f"warehouse: {settings.home / WAREHOUSE_FILE}  the marts: schemas pricing, rankings, finance, audit, ops")
    print()
    print("next:")
    print("  make dagster                  Dagster UI on http://127.0.0.1:3000 (this demo's run, assets and checks;")
    print(f"                                TRADELAKE_HOME={settings.home})")
    print(
        "  notebooks/*.ipynb             pricing, rankings, reconciliation, audit, operations"
        " (read warehouse.duckdb read-only)"
    )
    print("  .venv/bin/tradelake export finance.payment_reconciliation --format csv")
    print("  make up                       the live lakehouse: streaming traffic, marts rebuilt by themselves")
