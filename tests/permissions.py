"""Subprocesses that obey file permissions, and that find their disk full, even when tests run as root.

Root ignores mode bits (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so a ``chmod 000`` home proves
nothing in a root container. Dropping both from the capability bounding set before ``exec``
makes the child an ordinary owner: root keeps every other capability, and the files stay root's.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 1, 2


def _drop_file_privileges() -> None:
    if os.geteuid() != 0:
        return
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def unprivileged(tmp_path: Path) -> Callable[[], None]:
    """A ``preexec_fn`` under which a mode-000 folder cannot be read; skips the test where none can be made."""
    probe = tmp_path / "probe"
    probe.mkdir(mode=0o000)
    try:
        result = subprocess.run(
            [sys.executable, "-c", f"import os; os.listdir({str(probe)!r})"],
            preexec_fn=_drop_file_privileges,
            capture_output=True,
        )
    except (OSError, subprocess.SubprocessError):
        result = None
    finally:
        probe.chmod(0o700)
    if result is None or result.returncode == 0:
        pytest.skip("cannot run a subprocess that obeys file permissions here")
    return _drop_file_privileges


def file_size_limit(max_bytes: int) -> Callable[[], None]:
    """A ``preexec_fn``: no file can grow past ``max_bytes`` (writes fail with EFBIG, as on a full disk)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    return limit
