"""``tradelake run``: the continuous mode — land, rebuild, publish, measure, without anyone running a command.

One process owns the lake: landing runs in a thread (``Lander`` in follow mode: every record
committed within the flush interval), and this thread rebuilds the marts whenever landing has
committed something since the last build: the incremental ``dbt build``, debounced (a burst of
commits makes one build), never two at once, with a full build (``--full-refresh``) on its
schedule. After every build, the ops marts' state changes are published to Kafka exactly once
(``pipelines.publish``). Every committed batch, build and publish is reported to the Dagster instance (see
``pipelines.record``) and to the Prometheus metrics (``--metrics-port``).

SIGTERM/Ctrl-C: landing finishes the batch in flight, a build in progress completes, then the
process exits 0. A landing failure (a replaced stream, a broken lake) stops the process with
its one-line error; a failed build is logged and reported, and the next commit retries.
"""

from __future__ import annotations

import logging
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from pipelines.build import build, dbt_target
from pipelines.catalog import TOPIC_NAMES
from pipelines.errors import TradelakeError
from pipelines.landing.committer import RoutedBatch
from pipelines.landing.ingest import FLUSH_INTERVAL, Lander
from pipelines.metrics import RunMetrics
from pipelines.publish import publish
from pipelines.record import Recorder, dagster_instance
from pipelines.settings import Settings

log = logging.getLogger("tradelake")

DEBOUNCE_SECONDS = 1.0  # after a commit, wait this long for more before building
FULL_BUILD_HOUR_UTC = 3  # as the Dagster schedule `daily_full_build`


@dataclass
class RunOptions:
    batch_size: int = 50_000
    flush_interval: float = FLUSH_INTERVAL
    debounce: float = DEBOUNCE_SECONDS
    full_build_hour: int | None = FULL_BUILD_HOUR_UTC  # None: never
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"


@dataclass
class _Landed:
    """What landing told the build loop since the last build (guarded by the loop's lock)."""

    commits: int = 0
    last_commit: float = 0.0
    lag: dict[tuple[str, int], int] = field(default_factory=dict)


