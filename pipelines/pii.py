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

Every scan is linear in the size of the text: a record is attacker-sized (a Kafka message
of a megabyte), and a backtracking pattern (a key pattern with a run on each side of a
stem, tried from every position) took seconds for 10 KB and hours for 1 MB, blocking
landing. RE2 is linear by construction; the Python side anchors each pattern at the start
of a run (a lookbehind) and consumes runs possessively, so no byte is scanned more than a
few times.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
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
# EMAIL for Python's re, matching what RE2 matches (a leftmost match starts where a run of
# address bytes starts; every run is consumed possessively): linear where EMAIL backtracks.
_EMAIL_RE = re.compile(
    rf"(?<![^{_NOT_IN_EMAIL}])[^{_NOT_IN_EMAIL}]++@[^{_NOT_IN_EMAIL}.]++(?:\.[^{_NOT_IN_EMAIL}.]++)++".encode()
)
_PHONE_RE = re.compile(PHONE.encode())  # bounded repetitions only: linear as it is
# A key candidate: a whole run of key characters, an optional quote, then ``:`` or ``=``.
_KEY_RUN = re.compile(rb"(?<![\w\-])([\w\-]++)[\"']?+[ \t]*+[:=][ \t]*+")
# JSON's \uXXXX escape; text that does not parse is matched with them decoded.
ESCAPE = r"\\u[0-9a-fA-F]{4}"
_ESCAPE_RE = re.compile(ESCAPE.encode())
_KEPT_ESCAPES = frozenset(b"\"'\\")  # they would change the text's quoting: left escaped
_BARE_VALUE = re.compile(rb"[^,;}\]\r\n]*+")
_NEXT_IN = {  # inside a value, the next byte that matters: per quote, and outside quotes
    b'"': re.compile(rb'[\\"]'),
    b"'": re.compile(rb"[\\']"),
    None: re.compile(rb"[\"'\[\]{}]"),
}
_NOTHING = (b"", b"null", b"None")
# What ``Redactor.text`` needs to find anything to mask: a NUL (UTF-16), a ``\\u`` escape, a
# key's ``:`` or ``=``, an e-mail's ``@``, or eight digits apart only by a phone number's
# separators (every PHONE shape has eight or more). A string of a parsed record with none of
# them (most of a quarantined record's names and values) is kept without the scanner.
_MAYBE_MASKED = re.compile(r"[\x00@:=]|\\u|(?:[0-9][ ()+.\-]*+){8}")
SCANNED_ONCE_FROM = 1000  # values in a column from which each distinct value is scanned once
_NAMES_CACHED = 64  # the longest key name whose verdict is cached (names are attacker-sized)
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


def _alternatives(stems: frozenset[str]) -> str:
    """The stems as one alternation, longest first; a stem matches with a separator between
    any two of its letters (``e-mail``, ``Full Name``). No stems: a pattern that never matches."""
    ordered = sorted(stems, key=len, reverse=True)
    return "|".join("[_\\- .]?".join(re.escape(c) for c in stem) for stem in ordered) or "\\b\\B"


def _key_pattern(stems: frozenset[str], containers: frozenset[str]) -> str:
    """In RE2's syntax, a key in text (JSON, repr, k=v) then ``:`` or ``=``: one named like a
    personal-data field, or one of the objects that hold such fields (``after``). What
    ``Redactor.array`` sends to the scanner (``Redactor.text``), which finds the same keys."""
    key = f"[\"']?[\\w\\-]*(?:{_alternatives(stems)})[\\w\\-]*[\"']?[ \\t]*[:=][ \\t]*"
    if containers:
        names = "|".join(re.escape(c) for c in sorted(containers))
        key += f"|(?:^|[^\\w\\-])(?:{names})[\"']?[ \\t]*[:=]"
    return f"(?i:{key})"


def _value_end(text: bytes, start: int) -> int:
    """Where the value that begins at ``start`` ends: a quoted string, a bracketed list or
    object (nesting and quotes followed), or a bare token up to a separator. Unterminated
    values run to the end: truncated text hides its end. Jumps from one byte that matters
    to the next (a regex search), so a megabyte-long value costs a few searches."""
    n = len(text)
    if start >= n:
        return start
    opening = text[start : start + 1]
    if opening not in (b'"', b"'", b"[", b"{"):
        return _BARE_VALUE.match(text, start).end()  # type: ignore[union-attr]  # always matches
    quote = opening if opening in (b'"', b"'") else None
    is_string = quote is not None
    depth = 0
    i = start + 1
    while (found := _NEXT_IN[quote].search(text, i)) is not None:
        i = found.start()
        c = text[i : i + 1]
        if c == b"\\":  # searched for inside quotes only: it escapes the next byte
            i += 2
            continue
        if quote is not None:  # the closing quote
            quote = None
            if is_string:
                return i + 1
        elif c in (b'"', b"'"):
            quote = c
        elif c in (b"[", b"{"):
            depth += 1
        elif depth == 0:
            return i + 1
        else:
            depth -= 1
        i += 1
    return n


