"""Lakes for the dbt tests, written with ``deltalake`` directly (not through tradelake's writer),
so that a test decides exactly which commits exist, in which order."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from deltalake import DeltaTable, write_deltalake

from pipelines.contracts import load_contracts
from pipelines.lake.schemas import (
    BATCHES_SCHEMA,
    BATCHES_TABLE,
    PARTITION_COLUMN,
    PUBLISHED_SCHEMA,
    PUBLISHED_TABLE,
    QUARANTINE_SCHEMA,
    QUARANTINE_TABLE,
    STREAMS_SCHEMA,
    STREAMS_TABLE,
    topic_schema,
)
from pipelines.settings import Settings


def schemas() -> dict[str, pa.Schema]:
    """Every table of the lake and its schema: one per topic, and the lake's own."""
    topics = {
        t: topic_schema([(c.name, c.arrow_type) for c in tc.landed_columns()]) for t, tc in load_contracts().items()
    }
    return topics | {
        QUARANTINE_TABLE: QUARANTINE_SCHEMA,
        BATCHES_TABLE: BATCHES_SCHEMA,
        STREAMS_TABLE: STREAMS_SCHEMA,
        PUBLISHED_TABLE: PUBLISHED_SCHEMA,
    }


def empty_lake(home: Path, env: Mapping[str, str] | None = None) -> Settings:
    """A lake as ingest leaves it before the first record: every table created, empty, with its
    full schema. ``env``: the lake's location (``TRADELAKE_LAKE_URL``, AWS variables), else
    the folder under ``home``."""
    settings = Settings.load(env=dict(env or {}), home=str(home))
    for name, schema in schemas().items():
        DeltaTable.create(
            settings.lake.table_uri(name),
            schema=schema,
            partition_by=[PARTITION_COLUMN] if PARTITION_COLUMN in schema.names else None,
            storage_options=_options(settings),
        )
    return settings


def append(settings: Settings, name: str, rows: list[dict]) -> None:
    """One Delta commit of ``rows`` into the table ``name``."""
    write_deltalake(
        settings.lake.table_uri(name),
        pa.Table.from_pylist(rows, schema=schemas()[name]),
        mode="append",
        storage_options=_options(settings),
    )


def _options(settings: Settings) -> dict[str, str] | None:
    return dict(settings.lake.storage_options) or None


def start_stream(settings: Settings, topic: str, topic_id: str, partitions: int, reason: str) -> None:
    """Record in ``_streams`` that the lake reads ``topic`` from the stream ``topic_id`` from now on."""
    row = {"topic": topic, "topic_id": topic_id, "partitions": partitions, "since": datetime.now(UTC), "reason": reason}
    append(settings, STREAMS_TABLE, [row])
