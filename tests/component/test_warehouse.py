"""The published warehouse and a build's attempt (``pipelines.warehouse``), on real DuckDB files
(no dbt here: the attempt is written directly; tests/e2e/test_readers.py builds with dbt).

A reader is a separate process where the test is about locks (DuckDB's locks are per process)
or about what an open connection sees (DuckDB hands a process the database it already has open).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import duckdb
import pytest

from pipelines.errors import TradelakeError
from pipelines.settings import Settings
from pipelines.warehouse import BUILDING_DIR, Reader, build_lock, building, building_path, published_path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.load(env={}, home=str(tmp_path / "home"))


def _write(database: Path, value: int) -> None:
    with duckdb.connect(str(database)) as con:
        con.execute("create schema if not exists marts")
        con.execute("create or replace table marts.t as select ? as v", [value])


def _value(database: Path) -> int:
    with duckdb.connect(str(database), read_only=True) as con:
        return con.sql("select v from marts.t").fetchone()[0]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class DuckProcess:
    """A Python process holding a DuckDB connection, driven line by line over stdin."""

    def __init__(self, database: Path, read_only: bool) -> None:
        script = textwrap.dedent(
            f"""
            import os, sys, duckdb
            con = duckdb.connect({str(database)!r}, read_only={read_only})
            print("ready", flush=True)
            for line in sys.stdin:
                command = line.strip()
                if command == "exit-leaving-wal":  # committed, not checkpointed: the WAL stays
                    os._exit(0)
                if command == "reconnect":
                    con.close()
                    con = duckdb.connect({str(database)!r}, read_only={read_only})
                    print("ok", flush=True)
                    continue
                if command.startswith("select"):
                    print(con.sql(command).fetchall(), flush=True)
                else:
                    con.execute(command)
                    print("ok", flush=True)
            """
        )
        self.process = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.ask_line() == "ready"

    def ask_line(self, command: str | None = None) -> str:
        assert self.process.stdin is not None and self.process.stdout is not None
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        assert self.process.wait(timeout=30) == 0


def test_a_build_starts_from_the_published_warehouse_and_publishes_by_rename(settings: Settings):
    with building(settings) as attempt:
        assert attempt == building_path(settings) and attempt.name == published_path(settings).name
        _write(attempt, 1)
    assert _value(published_path(settings)) == 1

    reader = DuckProcess(published_path(settings), read_only=True)
    try:
        old_inode = published_path(settings).stat().st_ino
        with building(settings) as attempt:
            assert _value(attempt) == 1, "the attempt is a copy of the published warehouse"
            _write(attempt, 2)
            assert reader.ask_line("select v from marts.t") == "[(1,)]"
        assert published_path(settings).stat().st_ino != old_inode
        assert _value(published_path(settings)) == 2
        assert reader.ask_line("select v from marts.t") == "[(1,)]", "an open connection keeps its build"
        assert reader.ask_line("reconnect") == "ok"
        assert reader.ask_line("select v from marts.t") == "[(2,)]", "a new connection reads the new build"
    finally:
        reader.close()
    assert not (settings.home / BUILDING_DIR).exists()
    assert not Path(f"{published_path(settings)}.wal").exists()


def test_a_failed_build_publishes_nothing_and_leaves_no_attempt(settings: Settings):
    with building(settings) as attempt:
        _write(attempt, 1)
    published = published_path(settings)
    before = (published.stat().st_ino, _digest(published))
    with pytest.raises(RuntimeError, match="a model failed"), building(settings) as attempt:
        _write(attempt, 3)
        raise RuntimeError("a model failed")
    assert (published.stat().st_ino, _digest(published)) == before
    assert not (settings.home / BUILDING_DIR).exists()

    # A build that crashed (its process killed) leaves its attempt: the next one starts afresh.
    building_path(settings).parent.mkdir()
    _write(building_path(settings), 99)
    with building(settings) as attempt:
        assert _value(attempt) == 1
    assert _value(published) == 1


def test_one_build_at_a_time_a_second_waits_then_gives_up_with_one_line(settings: Settings):
    with build_lock(settings), pytest.raises(TradelakeError) as refused, building(settings, wait=0.3):
        pytest.fail("two builds at once")
    message = str(refused.value)
    assert "\n" not in message
    assert f"another build of {settings.home} is running (pid {os.getpid()}, since " in message
    assert message.endswith("gave up after 0.3 s")

    released = threading.Event()

    def hold_for_a_while() -> None:
        with build_lock(settings):
            released.wait(5)
            time.sleep(0.5)

    holder = threading.Thread(target=hold_for_a_while)
    holder.start()
    time.sleep(0.2)
    started = time.monotonic()
    released.set()
    with building(settings, wait=10) as attempt:
        waited = time.monotonic() - started
        _write(attempt, 4)
    holder.join()
    assert waited >= 0.4, "the second build waited for the first"
    assert _value(published_path(settings)) == 4


def test_a_writer_on_the_published_file_is_refused_and_its_wal_is_carried_over(settings: Settings):
    published = published_path(settings)
    with building(settings) as attempt:
        _write(attempt, 1)
    writer = DuckProcess(published, read_only=False)  # e.g. a tool that opened it read-write
    assert writer.ask_line("insert into marts.t values (5)") == "ok"
    with pytest.raises(TradelakeError, match=r"is open for writing in another process: close it"), building(settings):
        pytest.fail("built beside a writer")
    assert not (settings.home / BUILDING_DIR).exists()

    # The writer goes away without a checkpoint: its committed row is only in the WAL.
    writer.ask_line("exit-leaving-wal")
    assert writer.process.wait(timeout=30) == 0
    assert Path(f"{published}.wal").exists()
    with building(settings) as attempt, duckdb.connect(str(attempt), read_only=True) as con:
        assert sorted(con.sql("select v from marts.t").fetchall()) == [(1,), (5,)]
    assert not Path(f"{published}.wal").exists(), "the published file needs no WAL"
    with duckdb.connect(str(published), read_only=True) as con:
        assert sorted(con.sql("select v from marts.t").fetchall()) == [(1,), (5,)]


def test_the_reader_finds_the_warehouse_and_opens_it_per_query(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    home = tmp_path / "home"
    assert Reader.find(home / "w.duckdb", env={}).path == (home / "w.duckdb").resolve()
    found = Reader.find(env={"TRADELAKE_HOME": str(home), "TRADELAKE_LAKE_URL": str(tmp_path / "elsewhere")})
    assert (found.path, found.lake.url) == ((home / "warehouse.duckdb").resolve(), str(tmp_path / "elsewhere"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".tradelake").mkdir()
    (tmp_path / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "notebooks")  # a notebook runs from notebooks/
    with pytest.raises(TradelakeError, match=r"no warehouse at .*: build the marts first"):
        Reader.find(env={}).query("select 1")
    _write(tmp_path / ".tradelake" / "warehouse.duckdb", 7)
    reader = Reader.find(env={})
    assert reader.path == (tmp_path / ".tradelake" / "warehouse.duckdb").resolve()
    assert reader.lake.url == str((tmp_path / ".tradelake" / "lake").resolve())
    assert reader.query("select v from marts.t")["v"].tolist() == [7]
    # Nothing stays open: the file can be opened for writing right after a query.
    _write(reader.path, 8)
    assert reader.query("select v from marts.t")["v"].tolist() == [8]
