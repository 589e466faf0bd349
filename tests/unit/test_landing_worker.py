"""The lander writes two batches at once but commits strictly in batch order."""

from __future__ import annotations

import threading
import time

import pytest

from pipelines.landing.ingest import BATCHES_IN_FLIGHT, _Buffer, _LandingWorker, _Written


def _run(write, batches: int) -> tuple[list[int], _LandingWorker]:
    """Submit like the consuming thread does: a failure surfaces at the next submit or at the end."""
    commits: list[int] = []
    worker = _LandingWorker(write, lambda written: commits.append(written.batch_id), first_batch=1)
    worker.start()
    try:
        for _ in range(batches):
            worker.submit(_Buffer())
    except OSError:
        pass
    worker.finish()
    return commits, worker


def test_batches_are_written_concurrently_and_committed_in_order():
    assert BATCHES_IN_FLIGHT >= 2
    second_started = threading.Event()

    def write(buffer: _Buffer, batch_id: int) -> _Written:
        if batch_id == 1:  # batch 1 is still being written when batch 2 is done
            assert second_started.wait(5), "batch 2 was not written while batch 1 was"
            time.sleep(0.05)
        if batch_id == 2:
            second_started.set()
        return _Written(batch_id, {})

    commits, worker = _run(write, batches=6)
    worker.raise_if_failed()
    assert commits == [1, 2, 3, 4, 5, 6]


def test_a_failed_batch_stops_all_later_commits_and_reaches_the_consumer():
    def write(buffer: _Buffer, batch_id: int) -> _Written:
        if batch_id == 2:
            raise OSError("disk full")
        return _Written(batch_id, {})

    commits, worker = _run(write, batches=5)
    assert commits == [1]
    with pytest.raises(OSError, match="disk full"):
        worker.raise_if_failed()


def test_a_third_batch_waits_in_the_consumer_until_a_batch_is_written():
    """Memory bound: at most BATCHES_IN_FLIGHT batches handed over and not yet written."""
    release = threading.Event()
    commits: list[int] = []

    def write(buffer: _Buffer, batch_id: int) -> _Written:
        assert release.wait(5)
        return _Written(batch_id, {})

    worker = _LandingWorker(write, lambda written: commits.append(written.batch_id), first_batch=1)
    worker.start()
    for _ in range(BATCHES_IN_FLIGHT):
        worker.submit(_Buffer())
    extra = threading.Thread(target=worker.submit, args=(_Buffer(),))
    extra.start()
    extra.join(0.3)
    assert extra.is_alive(), "a batch was handed over while two were being written"
    release.set()
    extra.join(5)
    assert not extra.is_alive()
    worker.finish()
    worker.raise_if_failed()
    assert commits == list(range(1, BATCHES_IN_FLIGHT + 2))
