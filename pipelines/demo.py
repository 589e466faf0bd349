"""``tradelake demo``: the whole path on the embedded broker, in about a minute."""

from __future__ import annotations

import contextlib
import logging
import shutil
from dataclasses import replace

from pipelines.broker import EmbeddedBroker
from pipelines.build import headline
from pipelines.defs.materialize import materialize_all
from pipelines.errors import TradelakeError
from pipelines.landing.ledger import DATA_DIRS, LEDGER_DIR
from pipelines.produce import simulate
from pipelines.settings import Settings
from pipelines.simulator import SimulationConfig
from pipelines.summary import format_lake

log = logging.getLogger("tradelake")


def reset_lake(settings: Settings) -> None:
    """Empty the lake's landed state (not its personal-data key): a new embedded broker
    starts at offset 0, so an old ledger would no longer describe it."""
    for sub in (*DATA_DIRS, LEDGER_DIR):
        shutil.rmtree(settings.home / sub, ignore_errors=True)


def run_demo(settings: Settings, events: int, seed: int) -> None:
    if settings.bootstrap_servers:
        log.info("demo: using the configured cluster %s", settings.bootstrap_servers)
        _run(settings, events, seed)
        return
    reset_lake(settings)
    with EmbeddedBroker(settings.home) as broker:
        log.info("demo: embedded broker (Tansu) on %s, lake at %s", broker.bootstrap_servers, settings.home)
        _run(replace(settings, bootstrap_servers=broker.bootstrap_servers), events, seed)


def _run(settings: Settings, events: int, seed: int) -> None:
    log.info("demo: simulating %s marketplace events (seed %d)", f"{events:,}", seed)
    report = simulate(settings, SimulationConfig(events=events, seed=seed))
    log.info("demo: materializing every Dagster asset: landing, contract checks, dbt build (staging → marts)")
    dbt_log = settings.home / "logs" / "demo-dbt.log"
    dbt_log.parent.mkdir(parents=True, exist_ok=True)
    with open(dbt_log, "w") as out, contextlib.redirect_stdout(out):  # dbt's streamed lines
        done = materialize_all(settings, log_level="WARNING")
    log.info("demo: dbt's output is in %s; the full run log is in the Dagster UI", dbt_log)
    if not done.success:
        raise TradelakeError(done.summary())
    print()
    print(f"produced {sum(report.records_per_topic.values()):,} records; {done.summary()}")
    print(format_lake(settings.home))
    print()
    print(headline(settings))
    print()
    print(f"lake: {settings.home}")
    print("  landing/<topic>/*.parquet     valid records with lineage columns")
    print("  quarantine/<topic>/*.parquet  rejected records, redacted raw bytes and the rule broken")
    print("  _ledger/*.parquet             one manifest per micro-batch: offsets and counts")
    print("  warehouse.duckdb              the marts: schemas pricing, rankings, finance, audit")
    print()
    print("next:")
    print("  make dagster                  Dagster UI on http://127.0.0.1:3000 (this demo's run, assets and checks;")
    print(f"                                TRADELAKE_HOME={settings.home})")
    print("  notebooks/*.ipynb             pricing, rankings, reconciliation, audit (read warehouse.duckdb read-only)")
    print("  .venv/bin/tradelake export finance.payment_reconciliation --format csv")
