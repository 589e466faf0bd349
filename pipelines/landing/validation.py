"""Per-batch validation results, shaped like a GX validation result, for audit and checks.

Stored with the batch, as the ``validation`` column of its ``_batches`` rows (one JSON per
topic); Dagster's contract checks read them. ``unexpected_count`` counts rows; a row can break several
rules of its suite, so the per-rule counts can sum to more than the quarantined rows. Warning
and info rules are counted like critical ones (the router measures them on every row their
suite judged) but never quarantine a record. ``success`` is GX's plain rule: the unexpected
share is at most ``1 - mostly``, with the rule's ``mostly`` from the contract model (its own,
else ``DEFAULT_MOSTLY``, the same default the Dagster check uses).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from pipelines.contracts import TopicContracts
from pipelines.landing.router import Routed


def validation_summary(contracts: TopicContracts, routed: Routed) -> dict[str, Any]:
    suites = []
    for contract in contracts.contracts:
        evaluated = routed.rows_per_contract.get(contract.name, 0)
        if not evaluated:
            continue
        results = []
        for rule in contract.rules:
            unexpected = routed.failures.get((contract.name, rule.name), 0)
            results.append(
                {
                    "expectation_type": rule.kind,
                    "rule": rule.name,
                    "column": rule.column,
                    "severity": rule.severity,
                    "mostly": rule.mostly,
                    "unexpected_count": unexpected,
                    "unexpected_percent": 100.0 * unexpected / evaluated,
                    "success": unexpected <= (1 - rule.mostly) * evaluated,
                }
            )
        failed = [r for r in results if not r["success"]]
        suites.append(
            {
                "suite": contract.name,
                "success": not failed,
                "statistics": {
                    "evaluated_rows": evaluated,
                    "evaluated_expectations": len(results),
                    "unsuccessful_expectations": len(failed),
                },
                "results": results,
            }
        )
    unjudged = {rule: n for (contract, rule), n in routed.failures.items() if contract is None}
    return {
        "topic": contracts.topic,
        "landed": len(routed.landed),
        "quarantined": len(routed.quarantined),
        "tombstones": len(routed.tombstone_partitions),
        "suites": suites,
        "no_contract": unjudged,
    }


def broken_rules(summary: dict[str, Any], critical: bool = True) -> Counter:
    """Rows per rule name in a ``validation_summary``: the rules that quarantined them
    (critical and structural ones), or (``critical=False``) the warning and info rules, which
    only counted them."""
    counts: Counter = Counter(summary["no_contract"] if critical else {})
    for suite in summary["suites"]:
        for r in suite["results"]:
            if r["unexpected_count"] and (r["severity"] == "critical") == critical:
                counts[r["rule"]] += r["unexpected_count"]
    return counts
