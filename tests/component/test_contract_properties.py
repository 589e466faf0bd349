"""Property-based: no mutation of a valid record can get past the contract into a broken lake.

Valid records of every (topic, event_type, schema_version), and a CDC delete and change, come
from the simulator (judged valid by the router itself). Hypothesis mutates them: types (str,
int, float, bool, null, list, object), ranges (2^63, 2^64, negative, 1e400, NaN/Infinity
tokens), encodings (invalid UTF-8, a BOM, UTF-16, lone surrogate escapes, raw control
characters), structure (missing, extra, duplicated keys, nesting, truncation, non-object
roots, a Kafka null) and calendar values (Feb 30, month 13, hour 24, second 60). The records
go through the real landing router with the real contracts, and the rules of issue 13 are
checked against an independent strict parser (``strict_json``: Python's ``json`` made strict,
not DuckDB):

- every record lands, is quarantined with a reason naming its rules, or is a CDC tombstone,
  and records = landed + quarantined + tombstones;
- a landed record is strict RFC 8259 JSON (no NaN/Infinity, no number out of double range,
  no duplicate key, UTF-8 without lone surrogates), each landed column holds exactly the
  record's value (an int within 64 bits, a finite float), and its dates and timestamps are
  calendar values;
- no clear personal data of the seed is in a landed row or a quarantined record, and planted
  e-mails and phones are masked in free text and in raw bytes that do not parse.

A second test commits the mutated batches into real Delta tables with the real committer and
runs one real ``dbt build`` over them: whatever landed, the build is green.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.build import build
from pipelines.contracts import load_contracts
from pipelines.contracts.suites import Column
from pipelines.lake.schemas import BATCHES_TABLE
from pipelines.lake.tables import Lake
from pipelines.landing.committer import Committer
from pipelines.landing.router import RawRecords, Routed, TopicRouter, open_text_columns
from pipelines.landing.stats import IngestStats
from tests.component import contract_seeds
from tests.component.dbt_lake import empty_lake, start_stream
from tests.conftest import TEST_PII_KEY
from tests.routing_paths import route_both_ways

CONTRACTS = load_contracts()
MASKED = {topic: frozenset(open_text_columns(tc)) for topic, tc in CONTRACTS.items()}  # shapes masked on landing
PLANTED_EMAIL, PLANTED_PHONE = "zelda.quartermain@example.org", "+44 20 7946 0958"
EXAMPLES = 1500
PROPERTY_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI is reproducible
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)

# -- valid records -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Seed:
    topic: str
    kind: str  # event_type.vN, or the CDC suite and its variant (d, not-d)
    record: dict[str, Any]


@cache
def router(topic: str) -> TopicRouter:
    return TopicRouter(CONTRACTS[topic], TEST_PII_KEY.encode())


def route(topic: str, keys: list[bytes | None], values: list[bytes | None]) -> Routed:
    """The records routed by the fast path, which must agree exactly with the routing query
    alone (tests.routing_paths): every mutant is a differential case too."""
    n = len(values)
    records = RawRecords.from_lists([0] * n, list(range(n)), keys, values, [0] * n)
    return route_both_ways(CONTRACTS[topic], records, TEST_PII_KEY.encode())


@cache
def seeds() -> tuple[Seed, ...]:
    """One valid record per (topic, event_type, schema_version), and a delete and another
    change on the CDC topics (tests.component.contract_seeds: simulator records the router
    itself judged valid)."""
    found = tuple(
        Seed(suite.split("__")[0], f"{suite.split('__')[1]}{'.' + variant if variant else ''}", record)
        for (suite, variant), record in sorted(contract_seeds.seeds().items())
    )
    suites = {
        (c.name, v) for tc in CONTRACTS.values() for c in tc.contracts for v in (("d", "not-d") if tc.is_cdc else ("",))
    }
    assert len(found) == len(suites), f"no valid simulator record for {sorted(suites - set(contract_seeds.seeds()))}"
    return found


# -- JSON text with what no serializer writes ----------------------------------------------------


@dataclass(frozen=True)
class Raw:
    """JSON text put in as is: NaN, 1e400, a lone surrogate escape, a raw control character."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A JSON object as its (key, value) pairs, in order: a key may repeat."""

    pairs: tuple[tuple[str, Any], ...]