def _decode_escape(escape: re.Match[bytes]) -> bytes:
    code = int(escape[0][2:], 16)
    if code < 0x20 or code in _KEPT_ESCAPES or 0xD800 <= code < 0xE000:  # controls, quotes, surrogates
        return escape[0]
    return chr(code).encode()


def _unescaped(text: bytes) -> bytes:
    """``text`` with JSON's ``\\uXXXX`` escapes decoded: ``"full_\\u006eame"`` is a key named
    ``full_name`` and ``jane\\u0040example.com`` an e-mail address, in text that does not parse too."""
    return _ESCAPE_RE.sub(_decode_escape, text) if b"\\u" in text else text


def _duplicate_keys(raw: bytes) -> bool:
    """Whether an object of the (valid JSON) ``raw`` has a key twice: orjson keeps the last
    value of such a key, so re-serialising the parsed record would drop the others."""
    found = False

    def pairs(items: list[tuple[str, Any]]) -> None:
        nonlocal found
        found = found or len({k for k, _ in items}) != len(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):  # nested deeper than Python parses: the text scanner masks it
        return True
    return found


def mask_shapes(text: bytes) -> bytes:
    """E-mail addresses and phone numbers in ``text`` replaced by ``<email>`` / ``<phone>``."""
    return _PHONE_RE.sub(PHONE_MASK, _EMAIL_RE.sub(EMAIL_MASK, text))


def _may_hide_personal(value: Any) -> bool:
    """Whether a bare value could carry a name, an e-mail or a phone: some text, or an integer
    long enough to be a phone number. ``[1, 2, 3]`` where an object belongs cannot, and keeps
    its bytes as evidence of the fault."""
    if isinstance(value, str):
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return abs(value) >= 10**6
    if isinstance(value, float):
        return abs(value) >= 1e6
    if isinstance(value, list):
        return any(_may_hide_personal(v) for v in value)
    return isinstance(value, dict)


