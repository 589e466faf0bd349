"""The warehouse readers see, and how a build replaces it without blocking or breaking them.

``$TRADELAKE_HOME/warehouse.duckdb`` is the *published* warehouse: notebooks, BI tools,
``tradelake export`` and the tests open it read-only, and no build ever writes it. A build
(``building``) works on an *attempt*, ``$TRADELAKE_HOME/building/warehouse.duckdb``, a copy of
the published file (so that incremental models keep their rows), and on success publishes it
with one ``os.replace`` onto the published name:

- A reader never blocks a build: DuckDB's read-only connections take a shared lock on the
  published file only, and dbt writes another file.
- A build never breaks a reader: the rename is atomic, so a connection opened before it keeps
  reading the previous file (its inode), consistent, until it reconnects; one opened after it
  reads the new build. No reader ever sees a build half-done.
- A failed build publishes nothing: the attempt is deleted, the published file is as it was.
- One build at a time per home: an flock on ``$TRADELAKE_HOME/build.lock``; a second build waits
  for it (``tradelake run`` builds again and again, a CLI or Dagster build queues behind it),
  and gives up after ``wait`` seconds with one line naming the holder.

The attempt keeps the published *name* in another folder, not a suffixed name, because dbt-duckdb
names the database after the file (``warehouse``) and the views it creates refer to their inputs
by that name (``warehouse.staging.…``): a view built in ``warehouse-2.duckdb`` would be broken
once renamed. A fixed folder (builds are serialized) also keeps dbt's profile, and so its partial
parsing, the same from one build to the next.

``Reader`` is the read side: a read-only connection for one query (or a few on the same build),
closed after it, so an open notebook holds no lock between queries and each query reads the
latest published build.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from pipelines.errors import TradelakeError
from pipelines.lake.duckdb_delta import connect
from pipelines.lake.location import LakeLocation
from pipelines.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger("tradelake")

WAREHOUSE_FILE = "warehouse.duckdb"
BUILDING_DIR = "building"
LOCK_FILE = "build.lock"
# How long a build waits for the one in progress: longer than a full build of the demo's data
# takes on a small machine, short enough that a stuck build is reported rather than waited out.
BUILD_WAIT_SECONDS = 600.0
_POLL_SECONDS = 0.2


def published_path(settings: Settings) -> Path:
    """The warehouse readers open (read-only)."""
    return settings.home / WAREHOUSE_FILE


def building_path(settings: Settings) -> Path:
    """The file dbt writes during a build (``TRADELAKE_WAREHOUSE``, see ``pipelines.build.dbt_environment``)."""
    return settings.home / BUILDING_DIR / WAREHOUSE_FILE


def _wal(database: Path) -> Path:
    return database.with_name(database.name + ".wal")


@contextlib.contextmanager
def build_lock(settings: Settings, wait: float = BUILD_WAIT_SECONDS) -> Iterator[None]:
    """Hold the home's build lock for the block, waiting up to ``wait`` seconds for it."""
    settings.home.mkdir(parents=True, exist_ok=True)
    path = settings.home / LOCK_FILE
    with open(path, "a+") as lock:
        deadline = time.monotonic() + wait
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                if time.monotonic() >= deadline:
                    raise TradelakeError(
                        f"another build of {settings.home} is running ({holder}); gave up after {wait:g} s"
                    ) from None
                if not waiting:
                    log.info("build: waiting for the build in progress (%s)", holder)
                    waiting = True
                time.sleep(min(_POLL_SECONDS, max(deadline - time.monotonic(), 0)))
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}, since {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def building(settings: Settings, wait: float = BUILD_WAIT_SECONDS) -> Iterator[Path]:
    """A build's attempt: yields the file dbt writes (``building_path``), publishes it when the
    block succeeds, deletes it when the block raises. Holds the build lock throughout."""
    published, attempt = published_path(settings), building_path(settings)
    with build_lock(settings, wait):
        shutil.rmtree(attempt.parent, ignore_errors=True)  # a crashed build's attempt
        attempt.parent.mkdir(parents=True)
        try:
            if published.exists():
                _copy_published(published, attempt)
            yield attempt
            _settle(attempt)
            _publish(attempt, published)
        finally:
            shutil.rmtree(attempt.parent, ignore_errors=True)


def _copy_published(published: Path, attempt: Path) -> None:
    """Copy the published warehouse consistently: under a shared lock, the one DuckDB's read-only
    connections take (``fcntl`` on the whole file), so that no process has it open for writing
    during the copy (no build does; a tool that opened it read-write would).

    A WAL beside it (only a warehouse written in place, by an older tradelake or by dbt run by
    hand, leaves one) is copied too: the attempt replays it when first opened, and ``_settle``
    checkpoints it. (Closing the file drops any POSIX lock this process holds on it, a DuckDB
    reader's of this process included; a reader only loses its protection from a writer.)
    """
    with open(published, "rb") as source:
        try:
            fcntl.lockf(source, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise TradelakeError(
                f"{published} is open for writing in another process: close it (readers open it read-only), "
                "then build again"
            ) from None
        with open(attempt, "wb") as copy:
            shutil.copyfileobj(source, copy, 2**20)
        if _wal(published).exists():
            shutil.copyfile(_wal(published), _wal(attempt))


def _settle(attempt: Path) -> None:
    """Checkpoint the attempt into its one file, so that readers of the published file never
    need a WAL. Opening it for writing also proves that the dbt process that wrote it has let it go."""
    try:
        with duckdb.connect(str(attempt)) as con:
            con.execute("checkpoint")
    except duckdb.Error as e:
        first = str(e).strip().splitlines()[0]
        raise TradelakeError(f"cannot publish {attempt}: {first}") from None
    if _wal(attempt).exists():
        raise TradelakeError(f"cannot publish {attempt}: its WAL was not checkpointed")


def _publish(attempt: Path, published: Path) -> None:
    # A WAL of the old file (see _copy_published) is in the attempt already; left beside the
    # new file, DuckDB would replay it onto a database it does not belong to.
    _wal(published).unlink(missing_ok=True)
    os.replace(attempt, published)
    directory = os.open(published.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


@dataclass(frozen=True)
class Reader:
    """Read-only queries on the published warehouse, a connection per query (or per snapshot).

    The connection can read the lake too (the staging views are ``delta_scan`` of its tables,
    ``pipelines.lake.duckdb_delta``). It is closed after the query: nothing stays locked, and
    the next query reads whatever build is published by then.
    """

    path: Path
    lake: LakeLocation

    @classmethod
    def of(cls, settings: Settings) -> Reader:
        return cls(published_path(settings), settings.lake)

    @classmethod
    def find(cls, warehouse: str | Path | None = None, env: Mapping[str, str] | None = None) -> Reader:
        """The warehouse a notebook reads: ``warehouse`` if given, else ``$TRADELAKE_HOME``'s, else
        the repository's ``.tradelake/`` (the notebook run from the repository root or ``notebooks/``)."""
        env = os.environ if env is None else env
        if warehouse:
            path = Path(warehouse)
        elif env.get("TRADELAKE_HOME"):
            path = Path(env["TRADELAKE_HOME"]) / WAREHOUSE_FILE
        else:
            found = [base / ".tradelake" / WAREHOUSE_FILE for base in (Path.cwd(), Path.cwd().parent)]
            path = next((p for p in found if p.exists()), found[0])
        path = path.expanduser().resolve()
        return cls(path, LakeLocation.from_env(env, path.parent))

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection for a few queries that must see the same build; closed after."""
        if not self.path.exists():
            raise TradelakeError(
                f"no warehouse at {self.path}: build the marts first ('tradelake build', 'make demo' or the Dagster UI)"
            )
        try:
            con = connect(self.lake, str(self.path), read_only=True)
        except duckdb.Error as e:
            raise TradelakeError(f"cannot open {self.path} read-only: {e}") from None
        try:
            yield con
        finally:
            con.close()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """The result of one query as a DataFrame, on a connection opened for it."""
        with self.snapshot() as con:
            return con.execute(sql, params or []).df()
