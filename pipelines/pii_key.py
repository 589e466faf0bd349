"""The personal-data key: kept safely, long enough, and bound to the lake it hashed.

The key (``TRADELAKE_PII_KEY``, or one generated into ``$TRADELAKE_HOME/pii.key``) makes the
personal-data hashes, which are join keys: every row of a lake must be hashed with the same
key, or the joins silently split. So:

- the key file is written atomically (a temporary file, fsync, then a link or rename): a
  failed write leaves no key file, never an empty one; an empty or short key is refused,
  whether from the file or the environment;
- the lake records its key's fingerprint at first use (the ``_pii_keys`` Delta table, behind
  the same commit point as the data, so it lives wherever the lake lives, S3 included), and a
  landing with another key is refused with one line;
- changing the key is an explicit command, ``tradelake pii-key rotate``, which records the new
  fingerprint with the time and the first batch hashed with it. Hashes from before and after a
  rotation do not match.

The fingerprint is an HMAC of a fixed label under the key, not a hash of the key itself: it
names the key without being usable to check a guessed key faster than the hashes themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from pipelines.errors import TradelakeError
from pipelines.lake.schemas import BATCHES_TABLE, PII_KEYS_SCHEMA, PII_KEYS_TABLE
from pipelines.settings import PII_KEY_FILE, Settings

if TYPE_CHECKING:
    from pipelines.lake.tables import Lake

MIN_KEY_BYTES = 16  # 128 bits: the HMAC's strength rests on the key
_FINGERPRINT_LABEL = b"tradelake personal-data key fingerprint v1"
_SHOWN = 12  # hex digits of a fingerprint shown in messages


def fingerprint(key: bytes) -> str:
    return hmac.new(key, _FINGERPRINT_LABEL, hashlib.sha256).hexdigest()


def require_length(key: bytes, source: str) -> bytes:
    """``key``, unless it is shorter than MIN_KEY_BYTES (the message never shows the key)."""
    if len(key) < MIN_KEY_BYTES:
        raise TradelakeError(
            f"{source} is too short ({len(key)} bytes): a personal-data key needs at least {MIN_KEY_BYTES} "
            "(e.g. `openssl rand -hex 32`)"
        )
    return key


def new_key() -> bytes:
    return secrets.token_hex(32).encode()


def write_key_file(path: Path, key: bytes, replace: bool) -> bool:
    """Write ``key`` to ``path`` (mode 0600) atomically; False when, not replacing, another
    process created the file first (its key is then the one to use).

    The key is written and fsynced under a temporary name first, so the file either does not
    exist or holds a whole key, whatever fails (a full disk, a kill).
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
        with os.fdopen(fd, "wb") as f:
            f.write(key)
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if the file exists: never two keys for one home
        _fsync_folder(path.parent)
        return True
    except FileExistsError:
        return False
    except OSError as e:
        raise TradelakeError(f"cannot write the personal-data key {path}: {e.strerror}") from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_key_file(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as e:
        raise TradelakeError(f"cannot read the personal-data key {path}: {e.strerror}") from None
    if len(key) < MIN_KEY_BYTES:
        raise TradelakeError(
            f"the personal-data key file {path} is {'empty' if not key else 'too short'} ({len(key)} bytes, at "
            f"least {MIN_KEY_BYTES} needed): restore it from a backup (a new key does not match the lake's "
            "hashes), or remove it and run `tradelake pii-key rotate`"
        )
    return key


def home_key(home: Path) -> bytes:
    """The key kept under the home, generated on first use."""
    path = home / PII_KEY_FILE
    if not path.exists():
        write_key_file(path, new_key(), replace=False)
    return read_key_file(path)


def recorded_fingerprint(lake: Lake) -> str | None:
    """The fingerprint of the lake's key now, None before first use: the ``_pii_keys`` row
    of the highest ``from_batch``, the batch order being the lake's own. ``since`` is a
    wall clock (another machine's, after a move or with a skewed clock) and only breaks a
    tie: two rotations before the next batch."""
    table = lake.read(PII_KEYS_TABLE, ["fingerprint", "from_batch", "since"])
    if table is None or not len(table):
        return None
    return table.sort_by([("from_batch", "descending"), ("since", "descending")])["fingerprint"][0].as_py()


def _record(lake: Lake, key: bytes, next_batch: int, reason: str) -> None:
    row = {"fingerprint": fingerprint(key), "since": datetime.now(UTC), "from_batch": next_batch, "reason": reason}
    lake.append(PII_KEYS_TABLE, pa.Table.from_pylist([row], schema=PII_KEYS_SCHEMA), [])


def verify(lake: Lake, key: bytes, next_batch: int) -> None:
    """Refuse to land with a key that is not the lake's; record the key at the lake's first use.

    Called by landing under the lake's landing lock, before anything is written.
    """
    lake.ensure(PII_KEYS_TABLE, PII_KEYS_SCHEMA)
    known = recorded_fingerprint(lake)
    if known is None:
        _record(lake, key, next_batch, "first use")
        return
    mine = fingerprint(key)
    if mine != known:
        raise TradelakeError(
            f"the personal-data key (fingerprint {mine[:_SHOWN]}) is not the key of the lake at {lake.location.url} "
            f"(fingerprint {known[:_SHOWN]}): its hashes would not join the lake's. Use the lake's key "
            "(TRADELAKE_PII_KEY or $TRADELAKE_HOME/pii.key), or change it with `tradelake pii-key rotate`"
        )


def rotate(settings: Settings) -> str:
    """``tradelake pii-key rotate``: the configured key becomes the lake's key from the next
    batch on; returns a line saying what was done.

    With ``TRADELAKE_PII_KEY``, the key it holds is recorded (set the new key there first).
    With the home's key file, a new key replaces it — unless the file's key is already not
    the lake's (an interrupted rotation, a restored file): that key is then recorded as is.
    Runs under the lake's landing lock: no batch is landed meanwhile.
    """
    from pipelines.lake.tables import Lake
    from pipelines.landing.ingest import _next_batch_id, exclusive

    assert settings.lake is not None
    lake = Lake(settings.lake)
    with exclusive(settings):
        return _rotate(settings, lake, _next_batch_id(lake))


def _rotate(settings: Settings, lake: Lake, next_batch: int) -> str:
    if not lake.exists(PII_KEYS_TABLE) and not lake.exists(BATCHES_TABLE):
        raise TradelakeError(f"no lake at {lake.location.url} yet: its first ingest records the personal-data key")
    lake.ensure(PII_KEYS_TABLE, PII_KEYS_SCHEMA)
    known = recorded_fingerprint(lake)
    path = settings.home / PII_KEY_FILE
    if settings.pii_key is None and (not path.exists() or fingerprint(settings.personal_data_key()) == known):
        write_key_file(path, new_key(), replace=True)
    key = settings.personal_data_key()
    if fingerprint(key) == known:
        raise TradelakeError(
            "TRADELAKE_PII_KEY holds the lake's key already: set the new key in TRADELAKE_PII_KEY, then rotate"
        )
    _record(lake, key, next_batch, "rotated" if known else "first use")
    where = "TRADELAKE_PII_KEY" if settings.pii_key is not None else str(path)
    return (
        f"personal-data key rotated: the lake now uses the key of {where} (fingerprint "
        f"{fingerprint(key)[:_SHOWN]}) from batch {next_batch} on; hashes of earlier batches do not match the new ones"
    )