class Runner:
    def __init__(self, settings: Settings, options: RunOptions) -> None:
        self.settings = settings
        self.options = options
        self.metrics = RunMetrics(topics=TOPIC_NAMES)
        self.stopping = threading.Event()
        self._changed = threading.Condition()
        self._landed = _Landed()
        self._landing_error: BaseException | None = None
        # Batches to report to Dagster, by a thread of their own: the instance's writes (sqlite)
        # must not sit on landing's commit path.
        self._to_record: queue.SimpleQueue[tuple[RoutedBatch, float, dict[tuple[str, int], int]] | None] = (
            queue.SimpleQueue()
        )
        self.builds = 0
        self.published = 0  # derived events sent to Kafka

    def stop(self, *_: object) -> None:
        self.stopping.set()
        with self._changed:
            self._changed.notify_all()

    def run(self) -> None:
        server = None
        if self.options.metrics_port is not None:
            server = self.metrics.serve(self.options.metrics_port, self.options.metrics_host)
            log.info("metrics on %s", server.url)
        try:
            with dagster_instance(self.settings) as instance:
                recorder = Recorder(instance, "tradelake run")
                lander = Lander(
                    self.settings,
                    batch_size=self.options.batch_size,
                    flush_interval=self.options.flush_interval,
                    on_batch=self._committed,
                    on_lag=self._lag,
                )
                landing = threading.Thread(target=self._land, args=(lander,), name="tradelake-landing")
                recording = threading.Thread(target=self._record, args=(recorder,), name="tradelake-recorder")
                recording.start()
                landing.start()
                try:
                    self._build_loop(recorder)
                finally:
                    self.stop()
                    landing.join()
                    self._to_record.put(None)  # after landing's last batch
                    recording.join()
        finally:
            if server is not None:
                server.close()
        if self._landing_error is not None:
            raise self._landing_error

    # -- landing (its own thread) -------------------------------------------------------

    def _land(self, lander: Lander) -> None:
        try:
            lander.run(follow=True, should_stop=self.stopping.is_set)
        except BaseException as e:  # the build loop re-raises it once it has stopped
            self._landing_error = e
        finally:
            self.stop()

    def _record(self, recorder: Recorder) -> None:
        while (item := self._to_record.get()) is not None:
            batch, seconds, lag = item
            try:
                recorder.batch(batch, seconds, lag)
            except Exception as e:  # the Dagster instance is a view of the lake, never a reason to stop landing
                log.warning("could not record batch %d in Dagster: %s", batch.batch_id, e)

    def _committed(self, batch: RoutedBatch, seconds: float) -> None:
        self.metrics.batch_committed({t.topic: t.counts() for t in batch.topics.values()}, seconds)
        with self._changed:
            lag = dict(self._landed.lag)
            self._landed.commits += 1
            self._landed.last_commit = time.monotonic()
            self._changed.notify_all()
        self._to_record.put((batch, seconds, lag))

    def _lag(self, lag: dict[tuple[str, int], int]) -> None:
        self.metrics.set_lag(lag)
        with self._changed:
            self._landed.lag = lag

    # -- building (this thread) ---------------------------------------------------------

    def _build_loop(self, recorder: Recorder) -> None:
        next_full = _next_full_build(datetime.now(UTC), self.options.full_build_hour)
        while not self.stopping.is_set():
            with self._changed:
                self._changed.wait_for(lambda: self.stopping.is_set() or self._landed.commits > 0, timeout=1.0)
                if self.stopping.is_set():
                    return
                pending = self._landed.commits
                quiet = time.monotonic() - self._landed.last_commit
            full = next_full is not None and datetime.now(UTC) >= next_full
            if not pending and not full:
                continue
            if pending and not full and quiet < self.options.debounce:
                time.sleep(self.options.debounce - quiet)  # more commits may follow: one build for the burst
            with self._changed:
                self._landed.commits = 0
            self._build(recorder, full_refresh=full)
            if full:
                next_full = _next_full_build(datetime.now(UTC), self.options.full_build_hour)

    def _build(self, recorder: Recorder, full_refresh: bool) -> None:
        started = time.monotonic()
        try:
            result = build(self.settings, full_refresh=full_refresh)
        except TradelakeError as e:
            seconds = time.monotonic() - started
            self.metrics.build_finished(seconds, ok=False, marts=[])
            log.warning("build failed after %.1fs (retried after the next commit): %s", seconds, e)
            return
        seconds = time.monotonic() - started
        self.builds += 1
        try:
            marts = recorder.build(dbt_target(self.settings))
        except Exception as e:
            marts = []
            log.warning("could not record the build in Dagster: %s", e)
        self.metrics.build_finished(seconds, ok=True, marts=marts)
        log.info("%s", result.summary())
        self._publish(recorder)

    def _publish(self, recorder: Recorder) -> None:
        """The new build's state changes to Kafka; a failure is logged, and the next build retries
        (nothing is lost: a change stays listed until the lake records it as published)."""
        try:
            published = publish(self.settings)
        except TradelakeError as e:
            log.warning("publish failed (retried after the next build): %s", e)
            return
        self.published += published.total
        try:
            recorder.publish(published)
        except Exception as e:
            log.warning("could not record the publish in Dagster: %s", e)
        log.info("%s", published.summary())


def _next_full_build(now: datetime, hour: int | None) -> datetime | None:
    if hour is None:
        return None
    today = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    return today if today > now else today + timedelta(days=1)


def run(settings: Settings, options: RunOptions) -> Runner:
    """Run until SIGTERM/SIGINT; return the runner (its metrics and counts) once stopped."""
    runner = Runner(settings, options)
    signal.signal(signal.SIGTERM, runner.stop)
    signal.signal(signal.SIGINT, runner.stop)
    runner.run()
    return runner
