"""The landing fast path: valid rows land without the routing query, the others take it, and
the two always agree exactly.

Every test routing through tests.routing_paths (the table-driven rule cases, the strict
parsing cases, the mutated records of test_contract_properties) already compares both paths;
here: that the fast path really takes the valid rows (else those comparisons prove nothing),
that a malformed record costs the query only itself, the corpus of adversarial records and
the text the typed parse reads differently from DuckDB, and that the comparison catches a
fast path that skips a rule.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import orjson
import pytest

import pipelines.landing.fastpath as fastpath
import pipelines.landing.router as router_module
from pipelines.contracts import load_contracts
from pipelines.contracts.fast import _TypedScope
from pipelines.landing.router import RawRecords, TopicRouter
from tests.component.contract_seeds import seeds
from tests.e2e.test_adversarial_corpus import load_corpus
from tests.routing_paths import differences, route_both_ways

CONTRACTS = load_contracts()
GPS = "fleet.gps__gps.ping.v1"


def _router() -> TopicRouter:
    """The GPS router, its fast path taking batches of any size."""
    router = TopicRouter(CONTRACTS["fleet.gps"], b"k")
    router.fast_min_rows = 0
    return router


def _records(values: list[bytes | None], keys: list[bytes | None] | None = None) -> RawRecords:
    n = len(values)
    return RawRecords.from_lists([0] * n, list(range(n)), keys or [b"k"] * n, values, [0] * n)


@pytest.fixture
def queried(monkeypatch) -> list[int]:
    """How many rows each routing query call judged (the fast path's rows never reach it)."""
    sizes: list[int] = []
    run = router_module._run_query

    def spy(sql, batch, name="batch"):
        if name == "batch" and len(batch):
            sizes.append(len(batch))
        return run(sql, batch, name)

    monkeypatch.setattr(router_module, "_run_query", spy)
    return sizes


def _valid_values(suite: str, variant: str, n: int) -> list[bytes]:
    record = seeds()[(suite, variant)]
    return [orjson.dumps(record) for _ in range(n)]


@pytest.mark.parametrize(("suite", "variant"), sorted(seeds()))
def test_every_suites_valid_records_land_without_the_routing_query(suite, variant, queried):
    topic = suite.split("__")[0]
    records = _records(_valid_values(suite, variant, 50))
    assert len(route_both_ways(CONTRACTS[topic], records).landed) == 50
    queried.clear()  # the comparison's own routing by the query alone
    router = TopicRouter(CONTRACTS[topic], b"k")
    router.fast_min_rows = 0
    assert len(router.route(records, 1, datetime.now(UTC)).landed) == 50
    assert queried == []


def _gps(**changes: object) -> bytes:
    record = json.loads(json.dumps(seeds()[(GPS, "")]))
    record.update(changes)
    return json.dumps(record).encode()


def _text(raw: str) -> bytes:
    """A GPS record whose ``lat`` is the literal text ``raw``."""
    return _gps(lat="__RAW__").replace(b'"__RAW__"', raw.encode())


# Text the typed parse and DuckDB's reader may read differently, or that the fast path must
# hand over whole: each routed beside valid records, by both paths.
ODD_VALUES = {
    "duplicate key": _gps()[:-1] + b', "lat": 1.0}',
    "escaped duplicate key": _gps()[:-1] + b', "l\\u0061t": 1.0}',
    "escaped key of another kind": _gps(lat="x").replace(b'"lat"', b'"l\\u0061t"'),
    "trailing comma": _gps()[:-1] + b",}",
    "NaN": _text("NaN"),
    "Infinity": _text("-Infinity"),
    "1e400": _text("1e400"),
    "negative zero": _text("-0.0"),
    "integer float": _text("45"),
    "huge integer in a float": _text("123456789012345678901234567890"),
    "float in an integer": _gps(schema_version=1.0),
    "exponent in an integer": _gps()[:-1].replace(b'"schema_version": 1', b'"schema_version": 1e0') + b"}",
    "integer beyond BIGINT": _gps()[:-1].replace(b'"schema_version": 1', b'"schema_version": 9223372036854775808')
    + b"}",
    "string in a number": _gps(lat="45.1"),
    "number in a string": _gps(producer=7),
    "object in a string": _gps(producer={"a": 1}),
    "undeclared key": _gps(extra="x"),
    "undeclared null": _gps(extra=None),
    "null optional": _gps(appointment_id=None),
    "missing optional": json.dumps({k: v for k, v in seeds()[(GPS, "")].items() if k != "appointment_id"}).encode(),
    "missing required": json.dumps({k: v for k, v in seeds()[(GPS, "")].items() if k != "lat"}).encode(),
    "pretty printed": json.dumps(seeds()[(GPS, "")], indent=2).encode(),
    "carriage return": _gps()[:-1] + b"\r}",
    "leading space": b" " + _gps(),
    "trailing space": _gps() + b" ",
    "byte order mark": b"\xef\xbb\xbf" + _gps(),
    "two objects": _gps() + _gps(),
    "two objects, a space between": _gps() + b" " + _gps(),
    "object-looking string": _gps(producer="a}{b"),
    "NUL escape": _gps(producer="a\u0000b"),
    "lone surrogate": _gps()[:-1] + b', "producer": "\\ud800"}',
    "hour 24": _gps(event_time="2026-11-23T24:00:00Z"),
    "year 0": _gps(event_time="0000-11-23T10:00:00Z"),
    "e-mail in open text": _gps(producer="someone@example.org"),
    "not JSON": b'{"event_id": "x", ',
    "truncated object": _gps()[:-20],
    "array": b"[" + _gps() + b"]",
    "empty object": b"{}",
    "one brace": b"{",
    "null value": None,
    "not UTF-8": _gps(producer="ab").replace(b'"ab"', b'"a\xffb"'),
    "unknown version": _gps(schema_version=9),
    "event_type of another kind": _gps(event_type=1),
}


@pytest.mark.parametrize("where", ["alone", "among valid records"])
def test_odd_values_route_the_same_by_both_paths(where):
    odd = list(ODD_VALUES.values())
    values = odd
    if where == "among valid records":
        values = []
        for i, v in enumerate(_valid_values(GPS, "", 300)):
            values += [v, odd[i]] if i < len(odd) else [v]
    routed = route_both_ways(CONTRACTS["fleet.gps"], _records(values))
    assert len(routed.landed) + len(routed.quarantined) == len(values)


def test_a_malformed_record_costs_the_query_only_itself(queried):
    valid = _valid_values(GPS, "", 3000)
    bad = [ODD_VALUES[k] for k in ("duplicate key", "float in an integer", "trailing comma", "string in a number")]
    values = valid[:1000] + bad[:2] + valid[1000:2000] + bad[2:] + valid[2000:]
    _router().route(_records(values), 1, datetime.now(UTC))
    assert 0 < sum(queried) <= len(bad) + 2 * fastpath.SMALLEST_RANGE, queried


@pytest.mark.parametrize("odd", ["duplicate key", "undeclared key"])  # refused naming its row, or not
def test_a_batch_of_refusals_hands_the_rest_to_the_query(odd, queried):
    """Past the read budget, re-reading blocks would cost more than the query: the rest takes it."""
    values = [ODD_VALUES[odd] if i % 20 == 0 else v for i, v in enumerate(_valid_values(GPS, "", 4000))]
    route_both_ways(CONTRACTS["fleet.gps"], _records(values))
    queried.clear()
    _router().route(_records(values), 1, datetime.now(UTC))
    assert 200 < sum(queried) < 4000, "some rows landed fast, the rest took the query"


def test_the_corpus_routes_the_same_by_both_paths():
    cases = load_corpus()
    for topic in sorted({c.topic for c in cases}):
        mine = [c for c in cases if c.topic == topic]
        suites = sorted(s for s in seeds() if s[0].split("__")[0] == topic)
        valid = [orjson.dumps(seeds()[s]) for s in suites] * 20
        values = [v for c in mine for v in (c.value, *valid[:3])] + valid
        keys = [k for c in mine for k in (c.key, b"k", b"k", b"k")] + [b"k"] * len(valid)
        routed = route_both_ways(CONTRACTS[topic], _records(values, keys))
        assert len(routed.landed) + len(routed.quarantined) + len(routed.tombstone_partitions) == len(values)


def test_the_comparison_catches_a_fast_path_that_skips_a_rule(monkeypatch):
    """Not hollow: a fast path that lets a bad UUID through is told apart from the query."""
    skip_regex = _TypedScope.violation

    def lenient(self, rule, where):
        return "false" if rule.kind == "expect_column_values_to_match_regex" else skip_regex(self, rule, where)

    monkeypatch.setattr(_TypedScope, "violation", lenient)
    wrong = _router()
    detailed = TopicRouter(CONTRACTS["fleet.gps"], b"k", fast=False)
    records = _records([*_valid_values(GPS, "", 5), _gps(event_id="not-a-uuid")])
    now = datetime.now(UTC)
    assert differences(wrong.route(records, 1, now), detailed.route(records, 1, now))


def test_a_small_batch_takes_the_routing_query_alone(queried):
    """Below FAST_MIN_ROWS the fast path's own query would cost more than it saves."""
    n = router_module.FAST_MIN_ROWS - 1
    routed = TopicRouter(CONTRACTS["fleet.gps"], b"k").route(_records(_valid_values(GPS, "", n)), 1, datetime.now(UTC))
    assert len(routed.landed) == n and queried == [n]
