"""Malformed traffic: every way a record can break its contract, labelled by class.

Each class breaks exactly one rule a landing contract states (SPEC §2, §3: not JSON, wrong
type, unknown enum…), so every malformed record must end in quarantine with a reason. The
injector spreads each topic's malformed records over the classes the record allows, always
picking the class used least so far on that topic (the rarer class on a tie), so that even a
modest rate exercises all of them everywhere.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import orjson

from .catalog import APPOINTMENTS, CDC_TOPICS, SETTLEMENTS
from .clock import european
from .model import Event, Guard

MALFORMED_CLASSES: tuple[str, ...] = (
    "not_json",
    "not_utf8",
    "not_object",
    "missing_event_id",
    "schema_version_wrong_type",
    "unknown_version",
    "unknown_event_type",
    "missing_required_field",
    "wrong_field_type",
    "unknown_enum",
    "out_of_range",
    "bad_timestamp",
    "bad_uuid",
    "net_not_gross_minus_fee",
    "window_end_before_start",
    "cdc_bad_op",
)
_BYTES_CLASSES = ("not_json", "not_utf8", "not_object")
_ENVELOPE_CLASSES = (
    *_BYTES_CLASSES,
    "missing_event_id",
    "schema_version_wrong_type",
    "unknown_version",
    "unknown_event_type",
    "missing_required_field",
    "wrong_field_type",
    "bad_timestamp",
    "bad_uuid",
)
_CDC_CLASSES = (*_BYTES_CLASSES, "missing_required_field", "wrong_field_type", "cdc_bad_op")
_CDC_ROW_CLASSES = (*_CDC_CLASSES, "unknown_enum", "bad_timestamp")

# Tie-break between equally used classes: the ones few records allow come first, so that they
# are not starved by the generic ones every GPS ping allows.
_SPECIFIC = ("cdc_bad_op", "net_not_gross_minus_fee", "window_end_before_start", "unknown_enum", "out_of_range")
_RARITY: dict[str, int] = {
    cls: rank for rank, cls in enumerate((*_SPECIFIC, *(c for c in MALFORMED_CLASSES if c not in _SPECIFIC)))
}

# A value outside each enumeration, for the ``unknown_enum`` class.
_UNKNOWN_ENUMS: dict[str, str] = {
    "trade": "astronaut",
    "region": "mars",
    "urgency": "whenever",
    "currency": "EUR",
    "cancelled_by": "aliens",
    "type": "bonus",
}
# A number that breaks each ranged field, for the ``out_of_range`` class.
_OUT_OF_RANGE: dict[str, Callable[[Any], Any]] = {
    "lat": lambda _: 123.456,
    "site_lat": lambda _: -97.5,
    "lon": lambda _: 222.0,
    "site_lon": lambda _: 190.25,
    "speed_kmh": lambda _: -12.5,
    "accuracy_m": lambda _: -3.0,
    "rating": lambda _: 7,
    "amount_cents": lambda v: -v,
    "amount": lambda v: -v,
    "budget_cents": lambda v: -v,
}
# Fields whose type is worth getting wrong, in order of preference.
_TYPED_FIELDS: tuple[str, ...] = ("amount_cents", "amount", "gross_cents", "rating", "budget_cents", "site_lat", "lat")


def _ranged(event: Event) -> list[str]:
    fields = event.fields
    ranged = [f for f in _OUT_OF_RANGE if fields.get(f) is not None]
    if "fee_cents" in fields:
        ranged.append("fee_cents")
    return ranged


def applicable(event: Event) -> tuple[str, ...]:
    """The malformed classes that make sense for this record."""
    if event.topic in CDC_TOPICS:
        return _CDC_ROW_CLASSES if event.fields["after"] is not None else _CDC_CLASSES
    classes = list(_ENVELOPE_CLASSES)
    if any(field in event.fields for field in _UNKNOWN_ENUMS):
        classes.append("unknown_enum")
    if _ranged(event):
        classes.append("out_of_range")
    if event.topic == SETTLEMENTS:
        classes.append("net_not_gross_minus_fee")
    if event.topic == APPOINTMENTS and "window_start" in event.fields:
        classes.append("window_end_before_start")
    return tuple(classes)


class Injector:
    """Decides which records are malformed and how, and builds their bytes."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self._rng = rng
        self._rate = rate
        self._used: dict[tuple[str, str], int] = {}  # (topic, class) -> records so far

    def pick(self, event: Event) -> str | None:
        """The class to inflict on this record, or None to leave it intact."""
        if event.guard is Guard.PROTECTED or self._rng.random() >= self._rate:
            return None
        topic = event.topic
        chosen = min(applicable(event), key=lambda c: (self._used.get((topic, c), 0), _RARITY[c]))
        self._used[(topic, chosen)] = self._used.get((topic, chosen), 0) + 1
        return chosen

    def corrupt(self, cls: str, event: Event, value: dict[str, Any]) -> bytes:
        """The malformed bytes of ``value`` (the valid record's value, modified in place)."""
        rng = self._rng
        if cls == "not_json":
            data = orjson.dumps(value)
            return data[: rng.randint(1, len(data) - 1)]
        if cls == "not_utf8":
            data = orjson.dumps(value)
            at = data.index(b'":"') + 3  # inside the first string value
            return data[:at] + b"\xff\xfe" + data[at:]
        if cls == "not_object":
            return (
                orjson.dumps([value])
                if rng.random() < 0.5
                else orjson.dumps(str(value.get("op", value.get("event_type"))))
            )
        if event.topic in CDC_TOPICS:
            _corrupt_change(cls, value)
        else:
            _corrupt_envelope(cls, event, value, rng)
        return orjson.dumps(value)


