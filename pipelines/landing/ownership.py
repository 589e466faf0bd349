"""Which partitions this landing process owns, and taking them over from a previous owner.

Several landing processes of one consumer group share a lake; Kafka decides who reads which
partition, but only the lake can decide who commits it: a process that lost a partition
(paused past its session timeout, cut off from the network) still holds a batch of it and will
try to commit. So taking a partition is done in the lake, before anything of it is read:

1. fence: in every table the partition lands in (its topic table, ``_quarantine``, ``_batches``)
   an empty commit raises the partition's ownership epoch above any recorded
   (``Lake.fence``); from then on a commit of the partition under an older epoch is refused;
2. the resume point and what each table has committed are read only after the fences, so a
   commit the previous owner made before being fenced is included, not landed twice;
3. a new block of batch ids is reserved in ``_batches``'s log, above every id reserved before:
   within a partition batch ids keep increasing from owner to owner (staging's incremental
   filter needs that), and two processes never use the same id;
4. a batch the previous owner committed to some tables and not to ``_batches`` (killed between
   its commits) keeps its batch id: its rows in those tables carry it, so the new owner lands
   that range again as the same batch (``Taken.partial``), and every row's batch has its
   ``_batches`` row, as when one process resumes after a crash;
5. the take is recorded in ``_owners`` (who, which epoch, when), what ``tradelake status``
   shows as each partition's owner; giving partitions up cleanly is recorded there too.
   ``_owners`` informs people; the fences alone decide who may commit.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pyarrow as pa

from pipelines.lake.schemas import BATCHES_TABLE, OWNERS_SCHEMA, OWNERS_TABLE, QUARANTINE_TABLE
from pipelines.lake.tables import Lake, Position, app_id

# Batch ids reserved at a time: one extra ``_batches`` commit per this many batches, or per
# assignment (a new owner always starts a fresh block; the rest of the old one is skipped).
BATCH_ID_BLOCK = 1000


@dataclass
class Taken:
    """What a process learns when it takes partitions: where to resume and what is committed."""

    epochs: dict[Position, int]  # the process's ownership epoch of each partition taken
    committed: dict[str, dict[str, int]]  # per table: app_id -> last committed offset (after the fences)
    positions: dict[Position, int]  # per partition: the next offset to land (absent: from the beginning)
    first_batch: int  # the first id of the block reserved
    last_batch: int  # its last id
    # per partition: (batch id, last offset) of a batch some table committed and ``_batches`` did not
    partial: dict[Position, tuple[int, int]] = field(default_factory=dict)


class Ownership:
    """Takes partitions for this process: fence, read the resume points, reserve batch ids."""

    def __init__(self, lake: Lake, topic_ids: dict[str, str]) -> None:
        self.lake = lake
        self.topic_ids = topic_ids
        self.owner = f"{socket.gethostname()}:{os.getpid()}"  # recorded with each fence

    def take(self, keys: Iterable[Position]) -> Taken:
        keys = sorted(keys)
        ids = {k: app_id(k[0], self.topic_ids[k[0]], k[1]) for k in keys}
        tables = {t: [ids[k] for k in keys if k[0] == t] for t in {k[0] for k in keys}}
        tables |= {QUARANTINE_TABLE: list(ids.values()), BATCHES_TABLE: list(ids.values())}
        recorded = {name: self.lake.versions(name, app_ids) for name, app_ids in tables.items()}
        epoch = {a: 1 + max((v[a][0] for v in recorded.values() if a in v), default=0) for a in ids.values()}
        for name, app_ids in tables.items():
            if name != BATCHES_TABLE:
                self.lake.fence(name, {a: epoch[a] for a in app_ids}, self.owner)
        first = self.lake.fence(BATCHES_TABLE, {a: epoch[a] for a in tables[BATCHES_TABLE]}, self.owner, BATCH_ID_BLOCK)
        committed = {name: self.lake.committed(name, app_ids) for name, app_ids in tables.items()}
        resumed = committed[BATCHES_TABLE]
        self._record(keys, {k: epoch[a] for k, a in ids.items()}, "taken")
        partial = {}
        for key, a in ids.items():
            done = resumed.get(a, -1)
            last = max(committed[name].get(a, -1) for name in (key[0], QUARANTINE_TABLE))
            if last > done and (batch := self._batch_after(key, done)) is not None:
                partial[key] = (batch, last)
        return Taken(
            epochs={k: epoch[a] for k, a in ids.items()},
            committed=committed,
            positions={k: resumed[a] + 1 for k, a in ids.items() if a in resumed},
            first_batch=first,
            last_batch=first + BATCH_ID_BLOCK - 1,
            partial=partial,
        )

    def _batch_after(self, key: Position, done: int) -> int | None:
        """The batch id of the rows of a partition past ``_batches``' last offset (None: no row
        carries one — the range held only tombstones, or nothing landed)."""
        topic, partition = key
        where = f"_partition = {int(partition)} and _offset > {int(done)}"
        for name, scope in ((topic, where), (QUARANTINE_TABLE, f"_topic = '{topic}' and {where}")):
            rows = self.lake.read(name, ["_batch_id"], where=scope)
            if rows is not None and len(rows):
                return int(rows["_batch_id"][0].as_py())
        return None

    def release(self, epochs: dict[Position, int]) -> None:
        """Partitions given up cleanly (their records committed), for ``status``."""
        if epochs:
            self._record(sorted(epochs), epochs, "released")

    def _record(self, keys: list[Position], epochs: dict[Position, int], event: str) -> None:
        now = datetime.now(UTC)
        rows = [
            {
                "topic": t,
                "topic_id": self.topic_ids[t],
                "partition": p,
                "epoch": epochs[(t, p)],
                "owner": self.owner,
                "event": event,
                "changed_at": now,
            }
            for t, p in keys
        ]
        self.lake.append(OWNERS_TABLE, pa.Table.from_pylist(rows, schema=OWNERS_SCHEMA), [])

    def reserve(self) -> tuple[int, int]:
        """A new block of batch ids (first, last), when the current one is used up."""
        first = self.lake.fence(BATCHES_TABLE, {}, self.owner, BATCH_ID_BLOCK)
        return first, first + BATCH_ID_BLOCK - 1
