"""Load the contract suites and derive what landing needs from them: columns, types, PII.

A suite is a GX 1.x ``ExpectationSuite`` JSON file per (topic, event_type, schema_version);
see docs/contracts-format.md. The landed schema of a topic is the union of its suites'
columns, so every micro-batch file of a topic has the same columns.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa

from pipelines.catalog import TOPICS
from pipelines.errors import TradelakeError

TYPE_LIST = "expect_column_values_to_be_in_type_list"

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
        return pa.string() if self.personal_data else self._types()[0]

    @property
    def sql_type(self) -> str:
        return self._types()[1]

    def _types(self) -> tuple[pa.DataType, str]:
        try:
            return _LANDED_TYPES[frozenset(self.type_list)]
        except KeyError:
            raise TradelakeError(f"column {self.path}: unsupported type_list {list(self.type_list)}") from None


@dataclass(frozen=True)
class Contract:
    """One suite: the rules for one (topic, event_type, schema_version)."""

    path: Path
    suite: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.suite["name"])

    @property
    def topic(self) -> str:
        return str(self.suite["meta"]["topic"])

    @property
    def event_type(self) -> str:
        return str(self.suite["meta"]["event_type"])

    @property
    def schema_version(self) -> int:
        return int(self.suite["meta"]["schema_version"])

    @property
    def expectations(self) -> list[Mapping[str, Any]]:
        return list(self.suite["expectations"])

    def columns(self) -> list[Column]:
        cols = []
        for e in self.expectations:
            if e["type"] == TYPE_LIST:
                cols.append(
                    Column(
                        path=e["kwargs"]["column"],
                        type_list=tuple(e["kwargs"]["type_list"]),
                        personal_data=bool(e.get("meta", {}).get("personal_data")),
                        free_text=bool(e.get("meta", {}).get("free_text")),
                    )
                )
        return cols


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


def _load_suite(path: Path) -> Contract:
    try:
        suite = json.loads(path.read_text())
        meta = suite["meta"]
        for field in ("topic", "event_type", "schema_version"):
            meta[field]
        for e in suite["expectations"]:
            rule = e.get("meta", {}).get("rule")
            if not rule:
                raise TradelakeError(f"{path}: expectation {e.get('type')} has no meta.rule")
            if not str(rule).isprintable():  # quarantine reasons are one line; routing joins rules with \x1f
                raise TradelakeError(f"{path}: meta.rule {rule!r} has control characters")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise TradelakeError(f"{path}: not a valid contract suite ({type(e).__name__}: {e})") from None
    return Contract(path=path, suite=suite)


def _group(contracts: Iterable[Contract]) -> dict[str, TopicContracts]:
    by_topic: dict[str, list[Contract]] = {}
    for c in contracts:
        by_topic.setdefault(c.topic, []).append(c)
    return {t.name: TopicContracts(t.name, t.is_cdc, tuple(by_topic.get(t.name, ()))) for t in TOPICS}


def load_contracts(directory: Path | None = None) -> dict[str, TopicContracts]:
    """Every catalog topic's contracts, read from ``directory`` (default: expectations/)."""
    return _load_contracts((directory or default_contracts_dir()).resolve())


@cache
def _load_contracts(root: Path) -> dict[str, TopicContracts]:
    if not root.is_dir():
        raise TradelakeError(f"contracts directory {root} does not exist")
    return _group(_load_suite(p) for p in sorted(root.glob("*/*.json")))
