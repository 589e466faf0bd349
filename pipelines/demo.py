"""``tradelake demo``: the whole path on the embedded broker, in about a minute."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace

from pipelines.broker import EmbeddedBroker
from pipelines.build import build, headline
from pipelines.landing.ingest import Lander
from pipelines.landing.ledger import DATA_DIRS, LEDGER_DIR
from pipelines.produce import simulate
from pipelines.settings import Settings
from pipelines.simulator import SimulationConfig
from pipelines.summary import format_ingest

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
    log.info("demo: landing every topic up to its high watermark")
    stats = Lander(settings).run(follow=False)
    log.info("demo: validating and building the dbt models (dbt build)")
    built = build(settings)
    print()
    print(f"produced {sum(report.records_per_topic.values()):,} records; " + format_ingest(stats))
    print()
    print(built.summary())
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
    print(f"  TRADELAKE_HOME={settings.home} .venv/bin/tradelake status")
    print(f"  duckdb -readonly {settings.home}/warehouse.duckdb   (or the notebooks in notebooks/)")
