"""Table-driven from the contract files: every rule of every suite, broken alone, is caught.

A new expectation in expectations/ gets a test here without new code: the test takes a valid
record of that suite (from the simulator, judged valid by the router itself), breaks only
that rule, routes the batch and expects that rule's name among the reasons.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import orjson
import pytest

from pipelines.contracts import load_contracts
from pipelines.contracts.compile import NO_DISPATCH
from pipelines.contracts.suites import Contract, Rule
from tests.component.contract_seeds import route, rules_by_offset
from tests.component.contract_seeds import seeds as valid_seeds

CONTRACTS = load_contracts()
SUITES = [c for tc in CONTRACTS.values() for c in tc.contracts]


def _route(topic: str, values: list[bytes]):
    return route(CONTRACTS[topic], values)


@pytest.fixture(scope="module")
def seeds() -> dict[tuple[str, str], dict[str, Any]]:
    """A valid record per (suite, variant): variant 'd' / 'not-d' for CDC deletes vs the rest."""
    return valid_seeds()


def _get(record: dict, path: str) -> Any:
    for part in path.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


def _set(record: dict, path: str, value: Any, delete: bool = False) -> None:
    *parents, leaf = path.split(".")
    for part in parents:
        record = record.setdefault(part, {})
    if delete:
        record.pop(leaf, None)
    else:
        record[leaf] = value


def _wrong_type(type_list: list[str]) -> Any:
    if "str" not in type_list:
        return "a string"
    return 12345 if "int" not in type_list else [1]


# Impossible calendar values that still have the shape the regex rules ask for.
IMPOSSIBLE = {"timestamp": "2026-02-30T10:00:00.000Z", "date": "2026-13-45"}


def break_rule(contract: Contract, rule: Rule, record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` that breaks ``rule`` only."""
    kind, kw = rule.kind, rule.kwargs
    out = copy.deepcopy(record)
    col = rule.column
    if kind in ("expect_column_to_exist", "expect_column_values_to_not_be_null"):
        _set(out, col, None, delete=True)
    elif kind == "expect_column_values_to_be_in_type_list":
        _set(out, col, _wrong_type(kw["type_list"]))
    elif kind == "expect_column_values_to_be_in_set":
        sample = kw["value_set"][0]
        _set(out, col, "zz-not-allowed" if isinstance(sample, str) else max(kw["value_set"]) + 1000)
    elif kind == "expect_column_values_to_be_between":
        current = _get(record, col)
        if kw.get("min_value") is not None:
            bad = kw["min_value"] if kw.get("strict_min") else kw["min_value"] - 1
        else:
            bad = kw["max_value"] if kw.get("strict_max") else kw["max_value"] + 1
        _set(out, col, type(current)(bad) if isinstance(current, int | float) else bad)
    elif kind == "expect_column_values_to_match_regex":
        _set(out, col, "does not match")
    elif kind == "expect_column_values_to_be_dateutil_parseable":
        _set(out, col, IMPOSSIBLE["date" if len(str(_get(record, col))) == 10 else "timestamp"])
    elif kind == "expect_column_pair_values_a_to_be_greater_than_b":
        _set(out, kw["column_A"], _get(record, kw["column_B"]))
    elif kind == "unexpected_rows_expectation":
        landed = {c.name: c.path for c in CONTRACTS[contract.topic].landed_columns()}
        target = next(landed[w] for w in re.findall(r"[a-z_]+", kw["unexpected_rows_query"]) if w in landed)
        _set(out, target, _get(record, target) + 1)
    else:
        raise AssertionError(f"no breaker for {kind}: teach this test the new expectation type")
    return out


def _cases():
    for contract in SUITES:
        for rule in contract.rules:
            on_delete = rule.condition is not None and rule.condition.equal and rule.condition.value == "d"
            # CDC: rules on the before image, or conditioned on a delete, need a delete as seed.
            on_delete = on_delete or str(rule.column).startswith("before.")
            variant = "" if not CONTRACTS[contract.topic].is_cdc else ("d" if on_delete else "not-d")
            yield pytest.param(contract, rule, variant, id=f"{contract.name}:{rule.name}")


@pytest.mark.parametrize(("contract", "rule", "variant"), list(_cases()))
def test_breaking_one_rule_quarantines_with_that_rule(seeds, contract, rule, variant):
    seed = seeds.get((contract.name, variant))
    assert seed is not None, f"the simulator produced no valid {contract.name} ({variant}) record"
    broken = break_rule(contract, rule, seed)
    routed = _route(contract.topic, [orjson.dumps(seed), orjson.dumps(broken)])
    rules = rules_by_offset(routed)
    assert rules[0] == [], f"the seed itself is invalid: {rules[0]}"
    if rule.column in ("event_type", "schema_version"):
        # Dispatch picks the suite by these two fields: a record whose pair is missing, mistyped
        # or unknown cannot be judged by this suite, so the structural dispatch rule answers.
        assert rules[1] and (rules[1] == [NO_DISPATCH] or rules[1][0].startswith("no contract for ")), rules[1]
    else:
        assert rule.name in rules[1], f"expected {rule.name!r}, got {rules[1]}"
    reason = routed.quarantined["reason"].to_pylist()[0]
    assert all(r in reason for r in rules[1])


def test_every_catalog_event_type_has_a_contract():
    names = {c.name for c in SUITES}
    assert "marketplace.bids__bid.placed.v1" in names and "marketplace.bids__bid.placed.v2" in names
    assert all(tc.contracts for tc in CONTRACTS.values())


def test_v1_and_v2_bids_land_and_v9_is_quarantined(seeds):
    v1 = seeds[("marketplace.bids__bid.placed.v1", "")]
    v2 = seeds[("marketplace.bids__bid.placed.v2", "")]
    v9 = dict(v2, schema_version=9)
    rules = rules_by_offset(_route("marketplace.bids", [orjson.dumps(v) for v in (v1, v2, v9)]))
    assert rules[0] == [] and rules[1] == []
    assert rules[2] == ["no contract for bid.placed v9"]