def tree(value: Any) -> Any:
    if isinstance(value, dict):
        return Obj(tuple((k, tree(v)) for k, v in value.items()))
    if isinstance(value, list):
        return [tree(v) for v in value]
    return value


def dump(node: Any) -> str:
    if isinstance(node, Raw):
        return node.text
    if isinstance(node, Obj):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{dump(v)}" for k, v in node.pairs) + "}"
    if isinstance(node, list):
        return "[" + ",".join(dump(v) for v in node) + "]"
    return json.dumps(node, ensure_ascii=False)


def paths(node: Any, prefix: tuple[int, ...] = (), name: str = "") -> Iterator[tuple[tuple[int, ...], str]]:
    """Every pair of every object: the positions leading to it, and its dotted name."""
    if isinstance(node, Obj):
        for i, (key, value) in enumerate(node.pairs):
            dotted = f"{name}.{key}" if name else key
            yield (*prefix, i), dotted
            yield from paths(value, (*prefix, i), dotted)


def edit(node: Obj, at: tuple[int, ...], change) -> Obj:
    """``node`` with the pairs of the object holding ``at`` replaced by ``change(pairs, index)``."""
    pairs = list(node.pairs)
    if len(at) == 1:
        return Obj(tuple(change(pairs, at[0])))
    key, child = pairs[at[0]]
    pairs[at[0]] = (key, edit(child, at[1:], change))
    return Obj(tuple(pairs))


# -- mutations -------------------------------------------------------------------------------------


def calendar_text(y: int, mo: int, d: int, h: int, mi: int, s: int, kind: int) -> str:
    day = f"{y:04d}-{mo:02d}-{d:02d}"
    return day if kind == 0 else f"{day}T{h:02d}:{mi:02d}:{s:02d}{'.123' if kind == 2 else ''}Z"


SPECIAL_VALUES = [
    Raw("NaN"),
    Raw("Infinity"),
    Raw("-Infinity"),
    Raw("1e400"),
    Raw("-1e400"),
    Raw("1E+2"),
    Raw("-0"),
    Raw('"plumb\\ud800er"'),  # a lone surrogate escape
    Raw('"a\x01b"'),  # a raw control character inside a string
    2**63,
    2**63 - 1,
    2**64,
    2**64 - 1,
    -(2**63),
    -(2**63) - 1,
    10**30,
    1e308,
    -1.0,
    0,
    "",
    "NaN",
    "1e400",
    "\ufeffbom",
    "2026-02-30T10:00:00Z",
    "2026-13-45",
    "2026-02-29",
    "2024-02-29",
    "2026-04-31T09:00:00.000Z",
    "2026-11-23T24:00:00Z",
    "2026-12-31T23:59:60Z",
    f"call me at {PLANTED_EMAIL} {PLANTED_PHONE}",
    [PLANTED_EMAIL],
    {"primary": PLANTED_EMAIL},
]
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.builds(
        calendar_text,
        st.integers(1, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 24),
        st.integers(0, 60),
        st.integers(0, 60),
        st.integers(0, 2),
    ),
)
VALUES = st.one_of(
    st.sampled_from(SPECIAL_VALUES).map(tree),
    LEAVES,
    st.lists(LEAVES, max_size=3),
    st.dictionaries(st.text(max_size=6), LEAVES, max_size=2).map(tree),
)
EDGE_VALUES = st.one_of(st.sampled_from(SPECIAL_VALUES).map(tree), LEAVES.filter(lambda v: isinstance(v, str)))
FIELD_NAMES = sorted({c.path.split(".")[-1] for tc in CONTRACTS.values() for c in tc.columns()})


