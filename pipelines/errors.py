"""Errors a user can fix, reported as one line by the CLI instead of a stack trace."""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Iterator


class TradelakeError(Exception):
    """An expected failure (bad configuration, unreachable broker, failed build).

    The CLI prints ``tradelake: error: <message>`` and exits with ``exit_code``; anything
    that is not a TradelakeError is a bug and keeps its traceback — except the failures of
    the machine itself that ``environment_error`` recognises.
    """

    exit_code = 2


# What the operator fixes on the machine, not in tradelake: full or read-only disks, missing
# permissions, a path that is a file where a folder belongs. What to do next, per errno.
_FULL = "free some space (or raise the limit) and run the command again: nothing half-written is visible"
_ACCESS = "check the permissions, owner and mount of that path"
ENVIRONMENT_ERRNOS = {
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EFBIG: _FULL,
    errno.EROFS: _ACCESS,
    errno.EACCES: _ACCESS,
    errno.EPERM: _ACCESS,
    errno.ENOTDIR: "a path that should be a folder is a file",
    errno.EISDIR: "a path that should be a file is a folder",
    errno.EIO: "the disk reported an I/O error",
}
# The errno inside the message of an error that is not an OSError: Rust's "(os error 28)"
# (delta-rs), Arrow's "[errno 28]", DuckDB's strerror text.
_ERRNO_IN_TEXT = re.compile(r"\(os error (\d+)\)|\[errno (\d+)\]", re.IGNORECASE)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_BACKTRACE_FRAME = re.compile(r"^\d+: |^at ")


def first_line(text: object, limit: int = 300) -> str:
    """The first line of a library's message: Rust errors append a backtrace when RUST_BACKTRACE is set."""
    line = next((part.strip() for part in _ANSI.sub("", str(text)).splitlines() if part.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _context(text: str, number: int, limit: int = 200) -> str:
    """What the library was doing, without the errno it ends with: delta-rs's chain of causes
    (one per line, ``↳``) joined with ': ', its backtrace frames and Arrow's repeated errno left out."""
    parts = []
    for raw in _ANSI.sub("", text).splitlines():
        part = _ERRNO_IN_TEXT.sub("", raw.replace("↳", "")).replace(os.strerror(number), "").strip(" .:")
        if _BACKTRACE_FRAME.match(part):
            break
        part = part.removesuffix(". Detail").strip()
        if part and part not in parts:
            parts.append(part)
    line = ": ".join(parts)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _reports_the_machine(e: BaseException) -> bool:
    """Whether ``e``'s text may be read for an errno: the errors of the libraries that do I/O
    (OSError, delta-rs, Arrow, DuckDB's I/O errors). Any other error is a bug whatever its
    message says — a KeyError('Permission denied') must keep its traceback."""
    from deltalake.exceptions import DeltaError
    from duckdb import IOException
    from pyarrow import ArrowException

    return isinstance(e, (OSError, DeltaError, ArrowException, IOException))


def _errno_of(e: BaseException) -> int | None:
    if isinstance(e, OSError) and e.errno in ENVIRONMENT_ERRNOS:
        return e.errno
    if not _reports_the_machine(e):
        return None
    text = str(e)
    for match in _ERRNO_IN_TEXT.finditer(text):
        number = int(match.group(1) or match.group(2))
        if number in ENVIRONMENT_ERRNOS:
            return number
    return next((n for n in ENVIRONMENT_ERRNOS if os.strerror(n) in text), None)


def environment_error(e: BaseException) -> TradelakeError | None:
    """``e`` as one line when it is the machine's failure (disk full, permission denied …), else None.

    Follows the explicit causes too (``raise … from``): a library may wrap the OSError in its own error.
    """
    seen: BaseException | None = e
    while seen is not None:
        number = _errno_of(seen)
        if number is not None:
            where = getattr(seen, "filename", None) or _context(str(seen), number)
            detail = os.strerror(number) + (f" ({where})" if where else "")
            return TradelakeError(f"{detail}; {ENVIRONMENT_ERRNOS[number]}")
        seen = seen.__cause__
    return None


@contextlib.contextmanager
def unreadable_table(name: str, uri: str) -> Iterator[None]:
    """A lake table whose log or data files cannot be read (corrupt, truncated) as one line naming it.

    A missing table (delta-rs's TableNotFoundError) passes through: callers treat it as "not created yet".
    """
    from deltalake.exceptions import DeltaError, TableNotFoundError
    from pyarrow import ArrowException

    try:
        yield
    except TableNotFoundError:
        raise
    except (DeltaError, ArrowException, OSError) as e:  # a data file is read by Arrow's Parquet reader
        raise environment_error(e) or TradelakeError(
            f"the lake table {name} cannot be read ({uri}): {first_line(e)}"
        ) from None
