"""Landing shortens the decay of DuckDB's jemalloc (freed pages leave RSS sooner)."""

from __future__ import annotations

import ctypes

import duckdb
import pyarrow as pa
import pytest

from pipelines.landing.allocators import (
    ARROW_JEMALLOC_CONF,
    ARROW_JEMALLOC_CONF_VARIABLE,
    DECAY_MS,
    DuckDBMallctl,
    release_cached_memory,
    tune_allocators,
)


@pytest.fixture
def mallctl() -> DuckDBMallctl:
    try:
        return DuckDBMallctl()
    except AttributeError:
        pytest.skip("this DuckDB build has no jemalloc (only Linux builds do)")


def test_tune_allocators_sets_duckdb_jemalloc_decay_for_existing_and_new_arenas(mallctl, monkeypatch):
    monkeypatch.setenv(ARROW_JEMALLOC_CONF_VARIABLE, ARROW_JEMALLOC_CONF)  # restored after the test
    pool = pa.default_memory_pool()
    duckdb.connect().execute("SELECT 1").fetchall()  # DuckDB's jemalloc has an arena in use
    try:
        tune_allocators()
    finally:
        pa.set_memory_pool(pool)
    in_use = 0
    for name, ms in DECAY_MS.items():
        assert mallctl.read(f"arenas.{name}") == ms  # arenas created later
        for i in range(mallctl.read("arenas.narenas", ctypes.c_uint)):
            try:
                current = mallctl.read(f"arena.{i}.{name}")
            except OSError:  # a reserved index, not in use
                continue
            assert current <= ms, f"arena {i}: {name} {current}"
            in_use += 1
    assert in_use >= len(DECAY_MS)


def test_a_shorter_decay_is_kept(mallctl):
    before = mallctl.read("arena.0.dirty_decay_ms"), mallctl.read("arenas.dirty_decay_ms")
    try:
        mallctl.set_decay("dirty_decay_ms", 0)
        mallctl.set_decay("dirty_decay_ms", DECAY_MS["dirty_decay_ms"])
        assert mallctl.read("arena.0.dirty_decay_ms") == 0
        assert mallctl.read("arenas.dirty_decay_ms") == DECAY_MS["dirty_decay_ms"]
    finally:
        mallctl.write("arena.0.dirty_decay_ms", before[0])
        mallctl.write("arenas.dirty_decay_ms", before[1])


def test_cached_memory_is_released_only_above_the_rss_limit(mallctl):
    assert release_cached_memory(above_rss_bytes=2**50) is False
    assert release_cached_memory(above_rss_bytes=0) is True