@st.composite
def mutate_tree(draw, node: Obj, landed: frozenset[str]) -> tuple[Obj, str]:
    """One change at one pair; half the time at a landed column, the values staging casts."""
    every = list(paths(node))
    typed = [at for at, name in every if name in landed]
    at_landed = bool(typed) and draw(st.booleans())
    at = draw(st.sampled_from(typed if at_landed else [at for at, _ in every]))
    kind = draw(st.sampled_from(["replace"] * 6 + ["delete", "add", "duplicate", "wrap", "deep"]))
    if kind == "replace":
        value = draw(EDGE_VALUES if at_landed and draw(st.booleans()) else VALUES)
        return edit(node, at, lambda p, i: [*p[:i], (p[i][0], value), *p[i + 1 :]]), f"replace {at} by {dump(value)}"
    if kind == "delete":
        return edit(node, at, lambda p, i: p[:i] + p[i + 1 :]), f"delete {at}"
    if kind == "add":
        key = draw(st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=8)))
        value = draw(VALUES)
        return edit(node, at, lambda p, i: [*p, (key, value)]), f"add {key!r}: {dump(value)} beside {at}"
    if kind == "duplicate":
        value = draw(st.one_of(VALUES, st.just(None)))
        before = draw(st.booleans())

        def twice(p, i):
            extra = (p[i][0], value)
            return [*p[:i], extra, *p[i:]] if before else [*p[: i + 1], extra, *p[i + 1 :]]

        return edit(node, at, twice), f"duplicate {at} with {dump(value)} {'before' if before else 'after'}"
    if kind == "wrap":
        as_object = draw(st.booleans())

        def wrap(p, i):
            key, value = p[i]
            return [*p[:i], (key, Obj((("v", value),)) if as_object else [value]), *p[i + 1 :]]

        return edit(node, at, wrap), f"wrap {at} in {'an object' if as_object else 'a list'}"
    depth = draw(st.integers(50, 400))
    return edit(node, at, lambda p, i: [*p[:i], (p[i][0], Raw("[" * depth + "]" * depth)), *p[i + 1 :]]), (
        f"nest {at} {depth} deep"
    )


BAD_BYTES = [b"\xff", b"\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xef\xbb\xbf", b"\x00", b"\x1f", b"\xf4\x90\x80\x80"]


@st.composite
def mutate_bytes(draw, value: bytes) -> tuple[bytes | None, str]:
    """One change to the serialized bytes: encoding, truncation, trailing content, the root."""
    kind = draw(st.sampled_from(["truncate", "insert", "bom", "utf16", "trailing", "root", "kafka-null"]))
    if kind == "truncate":
        at = draw(st.integers(0, max(len(value) - 1, 0)))
        return value[:at], f"truncate at {at}"
    if kind == "insert":
        at, bad = draw(st.integers(0, len(value))), draw(st.sampled_from(BAD_BYTES))
        return value[:at] + bad + value[at:], f"insert {bad!r} at {at}"
    if kind == "bom":
        return b"\xef\xbb\xbf" + value, "BOM"
    if kind == "utf16":
        return value.decode("utf-8", "surrogatepass").encode("utf-16", "surrogatepass"), "UTF-16"
    if kind == "trailing":
        junk = draw(st.sampled_from([b" x", b"}", b",", b" {}", b"\n[1]"]))
        return value + junk, f"trailing {junk!r}"
    if kind == "root":
        root = draw(st.sampled_from([b"[" + value + b"]", b"null", b"42", b'"text"', b"true", b"[]", b""]))
        return root, f"root {root[:20]!r}"
    return None, "a Kafka null value"


class Mutant:
    """A mutated record; its repr (in failure messages) is how it was made and its bytes, not
    the whole seed."""

    __slots__ = ("how", "seed", "value")

    def __init__(self, seed: Seed, value: bytes | None, how: str) -> None:
        self.seed, self.value, self.how = seed, value, how

    def __repr__(self) -> str:
        shown = self.value if self.value is None or len(self.value) <= 400 else self.value[:400] + b"..."
        return f"Mutant({self.how!r}, {shown!r})"


@cache
def landed_paths(topic: str) -> frozenset[str]:
    return frozenset(c.path for c in CONTRACTS[topic].landed_columns())


@st.composite
def mutants(draw) -> Mutant:
    seed = draw(st.sampled_from(seeds()))
    node, steps = tree(seed.record), []
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):  # mostly one change: the record may still land
        node, how = draw(mutate_tree(node, landed_paths(seed.topic)))
        steps.append(how)
    value: bytes | None = dump(node).encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 3)) == 0:
        value, how = draw(mutate_bytes(value))
        steps.append(how)
    return Mutant(seed, value, f"{seed.topic} {seed.kind}: " + "; ".join(steps))


BATCHES = st.lists(mutants(), min_size=1, max_size=40, unique_by=lambda m: (m.seed.topic, m.value))

# -- the independent oracle -------------------------------------------------------------------------


class NotStrict(ValueError):
    """Why a value is not strict RFC 8259 JSON in UTF-8: ``args`` = (class, detail)."""


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise NotStrict("a duplicate key", next(k for k in keys if keys.count(k) > 1))
    return dict(pairs)


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise NotStrict("a number out of double range", text)
    return number


