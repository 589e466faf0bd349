"""Personal data (SPEC §2.4): clear text is hashed or masked before anything is written.

Two tools, used by landing (pipelines.landing.router):

- A keyed hash (HMAC-SHA256, secret key) of the contract's personal-data columns: usable as
  a join key (same input, same hash) while a reader without the key cannot confirm a guessed
  name or e-mail.
- A ``Redactor`` for everything else: a quarantined record's raw bytes, free-text fields,
  Kafka keys and any other text a record brings. It does not trust a record to be
  well-formed: the values of keys *named* like a personal-data field (``email``, ``Phone``,
  ``customer_email``, ``full-name``, ``name`` …) are hashed or masked whatever their JSON type
  and depth, on every topic, and e-mail and phone-number shapes are masked in every string,
  in JSON that parses and in bytes that do not (truncated JSON, Python reprs, broken or
  UTF-16 encodings).

The shape patterns are written once in the syntax common to Python's ``re`` (ASCII mode) and
RE2 (Arrow's regex engine), so the vectorized prefilter of a column (``Redactor.array``) and
the per-value masking agree on what is personal-data shaped.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

REDACTED = b'"<redacted>"'  # a value under a personal-data key, in text that does not parse
EMAIL_MASK = b"<email>"
PHONE_MASK = b"<phone>"

# Bytes that cannot be part of an e-mail address as people write it in text (controls, space,
# brackets, quotes, separators of JSON, query strings and lists); everything else can (also
# non-ASCII letters).
_NOT_IN_EMAIL = r"\x00-\x20@<>()\[\]{},;:\"'\\/=&?|`"
EMAIL = rf"[^{_NOT_IN_EMAIL}]+@[^{_NOT_IN_EMAIL}.]+(?:\.[^{_NOT_IN_EMAIL}.]+)+"
# Phone numbers, three shapes. A bare run of digits is never taken for one (ids, amounts,
# epoch milliseconds, offsets are digit runs), nor are dates, times, UTC offsets, UUIDs or
# decimals: each shape needs a '+', a (area) code, or digit groups of phone lengths.
PHONE = "|".join(
    (
        r"\+\d(?:[ ()\-]{0,2}\d){7,14}\b",  # international: +1 415 555 0100, +44 (20) 7946-0958
        # North American: 555-123-4567, (555) 123-4567, 1-800-555-1234
        r"(?:\b1[\-. ])?(?:\(\d{3}\) ?|\b\d{3}[\-. ])\d{3}[\-. ]\d{4}\b",
        # national with a trunk 0, spaced (a hyphen would take UUID groups: 0000-0000-4000)
        r"\b0\d{2,4} \d{3,4} ?\d{3,4}\b",  # 020 7946 0958, 07700 900123
    )
)
_EMAIL_RE = re.compile(EMAIL.encode())
_PHONE_RE = re.compile(PHONE.encode())
_BARE_VALUE = re.compile(rb"[^,;}\]\r\n]*")
_NOTHING = (b"", b"null", b"None")
_HASHED = "hmac:"


def keyed_hash(key: bytes, value: str) -> str:
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def hash_column(key: bytes, values: Sequence[str | None]) -> list[str | None]:
    return [None if v is None else keyed_hash(key, v) for v in values]


def _normal(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def personal_field_stems(fields: Iterable[str]) -> frozenset[str]:
    """What a key's name is matched against: each personal-data field name and the last word
    of a compound one (``full_name`` → ``fullname``, ``name``), lower case, separators dropped."""
    stems = set()
    for name in fields:
        stems.add(_normal(name))
        if "_" in name:
            stems.add(_normal(name.rsplit("_", 1)[1]))
    return frozenset(s for s in stems if s)


def _key_pattern(stems: frozenset[str]) -> str:
    """A key named like a personal-data field, then ``:`` or ``=``, in text (JSON, repr, k=v).

    A stem matches with a separator between any two of its letters (``e-mail``, ``Full Name``).
    """
    alternatives = "|".join(
        "[_\\- .]?".join(re.escape(c) for c in stem) for stem in sorted(stems, key=len, reverse=True)
    )
    return f"(?i:[\"']?[\\w\\-]*(?:{alternatives})[\\w\\-]*[\"']?[ \\t]*[:=][ \\t]*)"


def _value_end(text: bytes, start: int) -> int:
    """Where the value that begins at ``start`` ends: a quoted string, a bracketed list or
    object (nesting and quotes followed), or a bare token up to a separator. Unterminated
    values run to the end: truncated text hides its end."""
    n = len(text)
    if start >= n:
        return start
    opening = text[start : start + 1]
    if opening not in (b'"', b"'", b"[", b"{"):
        return _BARE_VALUE.match(text, start).end()  # type: ignore[union-attr]  # always matches
    is_string = opening in (b'"', b"'")
    quote = opening if is_string else None
    depth = 0
    i = start + 1
    while i < n:
        c = text[i : i + 1]
        if quote is not None:
            if c == b"\\":
                i += 1
            elif c == quote:
                quote = None
                if is_string:
                    return i + 1
        elif c in (b'"', b"'"):
            quote = c
        elif c in (b"[", b"{"):
            depth += 1
        elif c in (b"]", b"}"):
            if depth == 0:
                return i + 1
            depth -= 1
        i += 1
    return n


def mask_shapes(text: bytes) -> bytes:
    """E-mail addresses and phone numbers in ``text`` replaced by ``<email>`` / ``<phone>``."""
    return _PHONE_RE.sub(PHONE_MASK, _EMAIL_RE.sub(EMAIL_MASK, text))


@dataclass(frozen=True)
class Redactor:
    """Masks and hashes personal data in records, whatever shape they come in."""

    key: bytes
    fields: frozenset[str]  # the personal-data field names of every topic's contracts
    _stems: frozenset[str] = field(init=False, repr=False)
    _key_re: re.Pattern[bytes] = field(init=False, repr=False)
    _key_pattern: str = field(init=False, repr=False)
    _detect: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        stems = personal_field_stems(self.fields)
        key = _key_pattern(stems)
        object.__setattr__(self, "_stems", stems)
        object.__setattr__(self, "_key_re", re.compile(key.encode()))
        object.__setattr__(self, "_key_pattern", key)
        object.__setattr__(self, "_detect", f"{EMAIL}|{PHONE}|{key}")

    def is_personal(self, name: str) -> bool:
        normal = _normal(name)
        return any(stem in normal for stem in self._stems)

    def text(self, text: bytes) -> bytes:
        """Text of any kind with the values of personal-data keys and every e-mail or phone
        shape masked (what a record that does not parse gets)."""
        out = []
        pos = 0
        for match in self._key_re.finditer(text):
            if match.start() < pos:  # inside a value already masked
                continue
            end = _value_end(text, match.end())
            out.append(text[pos : match.end()])
            value = text[match.end() : end]
            out.append(value if value.strip() in _NOTHING else REDACTED)
            pos = end
        out.append(text[pos:])
        return mask_shapes(b"".join(out))

    def _text_str(self, value: str) -> str:
        return self.text(value.encode()).decode(errors="replace")

    def _hash(self, value: Any) -> str:
        text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return _HASHED + keyed_hash(self.key, text)

    def _walk(self, value: Any) -> tuple[Any, bool]:
        """A parsed JSON value redacted, and whether anything changed."""
        if isinstance(value, str):
            masked = self._text_str(value)
            return masked, masked != value
        if isinstance(value, list):
            items = [self._walk(v) for v in value]
            return [v for v, _ in items], any(c for _, c in items)
        if not isinstance(value, dict):
            return value, False
        out: dict[str, Any] = {}
        changed = False
        for name, item in value.items():
            masked_name = self._text_str(name)
            if self.is_personal(name) and item is not None:
                out[masked_name] = self._hash(item)
                changed = True
                continue
            out[masked_name], item_changed = self._walk(item)
            changed = changed or item_changed or masked_name != name
        return out, changed

    def raw(self, raw: bytes) -> bytes:
        """A quarantined record's raw bytes with personal data replaced.

        JSON that parses keeps its structure: personal-data keys get their value's keyed hash
        (``hmac:…``; a string hashes as the landed column would, so it still joins), every
        other string its e-mail and phone shapes masked. A record with nothing to redact keeps
        its bytes as produced. Anything else is masked as text (``text``); UTF-16 text is
        redacted decoded, and kept as UTF-8 when something was masked. A record nested deeper than
        orjson writes (255 levels) is masked as text too.
        """
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._unparsed(raw)
        try:
            redacted, changed = self._walk(parsed)
            return orjson.dumps(redacted) if changed else self.text(raw)
        except (TypeError, RecursionError):  # nested deeper than orjson writes (255) or Python walks
            return self.text(raw)

    def _unparsed(self, raw: bytes) -> bytes:
        decoded = _utf16(raw)
        if decoded is None:
            return self.text(raw)
        text = decoded.encode()
        redacted = self.raw(text)
        return raw if redacted == text else redacted

    def array(self, values: pa.Array) -> pa.Array:
        """A string or binary column with ``text`` applied to the values that need it.

        One vectorized regex pass (RE2) finds the values with a personal-data key or shape, and
        masks their shapes; only values with a personal-data key are masked one by one. A clean
        column costs one scan and no copy.
        """
        if values.null_count == len(values):
            return values
        hits = pc.fill_null(pc.match_substring_regex(values, self._detect), False)
        if not pc.any(hits).as_py():
            return values
        found = pc.replace_substring_regex(pc.filter(values, hits), EMAIL, EMAIL_MASK.decode())
        found = pc.replace_substring_regex(found, PHONE, PHONE_MASK.decode())
        keyed = pc.fill_null(pc.match_substring_regex(found, self._key_pattern), False)
        if pc.any(keyed).as_py():  # a personal-data key's value: only the scanner finds its end
            texts = pc.filter(found, keyed).to_pylist()
            one = self.text if pa.types.is_binary(values.type) else self._text_str
            found = pc.replace_with_mask(found, keyed, pa.array([one(v) for v in texts], values.type))
        return pc.replace_with_mask(values, hits, found)


def _utf16(raw: bytes) -> str | None:
    """The text of UTF-16 bytes (a byte-order mark, or a NUL in every other byte), else None."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        encoding = "utf-16"
    elif len(raw) >= 2 and len(raw) % 2 == 0 and raw[1::2].count(0) * 2 >= len(raw) // 2:
        encoding = "utf-16-le"
    elif len(raw) >= 2 and len(raw) % 2 == 0 and raw[0::2].count(0) * 2 >= len(raw) // 2:
        encoding = "utf-16-be"
    else:
        return None
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError:
        return None
