"""Memory allocators tuned for landing: bounded, predictable RSS at a steady CPU cost.

Four allocators share a landing process — Arrow's (jemalloc), DuckDB's own jemalloc, glibc
malloc (librdkafka, DuckDB's Arrow export, C++ objects) and Python's — and each keeps freed
memory for reuse. Measured on a 2M-record backlog, landing alone (whole runs, median of 3):
Arrow on jemalloc instead of mimalloc ~130 MiB less peak RSS and ~10% less CPU; one jemalloc
arena for Arrow plus a fixed glibc mmap threshold a further ~25 MiB, CPU within noise; the
jemalloc decay below a further ~40 MiB, CPU within noise.
"""

from __future__ import annotations

import ctypes
import errno
import os
import sys
from contextlib import suppress

import pyarrow as pa

# How long both jemallocs keep freed pages for reuse. jemalloc's default path first hands
# unused pages back lazily (MADV_FREE, "muzzy"), and Linux counts those in RSS until memory
# runs short, so each batch's freed memory stayed in RSS about two seconds (two decay periods,
# ~4 batches). Here pages unused for 250 ms are returned at once (MADV_DONTNEED).
# Shorter (0 ms) saved another ~50 MiB but cost ~30% CPU: each batch re-faulted its pages.
DECAY_MS = {"dirty_decay_ms": 250, "muzzy_decay_ms": 0}

# Arrow's jemalloc reads this when it first allocates. One arena: the landing threads hand
# Arrow buffers to each other, and per-thread arenas each kept their own freed pages.
ARROW_JEMALLOC_CONF = "narenas:1," + ",".join(f"{k}:{v}" for k, v in DECAY_MS.items())
ARROW_JEMALLOC_CONF_VARIABLE = "JE_ARROW_MALLOC_CONF"

# DuckDB links its own jemalloc, with symbols prefixed so; no environment variable configures
# it, but its mallctl is exported, and decay times can be changed while it runs.
DUCKDB_MALLCTL = "duckdb_je_mallctl"

# glibc raises its mmap threshold (up to 32 MiB) each time a large mmapped block is freed, so
# later large blocks (librdkafka fetch buffers, DuckDB's Arrow export) come from the heaps,
# which fragment and seldom shrink. A fixed threshold keeps them mmapped, returned on free.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def tune_allocators() -> None:
    """Use jemalloc for Arrow (one arena), short jemalloc decays and a fixed glibc mmap
    threshold; a user's own ``JE_ARROW_MALLOC_CONF`` is kept. What a platform lacks (jemalloc
    in Arrow or DuckDB, glibc) keeps its defaults."""
    os.environ.setdefault(ARROW_JEMALLOC_CONF_VARIABLE, ARROW_JEMALLOC_CONF)
    with suppress(NotImplementedError):  # a pyarrow build without jemalloc keeps its default pool
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    with suppress(OSError, AttributeError):  # a C library without mallopt keeps its defaults
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    with suppress(OSError, AttributeError, ImportError):  # DuckDB without jemalloc (macOS, Windows)
        mallctl = DuckDBMallctl()
        for name, ms in DECAY_MS.items():
            mallctl.set_decay(name, ms)


class DuckDBMallctl:
    """jemalloc's control interface inside DuckDB's extension module."""

    def __init__(self) -> None:
        import duckdb  # noqa: F401  (loads the extension module, _duckdb)

        self._call = getattr(ctypes.CDLL(sys.modules["_duckdb"].__file__), DUCKDB_MALLCTL)
        self._call.argtypes = [
            ctypes.c_char_p,
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_size_t),
            ctypes.c_void_p,
            ctypes.c_size_t,
        ]

    def read(self, name: str, ctype: type = ctypes.c_ssize_t) -> int:
        value = ctype()
        size = ctypes.c_size_t(ctypes.sizeof(value))
        self._check(name, self._call(name.encode(), ctypes.byref(value), ctypes.byref(size), None, 0))
        return value.value

    def set_decay(self, name: str, ms: int) -> None:
        """Set ``name`` (dirty_decay_ms or muzzy_decay_ms) for the arenas that exist and the
        ones created later (DuckDB's threads get theirs on first use)."""
        value = ctypes.c_ssize_t(ms)
        targets = [f"arenas.{name}"] + [f"arena.{i}.{name}" for i in range(self.read("arenas.narenas", ctypes.c_uint))]
        for target in targets:
            rc = self._call(target.encode(), None, None, ctypes.byref(value), ctypes.sizeof(value))
            # An arena index that is reserved and not in use answers EFAULT; the others must take it.
            if rc != errno.EFAULT:
                self._check(target, rc)

    @staticmethod
    def _check(name: str, rc: int) -> None:
        if rc:
            raise OSError(rc, f"mallctl {name}: {os.strerror(rc)}")
