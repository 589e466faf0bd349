"""The one module that knows Delta Lake: creating tables, committing batches, reading them.

Exactly-once rests on Delta's application transactions: every commit that carries records
of a Kafka partition also records, in the same atomic log entry, ``app_id`` =
``tradelake:<topic>@<topic id>:<partition>`` with version = the last offset it covers. The
offsets a table has committed are therefore in that table's own log, nowhere else. Before a
commit the table's recorded version is read again and the commit is refused if it already
covers an offset being written (delta-rs does not fence a stale writer by itself). A writer
that commits in the gap between that check and its own commit is caught by delta-rs's conflict
check, which refuses a commit whose app_id a concurrent commit also carried (verified with two
processes on deltalake 1.6.6); on S3 that needs conditional puts (``AWS_CONDITIONAL_PUT=etag``) so
that two commits of one version cannot both land.

Ownership (consumer groups, several landing processes): the version also carries an ownership
epoch, ``version = (epoch << 40) + last offset``. A process that takes a partition first commits
a fence into every table of it (``fence``: no data, the epoch raised above any recorded), and a
data commit is refused unless the table's epoch for each of its partitions is still the
committer's own. A process that lost a partition (a zombie) therefore cannot commit it once the
new owner has fenced; before the fence its commit is still the owner's, and the new owner reads
its resume point only after fencing. Epoch 0 is a plain offset: lakes written before epochs read
as they are, and their first fence raises them to epoch 1.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import CommitProperties, DeltaTable, QueryBuilder, Transaction
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction

from pipelines.errors import TradelakeError, unreadable_table
from pipelines.lake.datafiles import write_data_file
from pipelines.lake.location import LakeLocation
from pipelines.lake.schemas import BATCHES_TABLE, PARTITION_COLUMN

Position = tuple[str, int]  # (topic, partition)
DataFile = AddAction  # a data file written and not yet committed (``write_files``)

# A checkpoint every 10 commits instead of Delta's 100: a commit replays the log since the last
# checkpoint, so on S3 (moto) commit time rose from ~50 to ~285 ms over 100 commits; with 10 the
# mean fell from 161 to 94 ms. Locally a checkpoint of these tables costs a few ms.
TABLE_CONFIGURATION = {"delta.checkpointInterval": "10"}


# An offset takes the low 40 bits (10^12 offsets per partition), the epoch the bits above.
EPOCH_SHIFT = 40
# The last batch id reserved by any landing process, a version of this app_id in ``_batches``'s log.
BATCH_IDS_APP_ID = "tradelake:batch-ids"


def app_id(topic: str, topic_id: str, partition: int) -> str:
    return f"tradelake:{topic}@{topic_id}:{partition}"


def encode_version(epoch: int, last: int) -> int:
    """An app transaction version: ``last`` (the last offset covered, -1: none yet) under ``epoch``."""
    return (epoch << EPOCH_SHIFT) + last


def decode_version(version: int) -> tuple[int, int]:
    """(epoch, last offset) of an app transaction version; a version before epochs is epoch 0."""
    epoch = (version + 1) >> EPOCH_SHIFT
    return epoch, version - (epoch << EPOCH_SHIFT)


@dataclass(frozen=True)
class Covered:
    """The offsets of one partition a commit covers."""

    app_id: str
    first: int
    last: int
    epoch: int = 0  # the committer's ownership epoch of the partition (``Lake.fence``)


class StaleWriterError(TradelakeError):
    """A commit would cover offsets the table has already committed, or of a partition another
    process has fenced."""


FENCE_ATTEMPTS = 20

# delta-rs's CommitConflictError::ConcurrentTransaction: a concurrent commit carried one of our app_ids.
_CONCURRENT_TRANSACTION = "Concurrent transaction failed"


class Lake:
    """The lake's Delta tables at one location; tables are opened once and kept up to date."""

    def __init__(self, location: LakeLocation) -> None:
        self.location = location
        self._tables: dict[str, DeltaTable] = {}
        self._lock = threading.Lock()

    def uri(self, name: str) -> str:
        return self.location.table_uri(name)

    def _options(self) -> dict[str, str] | None:
        return dict(self.location.storage_options) or None

    def table(self, name: str) -> DeltaTable | None:
        """The table as of its latest commit, or None when it does not exist."""
        with self._lock:
            dt = self._tables.get(name)
        if dt is not None:
            with unreadable_table(name, self.uri(name)):
                dt.update_incremental()
            return dt
        try:
            with unreadable_table(name, self.uri(name)):
                dt = DeltaTable(self.uri(name), storage_options=self._options())
        except TableNotFoundError:
            return None
        with self._lock:
            self._tables[name] = dt
        return dt

    def exists(self, name: str) -> bool:
        return self.table(name) is not None

    def ensure(self, name: str, schema: pa.Schema) -> None:
        """Create the table, or add the columns a grown contract brings (never drops any)."""
        dt = self.table(name)
        if dt is None:
            DeltaTable.create(
                self.uri(name),
                schema=schema,
                mode="ignore",
                partition_by=[PARTITION_COLUMN] if PARTITION_COLUMN in schema.names else None,
                configuration=TABLE_CONFIGURATION,
                storage_options=self._options(),
                commit_properties=CommitProperties(custom_metadata={"tradelake.operation": "create"}),
            )
            return
        have = set(dt.schema().to_arrow().names)
        missing = [f for f in schema if f.name not in have]
        if missing:
            from deltalake.schema import Field

            dt.alter.add_columns([Field.from_arrow(f) for f in missing])

    def committed(self, name: str, app_ids: Sequence[str]) -> dict[str, int]:
        """The last offset each app_id has committed into the table (absent: none, also when only fenced)."""
        return {a: last for a, (_, last) in self.versions(name, app_ids).items() if last >= 0}

    def versions(self, name: str, app_ids: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(epoch, last offset) each app_id has recorded in the table (absent: never)."""
        dt = self.table(name)
        if dt is None:
            return {}
        found = {}
        for a in app_ids:
            version = dt.transaction_version(a)
            if version is not None:
                found[a] = decode_version(version)
        return found

    def fence(self, name: str, epochs: Mapping[str, int], owner: str, reserve_batch_ids: int = 0) -> int:
        """Raise each app_id's epoch in the table to the one given, keeping its offset: an empty commit.

        Refused (StaleWriterError) if the table already has that epoch or a newer one for an
        app_id: another process took the partition since the epoch was chosen. A concurrent
        data commit of the previous owner is retried over (it was the owner's until now).
        ``owner`` names the process in the commit's metadata (who took what, in the table's history).
        ``reserve_batch_ids``: also reserve that many batch ids (``_batches`` only), above every
        id reserved so far; returns the first one (0 when none are reserved).
        """
        for _ in range(FENCE_ATTEMPTS):
            dt = self.table(name)
            if dt is None:
                raise TradelakeError(f"the lake table {self.uri(name)} does not exist")
            transactions = []
            for a, epoch in epochs.items():
                have = dt.transaction_version(a)
                have_epoch, last = decode_version(have) if have is not None else (0, -1)
                if have_epoch >= epoch:
                    raise StaleWriterError(
                        f"another landing process took {a} in {name} meanwhile (epoch {have_epoch}, not below {epoch})"
                    )
                transactions.append(Transaction(app_id=a, version=encode_version(epoch, last)))
            first = 0
            if reserve_batch_ids:
                first = self.last_batch_id() + 1
                last_id = first + reserve_batch_ids - 1
                transactions.append(Transaction(app_id=BATCH_IDS_APP_ID, version=last_id))
            try:
                dt.create_write_transaction(
                    [],
                    mode="append",
                    schema=dt.schema(),
                    partition_by=dt.metadata().partition_columns or None,
                    commit_properties=CommitProperties(
                        app_transactions=transactions,
                        custom_metadata={"tradelake.operation": "fence", "tradelake.owner": owner},
                    ),
                )
                return first
            except CommitFailedError as e:
                if _CONCURRENT_TRANSACTION not in str(e):
                    raise
        raise TradelakeError(f"could not fence {name}: {FENCE_ATTEMPTS} concurrent commits in a row")

    def property(self, name: str, key: str) -> str | None:
        """A table property (Delta table configuration) of the table, None when unset."""
        dt = self.table(name)
        return None if dt is None else dt.metadata().configuration.get(key)

    def set_property(self, name: str, key: str, value: str) -> bool:
        """Set a table property in a commit of its own; False when a concurrent commit changed the
        table's metadata first (read the property again)."""
        dt = self.table(name)
        if dt is None:
            raise TradelakeError(f"the lake table {self.uri(name)} does not exist")
        try:
            dt.alter.set_table_properties({key: value}, raise_if_not_exists=False)
        except CommitFailedError:
            return False
        return True

    def last_batch_id(self) -> int:
        """The highest batch id reserved by a landing process or held by ``_batches`` (0: none).

        The rows are read too for lakes written before reservations, and for a ``_batches``
        written without ``fence`` (one process, a lake of an older version).
        """
        dt = self.table(BATCHES_TABLE)
        if dt is None:
            return 0
        reserved = dt.transaction_version(BATCH_IDS_APP_ID) or 0
        table = self.read(BATCHES_TABLE, ["batch_id"])
        held = int(pc.max(table["batch_id"]).as_py()) if table is not None and len(table) else 0
        return max(reserved, held)

    def arrow_schema(self, name: str) -> pa.Schema:
        dt = self.table(name)
        if dt is None:
            raise TradelakeError(f"the lake table {self.uri(name)} does not exist")
        return pa.schema(dt.schema().to_arrow())

    def write_files(self, name: str, data: pa.Table) -> list[AddAction]:
        """Write ``data`` as new data files of the table, one per partition value.

        Nothing is visible until ``commit_files`` adds them to the log; this is the costly part
        (Parquet encoding), safe to run in parallel with another batch's commit.
        """
        dt = self.table(name)
        if dt is None:
            raise TradelakeError(f"the lake table {self.uri(name)} does not exist")
        partitions = dt.metadata().partition_columns
        rows = _conform(data, self.arrow_schema(name))
        parts = [rows]
        if partitions and len(rows) and len(pc.unique(rows[partitions[0]])) > 1:
            column = rows[partitions[0]]
            parts = [rows.filter(pc.equal(column, v)) for v in pc.unique(column)]
        return [write_data_file(self.location, self.uri(name), part, partitions) for part in parts if len(part)]

    def commit_files(
        self,
        name: str,
        files: Sequence[AddAction],
        covered: Sequence[Covered],
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        """Add written files to the table and record the offsets they cover, in one atomic commit.

        Refused (StaleWriterError) when the table has already committed an offset being covered:
        checked here against the latest version, and by delta-rs's conflict check for a commit
        that lands in between (a concurrent commit carrying one of these app ids).
        """
        dt = self.table(name)
        if dt is None:
            raise TradelakeError(f"the lake table {self.uri(name)} does not exist")
        for c in covered:
            version = dt.transaction_version(c.app_id)
            have_epoch, have = decode_version(version) if version is not None else (0, -1)
            if have_epoch != c.epoch:
                raise StaleWriterError(
                    f"refusing to commit offsets {c.first}–{c.last} of {c.app_id} into {name}: the partition's "
                    f"epoch there is {have_epoch}, this process owns epoch {c.epoch} (another process took it)"
                )
            if have >= c.first:
                raise StaleWriterError(
                    f"refusing to commit offsets {c.first}–{c.last} of {c.app_id} into {name}: the table has "
                    f"already committed up to offset {have} (another writer owns this partition)"
                )
        try:
            dt.create_write_transaction(
                list(files),
                mode="append",
                schema=dt.schema(),
                partition_by=dt.metadata().partition_columns or None,
                commit_properties=CommitProperties(
                    app_transactions=[
                        Transaction(app_id=c.app_id, version=encode_version(c.epoch, c.last)) for c in covered
                    ],
                    custom_metadata=dict(metadata or {}),
                ),
            )
        except CommitFailedError as e:
            if _CONCURRENT_TRANSACTION not in str(e):
                raise
            ids = ", ".join(c.app_id for c in covered)
            raise StaleWriterError(
                f"refusing to commit into {name}: another writer committed offsets of {ids} meanwhile "
                "(another writer owns this partition)"
            ) from None

    def append(
        self, name: str, data: pa.Table, covered: Sequence[Covered], metadata: Mapping[str, str] | None = None
    ) -> None:
        """Write ``data`` and commit it with the offsets it covers (``write_files`` + ``commit_files``)."""
        self.commit_files(name, self.write_files(name, data), covered, metadata)

    def read(self, name: str, columns: Sequence[str] | None = None, where: str | None = None) -> pa.Table | None:
        """The table's committed rows (None when the table does not exist), in the table's own types.

        Scanned by delta-rs itself (DataFusion), not by a pyarrow dataset: that one reads through
        a Python filesystem handler whose files an Arrow thread may release after the scan; if
        that happens while the interpreter exits, the thread cannot take the GIL and the process
        aborts ("terminate called without an active exception", status 134; seen in 2 to 13
        runs of 16, local or S3). DataFusion returns view types, cast back to the table's.
        ``where`` is a SQL predicate over the table's columns (DataFusion prunes files by it).
        """
        dt = self.table(name)
        if dt is None:
            return None
        schema = pa.schema(dt.schema().to_arrow())
        if columns:
            schema = pa.schema([schema.field(c) for c in columns])
        select = ", ".join('"' + c.replace('"', '""') + '"' for c in schema.names)
        query = f"select {select} from t" + (f" where {where}" if where else "")
        with unreadable_table(name, self.uri(name)):
            rows = pa.table(QueryBuilder().register("t", dt).execute(query))
        return rows.cast(schema)


def _conform(data: pa.Table, schema: pa.Schema) -> pa.Table:
    """``data`` in the table's column order and types; columns it lacks (an older contract's) as nulls."""
    n = len(data)
    columns = [data[f.name] if f.name in data.column_names else pa.nulls(n, f.type) for f in schema]
    return pa.table(columns, schema=pa.schema([pa.field(f.name, f.type) for f in schema])).cast(schema)