def _corrupt_change(cls: str, value: dict[str, Any]) -> None:
    after = value["after"]
    if cls == "missing_required_field":
        del value["op"]
    elif cls == "wrong_field_type":
        value["ts_ms"] = str(value["ts_ms"])
    elif cls == "cdc_bad_op":
        value["op"] = "x"
    elif cls == "unknown_enum" and isinstance(after, dict):
        after["region"] = _UNKNOWN_ENUMS["region"]
    elif cls == "bad_timestamp" and isinstance(after, dict):
        after["updated_at"] = european(value["ts_ms"])


def _corrupt_envelope(cls: str, event: Event, value: dict[str, Any], rng: random.Random) -> None:
    payload = event.fields
    if cls == "missing_event_id":
        del value["event_id"]
    elif cls == "schema_version_wrong_type":
        value["schema_version"] = str(event.version)
    elif cls == "unknown_version":
        value["schema_version"] = 9
    elif cls == "unknown_event_type":
        value["event_type"] = event.event_type.split(".")[0] + ".archived"
    elif cls == "bad_timestamp":
        value["event_time"] = european(event.time_ms)
    elif cls == "bad_uuid":
        value["event_id"] = "not-a-uuid"
    elif cls == "missing_required_field":
        del value[next(iter(payload))]  # the first payload field is always a required id
    elif cls == "wrong_field_type":
        field = next((f for f in _TYPED_FIELDS if payload.get(f) is not None), None)
        if field is None:
            first = next(iter(payload))
            value[first] = int("".join(ch for ch in str(payload[first]) if ch.isdigit()) or 0)
        else:
            value[field] = str(payload[field])
    elif cls == "unknown_enum":
        field = rng.choice([f for f in _UNKNOWN_ENUMS if f in payload])
        value[field] = _UNKNOWN_ENUMS[field]
    elif cls == "out_of_range":
        field = rng.choice(_ranged(event))
        if field == "fee_cents":  # keep net = gross - fee true, so only the range rule breaks
            fee = -(payload["fee_cents"] or 25)
            value["fee_cents"] = fee
            value["net_cents"] = payload["gross_cents"] - fee
        else:
            value[field] = _OUT_OF_RANGE[field](payload[field])
    elif cls == "net_not_gross_minus_fee":
        value["net_cents"] = payload["net_cents"] + rng.randint(1, 99)
    elif cls == "window_end_before_start":
        value["window_start"], value["window_end"] = payload["window_end"], payload["window_start"]
