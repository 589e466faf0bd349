"""Load the contract suites into a typed model, once: every reader uses the same rules.

A suite is a GX 1.x ``ExpectationSuite`` JSON file per (topic, event_type, schema_version);
see docs/contracts-format.md. Each file is parsed and validated here into a ``Contract`` of
``Rule``s (name, kind, columns, severity, mostly, condition, kwargs); the router's compiler,
``contracts check``, the validation summary, the Dagster checks and GX Data Docs all read
that model, never the JSON, so a default (``mostly``, ``severity``) has one definition. The
landed schema of a topic is the union of its suites' columns, so every micro-batch file of a
topic has the same columns.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pipelines.catalog import TOPICS
from pipelines.errors import TradelakeError

if TYPE_CHECKING:
    import great_expectations as gx

TYPE_LIST = "expect_column_values_to_be_in_type_list"

# A rule that declares no ``mostly`` must hold for this share of the rows a suite judged, in
# the validation summary and in the Dagster check alike. Not GX's 1.0: quarantine already
# rejects every bad record; ``mostly`` judges whether a batch as a whole is fit to build on,
# and at 1.0 one bad record among thousands would block every mart downstream.
DEFAULT_MOSTLY = 0.95
SEVERITIES = ("critical", "warning", "info")  # GX 1.x FailureSeverity; only critical quarantines

# Expectation types the landing router compiles, and the kwargs that name their columns.
COLUMN_KWARGS: dict[str, tuple[str, ...]] = {
    "expect_column_to_exist": ("column",),
    "expect_column_values_to_not_be_null": ("column",),
    TYPE_LIST: ("column",),
    "expect_column_values_to_be_in_set": ("column",),
    "expect_column_values_to_be_between": ("column",),
    "expect_column_values_to_match_regex": ("column",),
    "expect_column_values_to_be_dateutil_parseable": ("column",),
    "expect_column_pair_values_a_to_be_greater_than_b": ("column_A", "column_B"),
    "unexpected_rows_expectation": (),
}
# Further kwargs an expectation type cannot do without.
_REQUIRED_KWARGS: dict[str, tuple[str, ...]] = {
    TYPE_LIST: ("type_list",),
    "expect_column_values_to_be_in_set": ("value_set",),
    "expect_column_values_to_match_regex": ("regex",),
    "unexpected_rows_expectation": ("unexpected_rows_query",),
}

# type_list -> (Arrow type, DuckDB type) of the landed column; dict columns are not landed.
_LANDED_TYPES: dict[frozenset[str], tuple[pa.DataType, str]] = {
    frozenset({"str"}): (pa.string(), "VARCHAR"),
    frozenset({"int"}): (pa.int64(), "BIGINT"),
    frozenset({"float"}): (pa.float64(), "DOUBLE"),
    frozenset({"int", "float"}): (pa.float64(), "DOUBLE"),
    frozenset({"bool"}): (pa.bool_(), "BOOLEAN"),
}
# JSON types (as DuckDB's json_type names them) that each contract type accepts.
JSON_TYPES: dict[str, tuple[str, ...]] = {
    "str": ("VARCHAR",),
    "int": ("BIGINT", "UBIGINT"),
    "float": ("BIGINT", "UBIGINT", "DOUBLE"),
    "bool": ("BOOLEAN",),
    "dict": ("OBJECT",),
}

_ROW_CONDITION = re.compile(r"""^\s*([\w.]+)\s*(==|!=)\s*["']([^"']*)["']\s*$""")


def default_contracts_dir() -> Path:
    """``TRADELAKE_CONTRACTS`` or the repository's ``expectations/`` folder."""
    configured = os.environ.get("TRADELAKE_CONTRACTS")
    return Path(configured) if configured else Path(__file__).resolve().parents[2] / "expectations"


