"""``tradelake contracts check``: the contract files themselves are sound.

Loadable into the contract model (which refuses an unknown ``meta.topic``, a rule without a
name, duplicate rule names, an unsupported expectation type) and by GX, every catalog topic
covered, the derived topics' suites too (``expectations/derived``, what ``tradelake publish``
validates against), every expectation compiled by the router into a query DuckDB runs (a regex RE2
compiles, an ``unexpected_rows_query`` naming known columns), one landed type per column.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.contracts.compile import routing_sql
from pipelines.contracts.outbound import load_outbound_contracts
from pipelines.contracts.suites import load_contracts
from pipelines.errors import TradelakeError


def check_contracts(directory: Path | None = None) -> str:
    contracts = {**load_contracts(directory), **load_outbound_contracts(directory)}
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
                contract.gx_suite()
            except Exception as e:  # GX raises many types; any of them means "not loadable"
                problems.append(f"{contract.path}: GX cannot load it: {e}")
            expected_name = f"{contract.topic}__{contract.event_type}.v{contract.schema_version}"
            if contract.name != expected_name:
                problems.append(f"{contract.path}: suite name should be {expected_name!r} (GX Data Docs paths)")
            typed = {c.path for c in contract.columns()}
            for rule in contract.rules:
                problems.extend(
                    f"{contract.path}: column {column} has no type-list expectation"
                    for column in rule.columns
                    if column not in typed
                )
    if problems:
        raise TradelakeError(
            f"{len(problems)} contract problem(s): " + "; ".join(p.replace("\n", " ") for p in problems)
        )
    return f"contracts ok: {suites} suites over {len(contracts)} topics"
