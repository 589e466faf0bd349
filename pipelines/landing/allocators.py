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
import logging
import os
import sys
import threading
from contextlib import suppress
from functools import cache

import pyarrow as pa

log = logging.getLogger("tradelake")

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

# Above this RSS, landing hands the jemallocs' cached free pages back at once instead of
# waiting for their decay (checked after each topic of a batch lands): a cap on the rare
# spikes when several batches' freed pages are still cached. Below it, nothing is purged
# (purging all the time cost ~30% CPU: pages re-faulted). Over ten whole 2M-record runs the
# peak was 448–476 MiB with it; without it, 459–500 MiB; throughput within noise.
RELEASE_ABOVE_RSS_BYTES = 430 * 2**20
MALLCTL_ARENAS_ALL = 4096  # jemalloc's index for "every arena"

# delta-rs links a jemalloc of its own (tikv-jemallocator, symbols prefixed ``_rjem_``), which
# reads this variable when it first allocates: with no decay, the pages of each commit's
# buffers leave RSS when freed (~10-15 MiB lower peak, speed within noise).
DELTA_JEMALLOC_CONF_VARIABLE = "_RJEM_MALLOC_CONF"
DELTA_JEMALLOC_CONF = "dirty_decay_ms:0,muzzy_decay_ms:0"

# glibc raises its mmap threshold (up to 32 MiB) each time a large mmapped block is freed, so
# later large blocks (librdkafka fetch buffers, DuckDB's Arrow export) come from the heaps,
# which fragment and seldom shrink. A fixed threshold keeps them mmapped, returned on free.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 256 * 1024


def tune_delta_allocator() -> None:
    """Give delta-rs's jemalloc no decay; a user's own ``_RJEM_MALLOC_CONF`` is kept.

    Only before ``deltalake`` is imported: its allocator reads the variable once, at its
    first allocation, so setting it later would only mislead whoever reads the environment.
    """
    if "deltalake" not in sys.modules:
        os.environ.setdefault(DELTA_JEMALLOC_CONF_VARIABLE, DELTA_JEMALLOC_CONF)


def tune_allocators() -> None:
    """Use jemalloc for Arrow (one arena), short jemalloc decays and a fixed glibc mmap
    threshold; a user's own ``JE_ARROW_MALLOC_CONF`` is kept. What a platform lacks (jemalloc
    in Arrow or DuckDB, glibc) keeps its defaults."""
    os.environ.setdefault(ARROW_JEMALLOC_CONF_VARIABLE, ARROW_JEMALLOC_CONF)
    with suppress(NotImplementedError):  # a pyarrow build without jemalloc keeps its default pool
        pa.set_memory_pool(pa.jemalloc_memory_pool())
    with suppress(OSError, AttributeError):  # a C library without mallopt keeps its defaults
        ctypes.CDLL(None).mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    mallctl = _duckdb_mallctl()
    if mallctl is not None:
        with suppress(OSError):  # a jemalloc that refuses a setting keeps its defaults
            for name, ms in DECAY_MS.items():
                mallctl.set_decay(name, ms)


_releasing = threading.Lock()


def release_cached_memory(above_rss_bytes: int = RELEASE_ABOVE_RSS_BYTES) -> bool:
    """Purge Arrow's and DuckDB's cached free pages if the process RSS is above the limit;
    True if it did. One thread purges at a time; the others go on."""
    if _rss_bytes() <= above_rss_bytes or not _releasing.acquire(blocking=False):
        return False
    try:
        pa.default_memory_pool().release_unused()
        mallctl = _duckdb_mallctl()
        if mallctl is not None:
            with suppress(OSError):  # landing goes on; the pages decay as usual
                mallctl.purge()
        return True
    finally:
        _releasing.release()


def _rss_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere, where nothing is purged)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


@cache
def _duckdb_mallctl() -> DuckDBMallctl | None:
    try:
        return DuckDBMallctl()
    except (OSError, AttributeError, ImportError, KeyError) as e:  # DuckDB without jemalloc (macOS, Windows)
        log.debug("DuckDB's allocator keeps its defaults: %s", e)
        return None


class DuckDBMallctl:
    """jemalloc's control interface inside DuckDB's extension module."""

    def __init__(self) -> None:
        import duckdb

        # The extension module: ``_duckdb`` since DuckDB 1.4, ``duckdb.duckdb`` before.
        module = sys.modules[duckdb.DuckDBPyConnection.__module__]
        self._call = getattr(ctypes.CDLL(module.__file__), DUCKDB_MALLCTL)
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
        """Shorten ``name`` (dirty_decay_ms or muzzy_decay_ms) to ``ms`` for the arenas created
        later (DuckDB's threads get theirs on first use) and the ones that exist; an arena
        with a shorter decay keeps it (jemalloc's arena for huge allocations purges at once)."""
        self.write(f"arenas.{name}", ms)
        for i in range(self.read("arenas.narenas", ctypes.c_uint)):
            target = f"arena.{i}.{name}"
            try:
                current = self.read(target)
            except OSError as e:  # a reserved arena index not in use
                if e.errno == errno.EFAULT:
                    continue
                raise
            if current < 0 or current > ms:
                self.write(target, ms)

    def purge(self) -> None:
        """Return every arena's unused pages to the system now."""
        self._check("purge", self._call(f"arena.{MALLCTL_ARENAS_ALL}.purge".encode(), None, None, None, 0))

    def write(self, name: str, value: int) -> None:
        """Write a signed size (ssize_t) setting, as the decay times are."""
        data = ctypes.c_ssize_t(value)
        self._check(name, self._call(name.encode(), None, None, ctypes.byref(data), ctypes.sizeof(data)))

    @staticmethod
    def _check(name: str, rc: int) -> None:
        if rc:
            raise OSError(rc, f"mallctl {name}: {os.strerror(rc)}")
