"""The contract is the gate: whatever lands, staging can cast. Each class of value that once
landed and then broke ``tradelake build`` is quarantined here, naming its rule, and its
nearest valid neighbour lands unchanged.

Records are raw text (not ``json.dumps`` of a dict) where the case is about the text itself:
NaN and Infinity literals, numbers beyond 64 bits, duplicate keys, trailing commas.
"""

from __future__ import annotations

import json

import duckdb
import orjson
import pytest

from pipelines.contracts import load_contracts
from pipelines.contracts.compile import DUPLICATE_KEYS, NOT_STRICT
from tests.component.contract_seeds import route, rules_by_offset, seeds

CONTRACTS = load_contracts()
BID_V1 = "marketplace.bids__bid.placed.v1"
BID_V2 = "marketplace.bids__bid.placed.v2"
GPS = "fleet.gps__gps.ping.v1"
CUSTOMERS = "cdc.public.customers__change.v1"


def _seed(suite: str, variant: str = "") -> dict:
    return json.loads(json.dumps(seeds()[(suite, variant)]))


def _with(record: dict, path: str, raw: str) -> bytes:
    """``record`` as JSON text with the field at ``path`` replaced by the literal text ``raw``."""
    marker = "__raw_value_marker__"
    target = record
    *parents, leaf = path.split(".")
    for p in parents:
        target = target[p]
    target[leaf] = marker
    return json.dumps(record).replace(f'"{marker}"', raw).encode()


def _judge(topic: str, values: list[bytes]) -> dict[int, list[str]]:
    return rules_by_offset(route(CONTRACTS[topic], values))


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "nan", "-inf", "1e400", "-1e400"])
@pytest.mark.parametrize(
    ("suite", "variant", "path", "rule"),
    [
        (BID_V1, "", "amount", "amount is a number"),  # the v1 bid amount that broke build
        (GPS, "", "lat", "lat is a number"),
        (CUSTOMERS, "not-d", "source.lsn", "source.lsn is an integer"),  # nested
    ],
)
def test_non_finite_numbers_are_quarantined_by_the_fields_type_rule(suite, variant, path, rule, literal):
    topic = suite.split("__")[0]
    record = _seed(suite, variant)
    assert _judge(topic, [_with(record, path, literal)])[0] == [rule]


def test_duckdb_reads_what_rfc_8259_refuses():
    """Why json_valid is not the gate: DuckDB takes NaN, Infinity and 1e400 as numbers and
    accepts trailing commas."""
    con = duckdb.connect()
    for literal in ("NaN", "Infinity", "-Infinity", "1e400"):
        valid, kind = con.execute("select json_valid(?), json_type(?, '$.a')", [f'{{"a": {literal}}}'] * 2).fetchone()
        assert valid and kind == "DOUBLE", literal
    assert con.execute("""select json_valid('{"a": 1,}'), json_valid('[1,]')""").fetchone() == (True, True)


@pytest.mark.parametrize("literal", ["NaN", "-Infinity", "inf", "1e400", "[1,]", '{"a": 1,}'])
def test_what_rfc_8259_refuses_anywhere_in_the_record_is_quarantined(literal):
    """Outside the declared fields too (a producer's new field): strict JSON is the whole record."""
    record = _seed(BID_V1)
    record["extra"] = {"x": "placeholder"}
    value = json.dumps(record).replace('"placeholder"', literal).encode()
    routed = route(CONTRACTS["marketplace.bids"], [value])
    assert rules_by_offset(routed)[0] == [NOT_STRICT]
    assert routed.quarantined["contract"].to_pylist() == [None], "structural: no suite judged it"


def _trailing_comma(record: dict, path: str, closing: str) -> bytes:
    """``record`` as JSON text with the object at ``path`` ('' the record itself) closed by
    ``closing`` (a comma, maybe whitespace, the brace) instead of its brace."""
    if not path:
        return (json.dumps(record)[:-1] + closing).encode()
    target = record
    *parents, leaf = path.split(".")
    for p in parents:
        target = target[p]
    return _with(record, path, json.dumps(target[leaf])[:-1] + closing)


@pytest.mark.parametrize("closing", [",}", ", }", ",\n\t}", " ,\r\n}"])
@pytest.mark.parametrize(
    ("suite", "variant", "path"),
    [
        (BID_V2, "", ""),  # every key declared: no other check reads the text again
        (CUSTOMERS, "not-d", ""),
        (CUSTOMERS, "not-d", "after"),  # nested, personal data
        (CUSTOMERS, "not-d", "source"),
    ],
)
def test_a_trailing_comma_is_quarantined_as_not_strict_json(suite, variant, path, closing):
    """DuckDB's reader accepts it (test_duckdb_reads_what_rfc_8259_refuses); the record once
    landed when each of its keys was one the contract declares."""
    topic = suite.split("__")[0]
    routed = route(CONTRACTS[topic], [_trailing_comma(_seed(suite, variant), path, closing)])
    assert rules_by_offset(routed)[0] == [NOT_STRICT]
    assert routed.quarantined["contract"].to_pylist() == [None], "structural: no suite judged it"


