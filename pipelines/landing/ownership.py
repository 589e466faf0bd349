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
   filter needs that), and two processes never use the same id.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from pipelines.lake.schemas import BATCHES_TABLE, QUARANTINE_TABLE
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
        return Taken(
            epochs={k: epoch[a] for k, a in ids.items()},
            committed=committed,
            positions={k: resumed[a] + 1 for k, a in ids.items() if a in resumed},
            first_batch=first,
            last_batch=first + BATCH_ID_BLOCK - 1,
        )

    def reserve(self) -> tuple[int, int]:
        """A new block of batch ids (first, last), when the current one is used up."""
        first = self.lake.fence(BATCHES_TABLE, {}, self.owner, BATCH_ID_BLOCK)
        return first, first + BATCH_ID_BLOCK - 1
