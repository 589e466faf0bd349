"""Human summaries of the lake: of one landing run (``ingest``) or of the whole lake (``demo``)."""

from __future__ import annotations

import duckdb

from pipelines.lake.schemas import BATCHES_TABLE, QUARANTINE_SCHEMA, QUARANTINE_TABLE
from pipelines.lake.tables import Lake
from pipelines.landing.stats import IngestStats
from pipelines.settings import Settings
from pipelines.status import read_or_empty

TopicRow = tuple[str, int, int, int, int]  # topic, records, landed, quarantined, tombstones


def _topic_table(rows: list[TopicRow]) -> list[str]:
    width = max(len(r[0]) for r in rows)
    lines = [f"  {'topic'.ljust(width)}  {'records':>10} {'landed':>10} {'quarant.':>9} {'tombst.':>8}"]
    lines += [f"  {t.ljust(width)}  {r:>10,} {la:>10,} {q:>9,} {tb:>8,}" for t, r, la, q, tb in sorted(rows)]
    return lines


def _rule_lines(rules: dict[str, list[tuple[str, int]]]) -> list[str]:
    """Top three quarantine rules per topic; ``rules`` lists (rule, count) most frequent first."""
    if not rules:
        return []
    lines = ["  quarantined by rule (top 3 per topic; all of them in the _quarantine table and audit.quarantine):"]
    for topic, counts in sorted(rules.items()):
        more = f" (+{len(counts) - 3} more rules)" if len(counts) > 3 else ""
        lines.append(f"    {topic}: " + ", ".join(f"{rule} ×{n:,}" for rule, n in counts[:3]) + more)
    return lines


def format_ingest(stats: IngestStats) -> str:
    lines = [
        f"landed {stats.records:,} records in {stats.batches} batch(es), {stats.seconds:.1f}s "
        f"({stats.rate():,.0f} records/s): {stats.landed:,} landed, {stats.quarantined:,} quarantined, "
        f"{stats.tombstones:,} tombstones; committing took {stats.commit_ms_per_batch():,.0f} ms per batch"
    ]
    if stats.per_topic:
        lines += _topic_table(
            [(t, c["records"], c["landed"], c["quarantined"], c["tombstones"]) for t, c in stats.per_topic.items()]
        )
    lines += _rule_lines({t: c.most_common() for t, c in stats.quarantine_rules.items()})
    return "\n".join(lines)


def format_lake(settings: Settings) -> str:
    """Per-topic totals of the lake's committed batches, top quarantine rules from its quarantine table."""
    lake = Lake(settings.lake)
    batches = lake.read(BATCHES_TABLE, ["topic", "records", "landed", "quarantined", "tombstones"])
    if batches is None or not len(batches):
        return f"nothing has landed in {settings.lake.url}"
    quarantine = read_or_empty(lake, QUARANTINE_TABLE, QUARANTINE_SCHEMA, ["_topic", "rules"])
    with duckdb.connect() as con:
        con.register("batches", batches)
        con.register("quarantine", quarantine)
        totals = con.execute(
            "select topic, sum(records), sum(landed), sum(quarantined), sum(tombstones) from batches group by 1"
        ).fetchall()
        counts = con.execute(
            "select _topic, broken_rule, count(*) n from (select _topic, unnest(rules) broken_rule from quarantine) "
            "group by all order by n desc, broken_rule"
        ).fetchall()
    rules: dict[str, list[tuple[str, int]]] = {}
    for topic, rule, n in counts:
        rules.setdefault(topic, []).append((rule, n))
    return "\n".join(_topic_table([tuple(map(_int_or_str, t)) for t in totals]) + _rule_lines(rules))


def _int_or_str(value: object) -> object:
    return value if isinstance(value, str) else int(value)
