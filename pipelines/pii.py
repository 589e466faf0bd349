"""Personal data (SPEC §2.4): a keyed hash replaces clear text before anything is written.

HMAC-SHA256 with a secret key keeps the hash usable as a join key (same input, same hash)
while a reader without the key cannot confirm a guessed name or email.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from typing import Any

import orjson

REDACTED = b"<redacted>"
_EMAIL = re.compile(rb"[\w.+-]+@[\w-]+(\.[\w-]+)+")
_PHONE = re.compile(rb"\+?\d[\d ().-]{7,}\d")


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def hash_column(key: bytes, values: Sequence[str | None]) -> list[str | None]:
    return [None if v is None else keyed_hash(key, v) for v in values]


def _hash_path(obj: Any, parts: list[str], key: bytes) -> None:
    for part in parts[:-1]:
        obj = obj.get(part) if isinstance(obj, dict) else None
    if isinstance(obj, dict) and isinstance(obj.get(parts[-1]), str):
        obj[parts[-1]] = "hmac:" + keyed_hash(key, obj[parts[-1]])


def redact_raw(raw: bytes, paths: Iterable[str], key: bytes) -> bytes:
    """Raw bytes of a quarantined record with personal data replaced.

    A JSON object gets the contract's personal-data paths hashed in place, so the record
    stays readable for whoever repairs it. Anything that does not parse (truncated JSON,
    broken encoding) cannot be trusted to show where the fields are: every quoted string is
    blanked, then e-mail and phone shapes, keeping only the structure.
    """
    paths = list(paths)
    if not paths:
        return raw
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        obj = None
    if isinstance(obj, dict):
        for path in paths:
            _hash_path(obj, path.split("."), key)
        return orjson.dumps(obj)
    blanked = re.sub(rb'"(?:[^"\\]|\\.)*"?', b'"' + REDACTED + b'"', raw)
    return _PHONE.sub(REDACTED, _EMAIL.sub(REDACTED, blanked))