def _constant(name: str) -> None:
    raise NotStrict("NaN or Infinity", name)


def _no_lone_surrogates(node: Any) -> None:
    texts = [node] if isinstance(node, str) else []
    if isinstance(node, dict):
        texts += list(node)
        for v in node.values():
            _no_lone_surrogates(v)
    elif isinstance(node, list):
        for v in node:
            _no_lone_surrogates(v)
    if any(0xD800 <= ord(ch) <= 0xDFFF for t in texts for ch in t):
        raise NotStrict("a lone surrogate escape (no Unicode text)", "")


def strict_json(value: bytes | None) -> Any:
    """The value parsed as RFC 8259 says, or NotStrict. A leading BOM is ignored (§8.1 lets a
    parser ignore it), control characters in strings are refused (Python's strict mode)."""
    if value is None:
        raise NotStrict("a null value", "")
    try:
        text = value.decode("utf-8").removeprefix("\ufeff")
        parsed = json.loads(text, object_pairs_hook=_unique, parse_float=_finite, parse_constant=_constant)
    except UnicodeDecodeError as e:
        raise NotStrict("not UTF-8", str(e)) from None
    except json.JSONDecodeError as e:
        raise NotStrict("not JSON", str(e)) from None
    except RecursionError:
        raise NotStrict("nested too deep for Python's parser", "") from None
    _no_lone_surrogates(parsed)
    return parsed


def lenient_json(value: bytes | None) -> Any:
    """Parsed as forgiving readers do (NaN, repeated keys); None when it does not parse at all."""
    try:
        return None if value is None else json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return None


def at_path(record: Any, path: str) -> Any:
    for part in path.split("."):
        record = record.get(part) if isinstance(record, dict) else None
    return record


_CALENDAR = re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d{1,9})?Z)?$")


def calendar_valid(text: str) -> bool:
    """A real date (and time of day): Feb 30, month 13, hour 24 or second 60 are not; a leap
    second is RFC 3339 syntax but no TIMESTAMPTZ, so staging could not cast it."""
    m = _CALENDAR.match(text)
    if not m:
        return False
    y, mo, d, h, mi, s = (int(g or 0) for g in m.groups())
    try:
        datetime(y, mo, d, h, mi, s)
    except ValueError:
        return False
    return True


@cache
def calendar_columns(topic: str) -> frozenset[str]:
    """Landed columns whose contract rule is a date or timestamp pattern."""
    found = set()
    for contract in CONTRACTS[topic].contracts:
        for rule in contract.rules:
            if rule.kind == "expect_column_values_to_match_regex" and r"\d{4}-\d{2}-\d{2}" in rule.kwargs["regex"]:
                found.add(rule.column)
    return frozenset(c.name for c in CONTRACTS[topic].landed_columns() if c.path in found)


def declared_paths(topic: str, row: dict) -> set[str]:
    """The fields the suite that judged a landed row declares (a topic's table has the columns
    of all its suites: a field another version declares is not this record's to keep)."""
    tc = CONTRACTS[topic]
    suite = next(
        c
        for c in tc.contracts
        if tc.is_cdc or (c.event_type, c.schema_version) == (row["event_type"], row["schema_version"])
    )
    return {col.path for col in suite.columns()}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def column_problem(c: Column, expected: Any, landed: Any, masked: frozenset[str] = frozenset()) -> str | None:
    """Why ``landed`` is not the record's value ``expected`` in the column's declared type."""
    if c.personal_data:
        clear = (
            isinstance(expected, str)
            and landed is not None
            and (landed == expected or (expected in str(landed) and len(expected) >= 6))
        )
        return f"{c.name} holds the clear value" if clear or (expected is None) != (landed is None) else None
    if c.free_text or c.name in masked:
        return None  # shapes masked (free text, text no rule confines): checked with the personal data
    if expected is None:
        return None if landed is None else f"{c.name} is {landed!r} for an absent/null field"
    kind = c.sql_type
    if kind == "BIGINT":
        ok = _is_int(expected) and -(2**63) <= expected < 2**63 and landed == expected
    elif kind == "DOUBLE":
        ok = (_is_int(expected) or isinstance(expected, float)) and landed is not None
        ok = ok and math.isfinite(float(expected)) and math.isclose(landed, float(expected), rel_tol=1e-12)
    elif kind == "BOOLEAN":
        ok = isinstance(expected, bool) and landed is expected
    else:
        ok = isinstance(expected, str) and landed == expected
    return None if ok else f"{c.name} landed as {landed!r}, the record says {expected!r} ({kind})"


