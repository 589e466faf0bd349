"""Landing shortens the decay of DuckDB's jemalloc (freed pages leave RSS sooner)."""

from __future__ import annotations

import ctypes

import duckdb

from pipelines.landing.allocators import DECAY_MS, DuckDBMallctl, tune_allocators


def test_tune_allocators_sets_duckdb_jemalloc_decay_for_existing_and_new_arenas():
    duckdb.connect().execute("SELECT 1").fetchall()  # DuckDB's jemalloc has an arena in use
    tune_allocators()
    mallctl = DuckDBMallctl()
    arenas = mallctl.read("arenas.narenas", ctypes.c_uint)
    for name, ms in DECAY_MS.items():
        assert mallctl.read(f"arenas.{name}") == ms  # arenas created later
        assert mallctl.read(f"arena.0.{name}") == ms  # the arena already in use
    assert arenas >= 1