@dataclass(frozen=True)
class Column:
    """A field of the message value, by JSON path, and how it lands."""

    path: str
    type_list: tuple[str, ...]
    personal_data: bool = False
    free_text: bool = False  # text people type: e-mails and phone numbers in it are masked

    @property
    def name(self) -> str:
        base = self.path.replace(".", "_").lower()
        return f"{base}_hash" if self.personal_data else base

    @property
    def landed(self) -> bool:
        return "dict" not in self.type_list

    @property
    def arrow_type(self) -> pa.DataType:
        return pa.string() if self.personal_data else self.value_type

    @property
    def value_type(self) -> pa.DataType:
        """The Arrow type of the value as the record carries it (before any hashing)."""
        return self._types()[0]

    @property
    def sql_type(self) -> str:
        return self._types()[1]

    def _types(self) -> tuple[pa.DataType, str]:
        try:
            return _LANDED_TYPES[frozenset(self.type_list)]
        except KeyError:
            raise TradelakeError(f"column {self.path}: unsupported type_list {list(self.type_list)}") from None


@dataclass(frozen=True)
class Condition:
    """A rule's ``row_condition``: the rule applies where ``path`` equals (or not) ``value``."""

    path: str
    equal: bool
    value: str


@dataclass(frozen=True)
class Rule:
    """One expectation of a suite, validated: what it checks and how much it may fail."""

    name: str  # meta.rule: the quarantine reason, unique within its suite
    kind: str  # the GX expectation type
    columns: tuple[str, ...]  # the column paths it reads (column, or column_A and column_B)
    severity: str  # critical rules quarantine; warning and info rules are only counted
    mostly: float  # share of judged rows that must pass (its own kwarg, else DEFAULT_MOSTLY)
    condition: Condition | None
    kwargs: Mapping[str, Any]
    personal_data: bool = False
    free_text: bool = False

    @property
    def critical(self) -> bool:
        return self.severity == "critical"

    @property
    def column(self) -> str | None:
        return self.columns[0] if self.columns else None

    def as_column(self) -> Column | None:
        """The landed column this rule defines (type-list rules only)."""
        if self.kind != TYPE_LIST:
            return None
        return Column(self.columns[0], tuple(self.kwargs["type_list"]), self.personal_data, self.free_text)


@dataclass(frozen=True)
class Contract:
    """One suite: the rules for one (topic, event_type, schema_version)."""

    path: Path
    name: str
    topic: str
    event_type: str
    schema_version: int
    rules: tuple[Rule, ...]
    document: Mapping[str, Any] = field(repr=False, compare=False)  # the file as written, for GX itself

    def columns(self) -> list[Column]:
        return [c for r in self.rules if (c := r.as_column()) is not None]

    def gx_suite(self) -> gx.ExpectationSuite:
        """The suite as Great Expectations loads it (Data Docs, ``contracts check``)."""
        import great_expectations as gx  # heavy; landing never needs it

        return gx.ExpectationSuite(**json.loads(json.dumps(self.document)))


@dataclass(frozen=True)
class TopicContracts:
    """All contracts of one topic and the landed schema they imply."""

    topic: str
    is_cdc: bool
    contracts: tuple[Contract, ...]

    def columns(self) -> list[Column]:
        """Union of the suites' columns, first definition wins; a path must keep one type."""
        seen: dict[str, Column] = {}
        for contract in self.contracts:
            for col in contract.columns():
                known = seen.setdefault(col.path, col)
                if known != col:
                    raise TradelakeError(
                        f"{contract.path}: column {col.path} is {list(col.type_list)} here but "
                        f"{list(known.type_list)} in another suite of {self.topic}"
                    )
        return list(seen.values())

    def landed_columns(self) -> list[Column]:
        return [c for c in self.columns() if c.landed]

    def personal_data_paths(self) -> list[str]:
        return [c.path for c in self.columns() if c.personal_data]

    def free_text_columns(self) -> list[Column]:
        return [c for c in self.columns() if c.free_text]


def _condition(raw: Any, where: str) -> Condition | None:
    if not raw:
        return None
    m = _ROW_CONDITION.match(str(raw))
    if not m:
        raise TradelakeError(f'{where}: row_condition {raw!r} is not of the form column=="value"')
    path, op, value = m.groups()
    return Condition(path, op == "==", value)