def seed_personal_data(seed: Seed) -> list[str]:
    paths_ = CONTRACTS[seed.topic].personal_data_paths()
    return [v for p in paths_ if isinstance(v := at_path(seed.record, p), str) and len(v) >= 6]


def _contains(blob: bytes | str | None, needles: list[str]) -> list[str]:
    if blob is None:
        return []
    text = (blob if isinstance(blob, bytes) else blob.encode("utf-8", "surrogatepass")).lower()
    return [n for n in needles if n.lower().encode() in text]


@dataclass(frozen=True)
class Problem:
    kind: str  # the class of problem, for the summary
    mutant: Mutant
    detail: str


def _crashing(topic: str, ms: list[Mutant]) -> list[tuple[Mutant, str]]:
    """The records whose routing raises, found by halving (one record must never stop landing)."""
    try:
        route(topic, [b"k"] * len(ms), [m.value for m in ms])
        return []
    except Exception as e:
        if len(ms) == 1:
            return [(ms[0], f"{type(e).__name__}: {e}")]
        return _crashing(topic, ms[: len(ms) // 2]) + _crashing(topic, ms[len(ms) // 2 :])


def judge(batch: list[Mutant]) -> list[Problem]:
    """Every way the routing of ``batch`` breaks issue 13's rules (empty: none)."""
    problems: list[Problem] = []
    by_topic: dict[str, list[Mutant]] = defaultdict(list)
    for m in batch:
        by_topic[m.seed.topic].append(m)
    for topic, ms in by_topic.items():
        crashed = _crashing(topic, ms)
        problems += [Problem("routing raised (one record stops ingest)", m, why) for m, why in crashed]
        ms = [m for m in ms if all(m is not c for c, _ in crashed)]
        routed = route(topic, [b"k"] * len(ms), [m.value for m in ms])
        landed = {r["_offset"]: r for r in routed.landed.to_pylist()}
        quarantined = {r["_offset"]: r for r in routed.quarantined.to_pylist()}
        tombstones = len(routed.tombstone_partitions)
        if len(landed) + len(quarantined) + tombstones != len(ms) or set(landed) & set(quarantined):
            counts = f"{len(ms)} records != {len(landed)} + {len(quarantined)} + {tombstones}"
            problems.append(Problem("count identity", ms[0], counts))
        for i, m in enumerate(ms):
            problems += [
                Problem(kind, m, detail) for kind, detail in judge_one(topic, m, landed.get(i), quarantined.get(i))
            ]
    return problems


def judge_one(topic: str, m: Mutant, row: dict | None, q: dict | None) -> list[tuple[str, str]]:
    """(kind, detail) of each rule the routing of one record broke."""
    problems = []
    personal = seed_personal_data(m.seed)
    if row is None and q is None and not (m.value is None and CONTRACTS[topic].is_cdc):
        problems.append(("neither landed, quarantined nor a tombstone", ""))
    if q is not None:
        if not q["rules"] or not (q["reason"] or "").strip():
            problems.append(("quarantined without a rule or reason", repr(q["reason"])))
        elif not all(rule in q["reason"] for rule in q["rules"]):
            problems.append(("the reason does not name its rules", f"{q['reason']!r} vs {q['rules']}"))
        shaped = [PLANTED_EMAIL, PLANTED_PHONE] if lenient_json(m.value) is None else []
        if leaked := _contains(q["raw"], personal + shaped) + _contains(q["reason"], personal + shaped):
            problems.append(("personal data in clear in quarantine", f"{leaked} in {q['raw'][:300]!r}"))
    if row is None:
        return problems
    try:
        record = strict_json(m.value)
    except NotStrict as e:
        return [*problems, (f"landed, but not strict JSON: {e.args[0]}", e.args[1])]
    if not isinstance(record, dict):
        return [*problems, ("landed, but not a JSON object", "")]
    declared = declared_paths(topic, row)
    for c in CONTRACTS[topic].landed_columns():
        if (
            c.path in declared
            and (why := column_problem(c, at_path(record, c.path), row[c.name], MASKED[topic])) is not None
        ):
            problems.append((f"landed value differs from the record ({c.sql_type} column)", why))
        if c.name in calendar_columns(topic) and row[c.name] is not None and not calendar_valid(row[c.name]):
            problems.append(("landed, but no calendar date/time", f"{c.name} = {row[c.name]!r}"))
        if c.name in MASKED[topic] and (leaked := _contains(row[c.name], [PLANTED_EMAIL, PLANTED_PHONE])):
            problems.append(("free text landed with an e-mail/phone in clear", f"{c.name}: {leaked}"))
    if leaked := _contains(orjson.dumps(row, default=str), personal):
        problems.append(("personal data in clear in the landed row", str(leaked)))
    return problems


def _shown(value: bytes | None) -> str:
    return repr(value if value is None else value[:160])


def summary(problems: list[Problem]) -> str:
    """The problems by kind, most frequent first, with a few examples each."""
    by_kind: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        by_kind[p.kind].append(p)
    lines = [f"{len(problems)} problem(s) of {len(by_kind)} kind(s):"]
    for kind, ps in sorted(by_kind.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"- {kind}: {len(ps)}")
        lines += [
            f"    [{p.mutant.how}] {p.detail[:300]} <- {p.mutant.value and p.mutant.value[:160]!r}" for p in ps[:3]
        ]
    return "\n".join(lines)


# -- the tests --------------------------------------------------------------------------------------


@cache
def examples() -> tuple[Mutant, ...]:
    """The mutated records of every Hypothesis example, generated once for both tests.

    Hypothesis generates (derandomized: the same examples on every run); the records are
    judged all together, not example by example, so the failure is the full list of problems
    by kind (each names its mutation and bytes) rather than one shrunk example, and one dbt
    build covers every example (a build per example would take minutes each).
    """
    found: list[Mutant] = []

    @PROPERTY_SETTINGS
    @given(BATCHES)
    def collect(batch: list[Mutant]) -> None:
        found.extend(batch)

    collect()
    return tuple(found)


def test_every_mutated_record_lands_faithfully_or_is_quarantined_with_its_rule():
    problems = judge(list(examples()))
    assert not problems, summary(problems)


def _commit(settings_, batches: list[list[Mutant]]) -> dict[str, int]:
    """Commit each batch with the real committer (as landing does: topic tables, quarantine,
    _batches) at consecutive offsets of partition 0 of each topic; the records per topic."""
    lake = Lake(settings_.lake)
    topic_ids = {t: f"property-{t}" for t in CONTRACTS}
    for t in CONTRACTS:
        start_stream(settings_, t, topic_ids[t], 1, "first seen")
    committer = Committer(
        lake,
        {t: router(t) for t in CONTRACTS},
        CONTRACTS,
        topic_ids,
        {},
        1,
        IngestStats(),
        lambda *_: None,
    )
    offsets: dict[str, int] = defaultdict(int)
    for batch_id, batch in enumerate(batches, start=1):
        values: dict[str, list[bytes | None]] = defaultdict(list)
        for m in [*batch, *(Mutant(s, orjson.dumps(s.record), "seed") for s in seeds())]:
            values[m.seed.topic].append(m.value)
        topics, starts = {}, {}
        for topic, vs in values.items():
            n, first = len(vs), offsets[topic]
            topics[topic] = RawRecords.from_lists([0] * n, list(range(first, first + n)), [b"k"] * n, vs, [0] * n)
            starts[(topic, 0)] = first
            offsets[topic] += n
        committer.commit(committer.route(topics, batch_id, starts))
    return dict(offsets)


def test_whatever_lands_the_build_is_green(tmp_path: Path):
    settings_ = empty_lake(tmp_path / "home", {"TRADELAKE_PII_KEY": TEST_PII_KEY})
    mutated = list(examples())
    records = _commit(settings_, [mutated[i::4] for i in range(4)])  # in 4 batches
    counts = Lake(settings_.lake).read(BATCHES_TABLE).to_pylist()
    per_topic: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for b in counts:
        per_topic[b["topic"]][0] += b["records"]
        per_topic[b["topic"]][1] += b["landed"] + b["quarantined"] + b["tombstones"]
    assert {t: (n, n) for t, n in records.items()} == {t: tuple(v) for t, v in per_topic.items()}
    result = build(settings_)  # a failing model or test raises, naming them
    assert result.models and result.tests, result.summary()
