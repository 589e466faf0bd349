"""Independent checks of a lake against the broker: what exactly-once means, as code."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb

from pipelines import kafka
from pipelines.catalog import TOPIC_NAMES
from pipelines.landing.ledger import Ledger
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks


def offsets_in_files(home: Path) -> list[tuple[str, int, int]]:
    """(topic, partition, offset) of every landed and quarantined row."""
    rows: list[tuple[str, int, int]] = []
    for kind in ("landing", "quarantine"):
        if list((home / kind).glob("*/*.parquet")):
            rows += duckdb.sql(
                f"select _topic, _partition, _offset from read_parquet('{home / kind}/*/*.parquet', union_by_name=true)"
            ).fetchall()
    return rows


def assert_exactly_once(settings: Settings) -> dict[tuple[str, int], int]:
    """Every record up to the high watermark is represented exactly once; returns the HWs."""
    home = settings.home
    manifests = Ledger(home).manifests().to_pylist()
    metadata = kafka.admin(settings).list_topics(timeout=10).topics
    # every partition of every catalog topic on the broker, not only those the ledger knows:
    # a partition the lander skipped entirely must fail here too
    partitions = [(t, p) for t in TOPIC_NAMES if t in metadata for p in metadata[t].partitions]
    hws = high_watermarks(settings, partitions)
    in_files = offsets_in_files(home)
    dupes = [k for k, n in Counter(in_files).items() if n > 1]
    assert not dupes, f"records landed twice: {dupes[:5]}"
    per_partition = Counter((t, p) for t, p, _ in in_files)
    tombstones = Counter()
    for m in manifests:
        tombstones[(m["topic"], m["partition"])] += m["tombstones"]
    for key, hw in hws.items():
        assert per_partition[key] + tombstones[key] == hw, f"{key}: {per_partition[key]} + {tombstones[key]} != {hw}"
        ranges = sorted((m["first_offset"], m["last_offset"]) for m in manifests if (m["topic"], m["partition"]) == key)
        expected_first = 0
        for first, last in ranges:
            assert first == expected_first, f"{key}: manifest gap/overlap at {first}, expected {expected_first}"
            expected_first = last + 1
        assert expected_first == hw
    for m in manifests:
        assert m["records"] == m["landed"] + m["quarantined"] + m["tombstones"]
    committed = Ledger(home).committed_batch_ids()
    for kind in ("landing", "quarantine", "validation"):
        for f in (home / kind).rglob("*"):
            if f.is_file():
                assert int(f.name.split(".")[0]) in committed, f"orphan file {f}"
    assert not list(home.rglob("*.tmp")), "temp files left behind"
    return hws
