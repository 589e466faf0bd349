"""Which library errors are the machine's (one line) and which are bugs (a traceback)."""

from __future__ import annotations

import errno

from pipelines.errors import environment_error

# delta-rs's message on a full disk: its chain of causes, colored, one per line
DELTA_RS_FULL = (
    "Generic LocalFileSystem error\n          \x1b[31m↳\x1b[0m Unable to copy data to file\n"
    "           \x1b[31m↳\x1b[0m No space left on device (os error 28)\n   0: <unknown>\n"
)


def test_a_full_disk_in_delta_rs_or_arrow_is_one_line_with_what_was_being_done():
    assert str(environment_error(OSError(DELTA_RS_FULL))).startswith(
        "No space left on device (Generic LocalFileSystem error: Unable to copy data to file); free some space"
    )
    arrow = OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left on device")
    assert str(environment_error(arrow)).startswith("No space left on device (Error writing bytes to file); ")


def test_a_permission_error_names_the_path():
    error = environment_error(PermissionError(errno.EACCES, "Permission denied", "/lake/x"))
    assert str(error) == "Permission denied (/lake/x); check the permissions, owner and mount of that path"


def test_a_wrapped_cause_counts_and_anything_else_is_a_bug():
    try:
        try:
            raise OSError(errno.EFBIG, "File too large")
        except OSError as cause:
            raise RuntimeError("writing failed") from cause
    except RuntimeError as e:
        assert str(environment_error(e)).startswith("File too large; ")
    assert environment_error(ValueError("a bug")) is None
    assert environment_error(FileNotFoundError(errno.ENOENT, "No such file or directory")) is None


def test_only_the_errors_of_libraries_doing_io_are_read_for_an_errno():
    """A bug whose message happens to read like the machine's keeps its traceback."""
    for bug in (
        KeyError("Permission denied"),
        AssertionError("No space left on device (os error 28)"),
        TypeError("[errno 13] Permission denied"),
    ):
        assert environment_error(bug) is None, bug
    from deltalake.exceptions import DeltaError
    from duckdb import IOException

    assert str(environment_error(DeltaError(DELTA_RS_FULL))).startswith("No space left on device (")
    duck = IOException('Could not write file "/lake/x.duckdb": No space left on device')
    assert str(environment_error(duck)).startswith("No space left on device (")
