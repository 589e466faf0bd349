"""``tradelake contracts check``: the contract files themselves are sound.

Loadable by GX, every catalog topic covered, every expectation compilable by the router,
rule names unique per suite, one landed type per column.
"""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx

from pipelines.contracts.compile import routing_sql
from pipelines.contracts.suites import TYPE_LIST, load_contracts
from pipelines.errors import TradelakeError


def check_contracts(directory: Path | None = None) -> str:
    contracts = load_contracts(directory)
    problems: list[str] = []
    suites = 0
    for topic, tc in contracts.items():
        if not tc.contracts:
            problems.append(f"{topic}: no contract suite")
            continue
        try:
            routing_sql(tc)
            for c in tc.landed_columns():
                c.sql_type  # noqa: B018 - raises on an unsupported type list
        except TradelakeError as e:
            problems.append(str(e))
        for contract in tc.contracts:
            suites += 1
            try:
                gx.ExpectationSuite(**contract.suite)
            except Exception as e:  # GX raises many types; any of them means "not loadable"
                problems.append(f"{contract.path}: GX cannot load it: {e}")
            expected_name = f"{contract.topic}__{contract.event_type}.v{contract.schema_version}"
            if contract.name != expected_name:
                problems.append(f"{contract.path}: suite name should be {expected_name!r} (GX Data Docs paths)")
            rules = [e["meta"]["rule"] for e in contract.expectations]
            if dupes := sorted({r for r in rules if rules.count(r) > 1}):
                problems.append(f"{contract.path}: duplicate rule names {dupes}")
            typed = {e["kwargs"]["column"] for e in contract.expectations if e["type"] == TYPE_LIST}
            for e in contract.expectations:
                column = e["kwargs"].get("column")
                if column and column not in typed:
                    problems.append(f"{contract.path}: column {column} has no type-list expectation")
    if problems:
        raise TradelakeError(f"{len(problems)} contract problem(s):\n  " + "\n  ".join(problems))
    return f"contracts ok: {suites} suites over {len(contracts)} topics"
