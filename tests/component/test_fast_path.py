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
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pytest

import pipelines.landing.fastpath as fastpath
import pipelines.landing.router as router_module
from pipelines.contracts import TopicContracts, load_contracts
from pipelines.contracts.fast import _TypedScope
from pipelines.contracts.suites import default_contracts_dir
from pipelines.landing.router import RawRecords, TopicRouter
from pipelines.simulator import Simulation, SimulationConfig
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


def _text(raw: str, field: str = "lat") -> bytes:
    """A GPS record whose ``field`` is the literal text ``raw``."""
    return _gps(**{field: "__RAW__"}).replace(b'"__RAW__"', raw.encode())


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
    # speed_kmh has only a lower bound, and DuckDB orders NaN above every number: only the
    # finiteness check keeps these out
    "NaN, lower bound only": _text("NaN", "speed_kmh"),
    "Infinity, lower bound only": _text("Infinity", "speed_kmh"),
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
    "object, null, object": _gps() + b" null " + _gps(),
    "object, null": _gps() + b"null",
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
    "raw NUL": _gps(producer="ab").replace(b'"ab"', b'"a\x00b"'),
    "two objects, a newline between": _gps() + b"\n" + _gps(),
    "unknown version": _gps(schema_version=9),
    "event_type of another kind": _gps(event_type=1),
}


@pytest.mark.parametrize("name", sorted(ODD_VALUES))
def test_odd_values_route_the_same_by_both_paths(name):
    """Each between valid records, in a batch of its own (refusals spend the parse's read
    budget: many in one small batch would send the rest to the query untried)."""
    valid = _valid_values(GPS, "", 40)
    values = [*valid[:20], ODD_VALUES[name], *valid[20:]]
    routed = route_both_ways(CONTRACTS["fleet.gps"], _records(values))
    assert len(routed.landed) >= 40 and len(routed.landed) + len(routed.quarantined) == 41


def test_odd_values_route_the_same_by_both_paths_all_at_once():
    values = [v for odd in ODD_VALUES.values() for v in (odd, *_valid_values(GPS, "", 3))]
    routed = route_both_ways(CONTRACTS["fleet.gps"], _records(values))
    assert len(routed.landed) + len(routed.quarantined) == len(values)


@pytest.mark.parametrize("line_break", [b"\n", b"\r", b"\x00"])
@pytest.mark.parametrize("at", ["first", "middle", "last"])
def test_a_value_holding_a_line_break_is_no_candidate(line_break, at):
    """Each line of the parse must be one value: a value holding a line break is left out
    wherever it holds it, in a slice of a batch too (offsets not starting at zero)."""
    valid = _valid_values(GPS, "", 6)
    odd = {
        "first": line_break + valid[0],
        "middle": valid[0][:10] + line_break + valid[0][10:],
        "last": valid[0] + line_break,
    }[at]
    values = [*valid[:3], odd, *valid[3:], odd]
    text = pa.array([v.decode() for v in values], pa.string())
    utf8 = pa.array([True] * len(values))
    assert fastpath.candidates(text, utf8, "").tolist() == [0, 1, 2, 4, 5, 6]
    assert fastpath.candidates(text.slice(2), utf8.slice(2), "").tolist() == [0, 2, 3, 4]


@pytest.mark.parametrize("second", [b"", b" ", b" null ", b"null"])
def test_two_documents_on_a_line_before_a_refusal_blocks_later_do_not_shift_rows(second):
    """The blocks read before a refusal are kept, their rows matched to lines by counting: a
    line read as two rows there would shift every landed row after it."""
    valid = [_gps(event_id=f"00000000-0000-4000-8000-{i:012d}") for i in range(3000)]
    values = [*valid[:10], _gps() + second + _gps(), *valid[10:2500], ODD_VALUES["duplicate key"], *valid[2500:]]
    route_both_ways(CONTRACTS["fleet.gps"], _records(values))


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


@pytest.mark.parametrize("case", load_corpus(), ids=lambda c: c.id)
def test_the_corpus_routes_the_same_by_both_paths(case):
    """Each adversarial record between valid records of its topic, in a batch of its own."""
    suites = sorted(s for s in seeds() if s[0].split("__")[0] == case.topic)
    valid = [orjson.dumps(seeds()[s]) for s in suites] * 10
    values, keys = [*valid, case.value, *valid], [*[b"k"] * len(valid), case.key, *[b"k"] * len(valid)]
    routed = route_both_ways(CONTRACTS[case.topic], _records(values, keys))
    assert len(routed.landed) + len(routed.quarantined) + len(routed.tombstone_partitions) == len(values)


BID_V1 = "marketplace.bids__bid.placed.v1"


@pytest.mark.parametrize(
    ("field", "value"), [("amount_cents", 100), ("amount_cents", None), ("currency", "USD"), ("amount", 1.5)]
)
def test_a_field_another_version_declares_routes_the_same_by_both_paths(field, value):
    """A v1 bid with a v2 field (or a withdrawal with a v1 one): it does not land from a suite
    that does not declare it, on either path."""
    for suite in (BID_V1, "marketplace.bids__bid.withdrawn.v1"):
        record = {**seeds()[(suite, "")], field: value}
        values = [*_valid_values(suite, "", 20), orjson.dumps(record), *_valid_values(suite, "", 20)]
        route_both_ways(CONTRACTS["marketplace.bids"], _records(values))


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