def test_a_trailing_comma_in_a_declared_field_is_not_strict_json_before_its_type():
    assert _judge("marketplace.bids", [_with(_seed(BID_V2), "producer", "[1, ]")])[0] == [NOT_STRICT]


@pytest.mark.parametrize("text", ["great work,} thanks", "a, ]", ",}", "list: 1, 2, ]"])
def test_a_string_that_looks_like_a_trailing_comma_lands_unchanged(text):
    """Only a candidate for the exact check: strict JSON, it lands."""
    record = _seed("marketplace.reviews__review.submitted.v1")
    record["comment"] = text
    routed = route(CONTRACTS["marketplace.reviews"], [json.dumps(record).encode()])
    assert len(routed.quarantined) == 0, routed.quarantined["reason"].to_pylist()
    assert routed.landed["comment"].to_pylist() == [text]


def test_a_field_the_contract_does_not_declare_lands_when_the_record_is_strict():
    record = _seed(BID_V1)
    record["extra"] = {"x": [1.5, "NaN", None], "y": {"z": True}}
    assert _judge("marketplace.bids", [orjson.dumps(record)])[0] == []


@pytest.mark.parametrize(
    ("suite", "variant", "path", "literal", "rule"),
    [
        (BID_V2, "", "amount_cents", "18446744073709551615", "amount_cents is an integer"),  # UBIGINT max
        (BID_V2, "", "amount_cents", "9223372036854775808", "amount_cents is an integer"),  # 2^63
        (BID_V2, "", "amount_cents", "18446744073709551617", "amount_cents is an integer"),  # 2^64 + 1
        (BID_V2, "", "amount_cents", "-9223372036854775809", "amount_cents is an integer"),  # -2^63 - 1
        (CUSTOMERS, "not-d", "source.txId", "9223372036854775808", "source.txId is an integer"),
        (BID_V1, "", "amount", "18446744073709551615", "amount is at most 10,000,000,000"),  # float column
        (BID_V1, "", "amount", "1e308", "amount is at most 10,000,000,000"),  # round(amount * 100) overflowed
        (BID_V2, "", "amount_cents", "1000000000001", "amount_cents is at most 1,000,000,000,000"),
    ],
)
def test_numbers_beyond_the_columns_range_are_quarantined(suite, variant, path, literal, rule):
    topic = suite.split("__")[0]
    assert _judge(topic, [_with(_seed(suite, variant), path, literal)])[0] == [rule]


@pytest.mark.parametrize(
    ("suite", "variant", "path", "literal", "column", "landed"),
    [
        (CUSTOMERS, "not-d", "source.txId", "9223372036854775807", "source_txid", 2**63 - 1),
        (CUSTOMERS, "not-d", "source.txId", "-9223372036854775808", "source_txid", -(2**63)),
        (CUSTOMERS, "not-d", "source.lsn", "9223372036854775807", "source_lsn", 2**63 - 1),
        (GPS, "", "speed_kmh", "1e308", "speed_kmh", 1e308),
        (GPS, "", "accuracy_m", "18446744073709551617", "accuracy_m", float(2**64 + 1)),  # an int in a float column
        (BID_V1, "", "amount", "10000000000", "amount", 1e10),
        (BID_V2, "", "amount_cents", "1000000000000", "amount_cents", 10**12),
    ],
)
def test_the_edge_values_of_each_range_land_exactly(suite, variant, path, literal, column, landed):
    topic = suite.split("__")[0]
    routed = route(CONTRACTS[topic], [_with(_seed(suite, variant), path, literal)])
    assert len(routed.quarantined) == 0, routed.quarantined["reason"].to_pylist()
    assert routed.landed[column].to_pylist() == [landed]


def _duplicate(record: dict, path: str) -> bytes:
    """``record`` as JSON text with the last key of the object at ``path`` written twice, the
    second time with another value (DuckDB keeps the first, Python the last)."""
    text = json.dumps(record)
    *parents, leaf = path.split(".")
    obj = record
    for p in parents:
        obj = obj[p]
    original = f'"{leaf}": {json.dumps(obj[leaf])}'
    assert text.count(original) == 1
    return text.replace(original, f'{original}, "{leaf}": "second"').encode()