def _rule(e: Mapping[str, Any], where: str) -> Rule:
    kind = e["type"]
    kwargs = e.get("kwargs") or {}
    meta = e.get("meta") or {}
    name = meta.get("rule")
    if not name:
        raise TradelakeError(f"{where}: expectation {kind} has no meta.rule")
    if not str(name).isprintable():  # quarantine reasons are one line; routing joins rules with \x1f
        raise TradelakeError(f"{where}: meta.rule {name!r} has control characters")
    if kind not in COLUMN_KWARGS:
        raise TradelakeError(f"{where}: expectation type {kind} is not supported by the landing router")
    missing = [k for k in (*COLUMN_KWARGS[kind], *_REQUIRED_KWARGS.get(kind, ())) if kwargs.get(k) is None]
    if missing:
        raise TradelakeError(f"{where}: {kind} needs kwargs {missing}")
    if kind == TYPE_LIST and not set(kwargs["type_list"]) <= set(JSON_TYPES):
        raise TradelakeError(f"{where}: type_list {kwargs['type_list']} outside {sorted(JSON_TYPES)}")
    severity = str(e.get("severity") or "critical").lower()
    if severity not in SEVERITIES:
        raise TradelakeError(f"{where}: severity {severity!r} is not one of {list(SEVERITIES)}")
    mostly = float(kwargs.get("mostly", DEFAULT_MOSTLY))
    if not 0.0 <= mostly <= 1.0:
        raise TradelakeError(f"{where}: mostly {mostly} is not between 0 and 1")
    return Rule(
        name=str(name),
        kind=kind,
        columns=tuple(str(kwargs[k]) for k in COLUMN_KWARGS[kind]),
        severity=severity,
        mostly=mostly,
        condition=_condition(e.get("row_condition") or kwargs.get("row_condition"), where),
        kwargs=MappingProxyType(dict(kwargs)),
        personal_data=bool(meta.get("personal_data")),
        free_text=bool(meta.get("free_text")),
    )


def load_suite(path: Path) -> Contract:
    """One suite file parsed and checked (a contract of any topic: see contracts.outbound)."""
    try:
        suite = json.loads(path.read_text())
        meta = suite["meta"]
        rules = tuple(_rule(e, f"{path} expectation #{i + 1}") for i, e in enumerate(suite["expectations"]))
        contract = Contract(
            path=path,
            name=str(suite["name"]),
            topic=str(meta["topic"]),
            event_type=str(meta["event_type"]),
            schema_version=int(meta["schema_version"]),
            rules=rules,
            document=suite,
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise TradelakeError(f"{path}: not a valid contract suite ({type(e).__name__}: {e})") from None
    names = [r.name for r in rules]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise TradelakeError(f"{path}: duplicate rule names {dupes} (a rule name is its quarantine reason)")
    return contract


def _group(contracts: Iterable[Contract]) -> dict[str, TopicContracts]:
    by_topic: dict[str, list[Contract]] = {t.name: [] for t in TOPICS}
    for c in contracts:
        if c.topic not in by_topic:
            raise TradelakeError(f"{c.path}: meta.topic {c.topic!r} is not a catalog topic")
        by_topic[c.topic].append(c)
    return {t.name: TopicContracts(t.name, t.is_cdc, tuple(by_topic[t.name])) for t in TOPICS}


def load_contracts(directory: Path | None = None) -> dict[str, TopicContracts]:
    """Every catalog topic's contracts, read from ``directory`` (default: expectations/).

    Parsed once per version of the files: the cache is keyed on each suite file's path,
    inode, modification time and size, so a reader (``contracts check``, the Dagster
    checks, the code location) sees an edited contract on its next call. A landing process
    compiles its routers once, at start, and keeps judging with those contracts until it
    restarts, so that one run never mixes two versions of a rule.
    """
    root = (directory or default_contracts_dir()).resolve()
    if not root.is_dir():
        raise TradelakeError(f"contracts directory {root} does not exist")
    return _load_contracts(root, _fingerprint(root))


def _fingerprint(root: Path) -> tuple[tuple[str, int, int, int], ...]:
    found = []
    for p in sorted(root.glob("*/*.json")):
        try:
            st = p.stat()
        except OSError as e:
            raise TradelakeError(f"{p}: cannot read the contract ({e.strerror})") from None
        found.append((str(p), st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(found)


@lru_cache(maxsize=4)
def _load_contracts(root: Path, files: tuple[tuple[str, int, int, int], ...]) -> dict[str, TopicContracts]:
    return _group(load_suite(Path(p)) for p, *_ in files)