def test_a_simulated_batch_with_malformed_records_routes_the_same_by_both_paths(queried, monkeypatch):
    """A batch as landing sees it, sliced as a large one is (MIN_SLICE_ROWS lowered to this
    batch's size): every malformed class of the simulator, 2% of them."""
    monkeypatch.setattr(router_module, "MIN_SLICE_ROWS", 5_000)
    sim = Simulation(SimulationConfig(events=40_000, seed=5, malformed_rate=0.02))
    values = [r.value for r in sim.records() if r.topic == "fleet.gps"]
    assert len(values) >= 2 * router_module.MIN_SLICE_ROWS
    routed = route_both_ways(CONTRACTS["fleet.gps"], _records(values))
    assert len(routed.quarantined) > 100
    queried.clear()
    TopicRouter(CONTRACTS["fleet.gps"], b"k").route(_records(values), 1, datetime.now(UTC))
    assert sum(queried) < len(values) // 10, "most rows landed by the fast path"


def _with_extra_rules(tmp_path: Path) -> TopicContracts:
    """The GPS contract plus rule kinds no shipped suite uses on it: a key that must exist
    (absent fails, null passes), a warning, a ``mostly`` and a row condition."""
    for src in default_contracts_dir().glob("*/*.json"):
        suite = json.loads(src.read_text())
        if suite["meta"]["topic"] == "fleet.gps":
            suite["expectations"] += [
                {"type": "expect_column_to_exist", "kwargs": {"column": "appointment_id"},
                 "meta": {"rule": "appointment_id is there"}},
                {"type": "expect_column_values_to_match_regex", "severity": "warning",
                 "kwargs": {"column": "producer", "regex": "^fleet-.*$", "mostly": 0.5},
                 "meta": {"rule": "producer is a fleet tracker"}},
                {"type": "expect_column_values_to_be_between", "row_condition": 'producer=="slow"',
                 "kwargs": {"column": "speed_kmh", "max_value": 10}, "meta": {"rule": "slow ones are slow"}},
            ]  # fmt: skip
        dst = tmp_path / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(suite))
    return load_contracts(tmp_path)["fleet.gps"]


def test_rules_no_shipped_suite_uses_route_the_same_by_both_paths(tmp_path):
    contracts = _with_extra_rules(tmp_path)
    record = json.loads(json.dumps(seeds()[(GPS, "")]))
    odd = [
        json.dumps({k: v for k, v in record.items() if k != "appointment_id"}).encode(),  # absent: quarantined
        json.dumps({**record, "appointment_id": None}).encode(),  # null: lands
        json.dumps({**record, "producer": "someone else"}).encode(),  # breaks the warning: lands, counted
        json.dumps({**record, "producer": "slow", "speed_kmh": 50}).encode(),  # breaks the conditioned rule
        json.dumps({**record, "producer": "slow", "speed_kmh": 5}).encode(),
    ]
    values = [*_valid_values(GPS, "", 30), *odd, *_valid_values(GPS, "", 30)]
    routed = route_both_ways(contracts, _records(values))
    assert sorted(map(tuple, routed.quarantined["rules"].to_pylist())) == [
        ("appointment_id is there",),
        ("slow ones are slow",),
    ]
    assert routed.failures[(contracts.contracts[0].name, "producer is a fleet tracker")] == 3


@pytest.mark.parametrize("start", [0, 3])
def test_the_parse_reads_the_chosen_values_alone_without_copying_them_first(start):
    """The lines hold exactly the chosen values (the others hidden as nulls add no bytes),
    for a slice of a batch too; their rows are the rows the parse gives those values alone."""
    valid = _valid_values(GPS, "", 40)
    text = pa.array([v.decode() for v in valid], pa.string()).slice(start)
    chosen = fastpath.candidates(text, pa.array([True] * len(text)), "")[::3]
    data, offsets = fastpath._lines(text, chosen)
    assert data.to_pybytes()[: offsets[-1]] == b"".join(valid[start + i] + b"\n" for i in chosen)
    assert offsets.tolist() == [sum(len(valid[start + j]) + 1 for j in chosen[:k]) for k in range(len(chosen) + 1)]
    plan = _router().fast
    at, parsed = fastpath.parse(text, chosen, plan.schema)
    alone_at, alone = fastpath.parse(text.take(pa.array(chosen)), np.arange(len(chosen)), plan.schema)
    assert at.tolist() == alone_at.tolist() == list(range(len(chosen)))
    assert parsed.equals(alone)


@pytest.mark.parametrize("every", [1, 2, 7])
def test_records_that_are_not_utf8_route_the_same_by_both_paths_in_a_slice(every):
    """Records that are not UTF-8 are hidden as nulls over the batch's own buffers, and the
    fast path hides the values it does not parse the same way: in a slice of a batch (offsets
    not at zero), with few or all records bad and bad keys among them, both paths agree and
    every bad record is quarantined as not UTF-8."""
    valid = _valid_values(GPS, "", 3000)
    values = [v.replace(b'"gps', b'"\xffgps', 1) if i % every == 0 else v for i, v in enumerate(valid)]
    keys = [b"\xfe" if i % 5 == 0 else b"k" for i in range(len(values))]
    records = _records(values, keys).slice(3, len(values))
    routed = route_both_ways(CONTRACTS["fleet.gps"], records)
    bad = sum(1 for i in range(3, len(values)) if i % every == 0)
    assert (len(routed.landed), len(routed.quarantined)) == (len(values) - 3 - bad, bad)
    assert all("value is UTF-8 text" in r for r in routed.quarantined["rules"].to_pylist())