@pytest.mark.parametrize(
    ("suite", "variant", "path"),
    [
        (BID_V2, "", "bid_id"),  # root
        (BID_V2, "", "event_type"),  # a dispatch field: which suite would judge it?
        (CUSTOMERS, "not-d", "op"),
        (CUSTOMERS, "not-d", "after.email"),  # nested, personal data
        (CUSTOMERS, "not-d", "source.db"),
        (CUSTOMERS, "d", "before.customer_id"),
    ],
)
def test_a_key_twice_in_an_object_the_contract_reads_is_quarantined(suite, variant, path):
    topic = suite.split("__")[0]
    routed = route(CONTRACTS[topic], [_duplicate(_seed(suite, variant), path)])
    assert rules_by_offset(routed)[0] == [DUPLICATE_KEYS]
    assert routed.quarantined["contract"].to_pylist() == [None], "structural: no suite judged it"


def test_a_key_twice_anywhere_is_quarantined():
    record = _seed(BID_V2)
    record["extra"] = {"x": 1}
    nested = json.dumps(record).replace('"extra": {"x": 1}', '"extra": {"x": 1, "x": 2}').encode()
    root = (json.dumps(_seed(BID_V2))[:-1] + ', "zz": 1, "zz": 2}').encode()
    assert _judge("marketplace.bids", [nested, root]) == {0: [DUPLICATE_KEYS], 1: [DUPLICATE_KEYS]}


TIMESTAMP_FIELDS = sorted(
    {
        (c.name, r.column)
        for tc in CONTRACTS.values()
        for c in tc.contracts
        for r in c.rules
        if r.kind == "expect_column_values_to_be_dateutil_parseable"
    }
)


def _calendar_case(suite: str, column: str) -> dict:
    """A valid record of ``suite`` that carries ``column`` (CDC: a delete for the before image)."""
    variant = "" if not suite.startswith("cdc.") else ("d" if column.startswith("before.") else "not-d")
    return _seed(suite, variant)


@pytest.mark.parametrize(("suite", "column"), TIMESTAMP_FIELDS)
def test_every_date_and_timestamp_field_refuses_impossible_calendar_values(suite, column):
    record = _calendar_case(suite, column)
    topic = suite.split("__")[0]
    is_date = len(str(record_value(record, column))) == 10
    impossible = (
        ["2026-13-45", "2026-02-29", "2026-04-31", "2026-00-10", "1900-02-29", "0000-01-01"]
        if is_date
        else [
            "2026-02-30T10:00:00Z",
            "2026-02-29T10:00:00.123Z",
            "2026-13-01T00:00:00Z",
            "2026-01-01T25:00:00Z",
            "2026-01-01T23:60:00Z",
            "2026-01-01T23:59:60Z",
            "2026-01-01T24:00:00Z",  # DuckDB's cast reads it as the next day; no time of day
            "0000-01-01T00:00:00Z",  # DuckDB's 1 BC; no year 0 in GX's (Python's) calendar
        ]
    )
    values = [_with(json.loads(json.dumps(record)), column, json.dumps(v)) for v in impossible]
    judged = _judge(topic, values)
    rule = f"{column} is a calendar {'date' if is_date else 'timestamp'}"
    assert all(rule in judged[i] for i in range(len(values))), judged


@pytest.mark.parametrize(("suite", "column"), TIMESTAMP_FIELDS)
def test_every_date_and_timestamp_field_accepts_the_calendars_edges(suite, column):
    record = _calendar_case(suite, column)
    topic = suite.split("__")[0]
    is_date = len(str(record_value(record, column))) == 10
    edges = (
        ["2026-02-28", "2024-02-29", "2000-02-29", "0001-01-01", "9999-12-31"]
        if is_date
        else ["2026-02-28T23:59:59Z", "2024-02-29T00:00:00.5Z", "2026-12-31T23:59:59.123456789Z"]
    )
    values = []
    for v in edges:
        changed = json.loads(json.dumps(record))
        if column in ("window_start", "window_end"):  # window_end > window_start: the other at the far edge
            changed["window_start"], changed["window_end"] = "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z"
        values.append(_with(changed, column, json.dumps(v)))
    judged = _judge(topic, values)
    assert all(judged[i] == [] for i in range(len(values))), judged


def record_value(record: dict, path: str):
    for p in path.split("."):
        record = record[p]
    return record


def test_a_field_its_suite_does_not_declare_does_not_land():
    """appointment.started declares no window_start: another suite's column stays NULL in its
    rows, so a value no rule of that suite checked cannot reach staging's cast."""
    record = _seed("marketplace.appointments__appointment.started.v1")
    record["window_start"] = "not a timestamp"
    routed = route(CONTRACTS["marketplace.appointments"], [orjson.dumps(record)])
    assert len(routed.quarantined) == 0
    assert routed.landed["window_start"].to_pylist() == [None]
