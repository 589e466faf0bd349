"""Per-batch validation results, shaped like a GX validation result, for audit and checks.

Stored with the batch, as the ``validation`` column of its ``_batches`` rows (one JSON per
topic); Dagster's contract checks read them. ``unexpected_count`` counts rows; a row can break several
rules of its suite, so the per-rule counts can sum to more than the quarantined rows.
"""

from __future__ import annotations

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
        for e in contract.expectations:
            rule = e["meta"]["rule"]
            unexpected = routed.failures.get((contract.name, rule), 0)
            results.append(
                {
                    "expectation_type": e["type"],
                    "rule": rule,
                    "column": e["kwargs"].get("column") or e["kwargs"].get("column_A"),
                    "severity": e.get("severity", "critical"),
                    "mostly": e["kwargs"].get("mostly", 1.0),
                    "unexpected_count": unexpected,
                    "unexpected_percent": 100.0 * unexpected / evaluated,
                    "success": unexpected <= (1 - e["kwargs"].get("mostly", 1.0)) * evaluated,
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