@dataclass(frozen=True)
class Redactor:
    """Masks and hashes personal data in records, whatever shape they come in."""

    key: bytes
    fields: frozenset[str]  # the personal-data field names of every topic's contracts
    # The names of the objects that hold personal-data fields or that contracts declare as
    # objects (``after``, ``before``): anything but an object there is hashed whole.
    containers: frozenset[str] = frozenset()
    _stems: frozenset[str] = field(init=False, repr=False)
    _stem_re: re.Pattern[bytes] = field(init=False, repr=False)
    _reach: int = field(init=False, repr=False)
    _holders: frozenset[bytes] = field(init=False, repr=False)
    _scanned: str = field(init=False, repr=False)
    _detect: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        stems = personal_field_stems(self.fields)
        holders = frozenset(c.lower() for c in self.containers)
        # What only the scanner masks: a personal-data key's value, an escaped text, UTF-16.
        scanned = f"{_key_pattern(stems, holders)}|{ESCAPE}|\\x00"
        object.__setattr__(self, "_stems", stems)
        object.__setattr__(self, "_stem_re", re.compile(f"(?i:{_alternatives(stems)})".encode()))
        object.__setattr__(self, "_reach", max((2 * len(s) for s in stems), default=0))
        object.__setattr__(self, "_holders", frozenset(h.encode() for h in holders))
        object.__setattr__(self, "_scanned", scanned)
        object.__setattr__(self, "_detect", f"{EMAIL}|{PHONE}|{scanned}")

    def is_personal(self, name: str) -> bool:
        if len(name) > _NAMES_CACHED:
            return _names_a_stem(self._stems, name)
        return _cached_names_a_stem(self._stems, name)

    def _names_personal(self, text: bytes, start: int, stop: int) -> bool:
        """Whether the key ``text[start:stop]`` (a run of key characters) is named like a
        personal-data field: a stem in it, or one that begins before it across a space or a
        dot (``Full Name``) and ends in it. Bounded work per byte of the run."""
        if self._stem_re.search(text, start, stop):
            return True
        if start == 0 or text[start - 1 : start] not in (b" ", b"."):
            return False
        for begin in range(max(0, start - self._reach), start - 1):
            found = self._stem_re.match(text, begin, stop)
            if found is not None and found.end() > start:
                return True
        return False

    def _scan(self, text: bytes) -> bytes:
        """``text`` with the values of personal-data keys, anything but an object under a
        container key, and every e-mail or phone shape masked."""
        out = []
        pos = 0
        for key in _KEY_RUN.finditer(text):
            if key.start() < pos:  # inside a value already masked
                continue
            start, stop = key.span(1)
            value_start = key.end()
            if self._names_personal(text, start, stop):
                keep: tuple[bytes, ...] = _NOTHING
            elif text[start:stop].lower() in self._holders:
                if text[value_start : value_start + 1] == b"{":
                    continue  # an object, as declared: its keys are judged one by one
                keep = _NOTHING
            else:
                continue
            end = _value_end(text, value_start)
            value = text[value_start:end]
            out += [text[pos:value_start], value if value.strip() in keep else REDACTED]
            pos = end
        out.append(text[pos:])
        return mask_shapes(b"".join(out))

    def text(self, text: bytes) -> bytes:
        """Text of any kind with personal data masked (what a record that does not parse
        gets): scanned as UTF-8 (UTF-16 decoded) with ``\\uXXXX`` escapes decoded, and kept as
        it was when nothing was masked."""
        decoded = _utf16(text)
        plain = _unescaped(text if decoded is None else decoded.encode())
        masked = self._scan(plain)
        return text if masked == plain else masked

    def _text_str(self, value: str) -> str:
        if _MAYBE_MASKED.search(value) is None:
            return value
        return self.text(value.encode()).decode(errors="replace")

    def _hash(self, value: Any) -> str:
        text = value if isinstance(value, str) else orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
        return _HASHED + keyed_hash(self.key, text)

    def _walk(self, value: Any, container: bool = False) -> tuple[Any, bool]:
        """A parsed JSON value redacted, and whether anything changed. ``container``: the value
        is where an object is declared (the record itself, ``after``): anything else there is
        hashed whole, since bare values in it (a list of a name and an e-mail address) have
        no key that says what they are."""
        if container and value is not None and not isinstance(value, dict) and _may_hide_personal(value):
            return self._hash(value), True
        if isinstance(value, str):
            masked = self._text_str(value)
            return masked, masked != value
        if isinstance(value, list):
            if len(value) == 2 and isinstance(value[0], str) and value[1] is not None and self.is_personal(value[0]):
                return [self._text_str(value[0]), self._hash(value[1])], True  # a (key, value) pair
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
            out[masked_name], item_changed = self._walk(item, name.lower().encode() in self._holders)
            changed = changed or item_changed or masked_name != name
        return out, changed

    def raw(self, raw: bytes) -> bytes:
        """A quarantined record's raw bytes with personal data replaced.

        JSON that parses keeps its structure: personal-data keys get their value's keyed hash
        (``hmac:…``; a string hashes as the landed column would, so it still joins), every
        other string its e-mail and phone shapes masked. A record with nothing to redact keeps
        its bytes as produced. Anything else is masked as text (``text``); UTF-16 text is
        redacted decoded, and kept as UTF-8 when something was masked. A record nested deeper than
        orjson writes (255 levels) is masked as text too, and so is one with a key twice in an
        object: re-serialised, it would lose all but the last value, the evidence of its fault.
        """
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return self._unparsed(raw)
        try:
            redacted, changed = self._walk(parsed, container=True)
            return orjson.dumps(redacted) if changed and not _duplicate_keys(raw) else self.text(raw)
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

        One vectorized regex pass (RE2) finds the values with a personal-data key or shape
        (or an escape, or a NUL of UTF-16), and masks their shapes; only values with a key,
        an escape or a NUL are scanned one by one. A clean column costs one scan and no copy.
        A long column is scanned by its distinct values: ids, producers and reasons repeat,
        and dictionary-encoding a column costs a fraction of a regex pass over it.
        """
        if values.null_count == len(values):
            return values
        if len(values) < SCANNED_ONCE_FROM:
            return self._array(values)
        encoded = pc.dictionary_encode(values)
        masked = self._array(encoded.dictionary)
        return values if masked is encoded.dictionary else masked.take(encoded.indices)

    def _array(self, values: pa.Array) -> pa.Array:
        hits = pc.fill_null(pc.match_substring_regex(values, self._detect), False)
        if not pc.any(hits).as_py():
            return values
        found = pc.replace_substring_regex(pc.filter(values, hits), EMAIL, EMAIL_MASK.decode())
        found = pc.replace_substring_regex(found, PHONE, PHONE_MASK.decode())
        keyed = pc.fill_null(pc.match_substring_regex(found, self._scanned), False)
        if pc.any(keyed).as_py():  # a personal-data key's value: only the scanner finds its end
            texts = pc.filter(found, keyed).to_pylist()
            one = self.text if pa.types.is_binary(values.type) else self._text_str
            found = pc.replace_with_mask(found, keyed, pa.array([one(v) for v in texts], values.type))
        return pc.replace_with_mask(values, hits, found)


def _names_a_stem(stems: frozenset[str], name: str) -> bool:
    normal = _normal(name)
    return any(stem in normal for stem in stems)


# Records repeat their key names: the verdict of each is kept (short names only, a few thousand).
_cached_names_a_stem = lru_cache(maxsize=4096)(_names_a_stem)


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
