"""The committer routes two batches at once but commits strictly in batch order, each as soon
as it is routed (never waiting for the next batch)."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.landing.committer import BATCHES_IN_FLIGHT, Committer, RoutedBatch
from pipelines.landing.consumer import RecordBuffer
from pipelines.landing.stats import IngestStats


class _Committer(Committer):
    """The real threading and ordering, with routing and committing given by the test."""

    def __init__(self, route, commit) -> None:
        super().__init__(None, {}, {}, {}, {}, 1, IngestStats(), lambda *_: None)  # type: ignore[arg-type]
        self._route, self._commit = route, commit

    def route(self, topics, batch_id, starts):
        return self._route(batch_id)

    def commit(self, batch):
        self._commit(batch.batch_id)


def _batch(batch_id: int) -> RoutedBatch:
    return RoutedBatch(batch_id, None)  # type: ignore[arg-type]


def _run(route, batches: int) -> tuple[list[int], Committer]:
    """Submit like the consuming thread does: a failure surfaces at the next submit or at the end."""
    commits: list[int] = []
    committer = _Committer(route, commits.append)
    committer.start()
    try:
        for _ in range(batches):
            committer.submit(RecordBuffer())
    except OSError:
        pass
    committer.finish()
    return commits, committer


def test_batches_are_routed_concurrently_and_committed_in_order():
    assert BATCHES_IN_FLIGHT >= 2
    second_started = threading.Event()

    def route(batch_id: int) -> RoutedBatch:
        if batch_id == 1:  # batch 1 is still being routed when batch 2 is done
            assert second_started.wait(5), "batch 2 was not routed while batch 1 was"
            time.sleep(0.05)
        if batch_id == 2:
            second_started.set()
        return _batch(batch_id)

    commits, committer = _run(route, batches=6)
    committer.raise_if_failed()
    assert commits == [1, 2, 3, 4, 5, 6]


def test_a_batch_is_committed_as_soon_as_it_is_routed_without_a_next_one():
    committed = threading.Event()
    committer = _Committer(_batch, lambda _: committed.set())
    committer.start()
    committer.submit(RecordBuffer())
    try:
        assert committed.wait(5), "the only batch was not committed while the committer waits for more"
    finally:
        committer.finish()


def test_a_failed_batch_stops_all_later_commits_and_reaches_the_consumer():
    def route(batch_id: int) -> RoutedBatch:
        if batch_id == 2:
            raise OSError("disk full")
        return _batch(batch_id)

    commits, committer = _run(route, batches=5)
    assert commits == [1]
    with pytest.raises(OSError, match="disk full"):
        committer.raise_if_failed()


def test_a_third_batch_waits_in_the_consumer_until_a_batch_is_committed():
    """Memory bound: at most BATCHES_IN_FLIGHT batches handed over and not yet committed."""
    release = threading.Event()
    commits: list[int] = []

    def route(batch_id: int) -> RoutedBatch:
        assert release.wait(5)
        return _batch(batch_id)

    committer = _Committer(route, commits.append)
    committer.start()
    for _ in range(BATCHES_IN_FLIGHT):
        committer.submit(RecordBuffer())
    extra = threading.Thread(target=committer.submit, args=(RecordBuffer(),))
    extra.start()
    extra.join(0.3)
    assert extra.is_alive(), "a batch was handed over while two were in flight"
    release.set()
    extra.join(5)
    assert not extra.is_alive()
    committer.finish()
    committer.raise_if_failed()
    assert commits == list(range(1, BATCHES_IN_FLIGHT + 2))
