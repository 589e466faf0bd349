"""Human summaries of a landing run, shared by ``ingest`` and ``demo``."""

from __future__ import annotations

from pipelines.landing.ingest import IngestStats


def format_ingest(stats: IngestStats) -> str:
    lines = [
        f"landed {stats.records:,} records in {stats.batches} batch(es), {stats.seconds:.1f}s "
        f"({stats.rate():,.0f} records/s): {stats.landed:,} landed, {stats.quarantined:,} quarantined, "
        f"{stats.tombstones:,} tombstones, {stats.bytes_written / 1e6:,.1f} MB written"
    ]
    if stats.per_topic:
        width = max(len(t) for t in stats.per_topic)
        lines.append(f"  {'topic'.ljust(width)}  {'records':>10} {'landed':>10} {'quarant.':>9} {'tombst.':>8}")
        for topic, c in sorted(stats.per_topic.items()):
            lines.append(
                f"  {topic.ljust(width)}  {c['records']:>10,} {c['landed']:>10,} {c['quarantined']:>9,} "
                f"{c['tombstones']:>8,}"
            )
    if stats.quarantine_rules:
        lines.append("  quarantined by rule (top 3 per topic; every rule in quarantine/ and audit.quarantine):")
        for topic, rules in sorted(stats.quarantine_rules.items()):
            top = ", ".join(f"{rule} ×{n:,}" for rule, n in rules.most_common(3))
            more = f" (+{len(rules) - 3} more rules)" if len(rules) > 3 else ""
            lines.append(f"    {topic}: {top}{more}")
    return "\n".join(lines)
