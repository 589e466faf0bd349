"""Prometheus metrics of a continuous ``tradelake run``: landing, dbt builds and the marts' age.

``RunMetrics`` owns a private ``CollectorRegistry`` rather than prometheus-client's global one,
so that several runners (or tests) in one process each export only their own numbers and never
collide on a metric name. ``serve`` exposes it as ``/metrics`` (Prometheus text format) on
127.0.0.1; ``docs/grafana-dashboard.json`` charts every metric below.

What the runner calls, and the metrics each call feeds:

- ``batch_committed(counts, seconds)`` after each landing batch is committed to the lake:
  ``tradelake_records_consumed_total{topic}``, ``tradelake_records_total{topic,outcome}``
  (outcome ``landed`` | ``quarantined`` | ``tombstone``; a consumed record has exactly one
  outcome, so summing over ``outcome`` gives the consumed count),
  ``tradelake_batch_commit_seconds`` (histogram) and ``tradelake_last_commit_timestamp_seconds``.
  ``counts`` is, per topic, the batch's counts under the keys ``IngestStats.add`` uses.
- ``set_lag(lag)`` whenever the high watermarks are read: ``tradelake_lag_records{topic,partition}``
  (high watermark − next offset to land). The mapping replaces the previous one whole, so a
  partition that disappeared (topic recreated) stops being exported.
- ``build_finished(seconds, ok, marts)`` after each dbt build, failed or not:
  ``tradelake_dbt_build_seconds`` (histogram), ``tradelake_dbt_build_failures_total``,
  ``tradelake_dbt_last_success_timestamp_seconds`` and ``tradelake_mart_age_seconds{mart}``.

Points in time are gauges of unix seconds (the ``_timestamp_seconds`` convention), so a dashboard
computes "seconds since" with ``time() - …`` and the value never goes stale between scrapes. Mart
age is the exception the issue names: it is computed when scraped, from the start of the last
build that refreshed the mart (the mart holds data at least that old). A point in time, lag or
mart age that is not known yet has no sample (rather than a misleading 0): the family is still
exported, with its help and type.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Self
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric

from pipelines.errors import TradelakeError
from pipelines.watermarks import Position

# The keys of a topic's counts in ``batch_committed`` (those of IngestStats.add) -> outcome label.
OUTCOMES = {"landed": "landed", "quarantined": "quarantined", "tombstones": "tombstone"}
COUNT_KEYS = frozenset({"records", *OUTCOMES})

# Lake commits take tens to hundreds of milliseconds (docs/benchmarks.md); 5 ms–5 s, denser
# where p50/p95 fall so that histogram_quantile interpolates within narrow buckets.
COMMIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.35, 0.5, 0.75, 1.0, 2.5, 5.0)
# Incremental builds take seconds, full builds up to minutes.
BUILD_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 45.0, 60.0, 120.0, 300.0, 600.0)


class RunMetrics:
    """The metrics of one runner, in a registry of their own. Thread-safe: landing and the
    build loop report from their own threads while the HTTP server's threads scrape.

    ``topics`` are exported at 0 from the start, so that ``rate()`` sees a topic's first
    records rather than a series appearing out of nowhere. ``clock`` gives unix seconds.
    """

    def __init__(self, topics: Iterable[str] = (), clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self._clock = clock
        self._lock = threading.Lock()
        self._lag: dict[Position, int] = {}
        self._last_commit: float | None = None
        self._last_success: float | None = None
        self._mart_refreshed: dict[str, float] = {}  # mart -> start of the last build that refreshed it

        self._consumed = Counter(
            "tradelake_records_consumed",
            "Records consumed from Kafka and committed to the lake (every outcome), by topic.",
            ["topic"],
            registry=self.registry,
        )
        self._records = Counter(
            "tradelake_records",
            "Records committed to the lake by outcome: landed in the topic's table, quarantined, "
            "or a CDC tombstone (a delete).",
            ["topic", "outcome"],
            registry=self.registry,
        )
        self._commit_seconds = Histogram(
            "tradelake_batch_commit_seconds",
            "Time to commit one landing batch to the lake (its topic tables, quarantine and _batches).",
            buckets=COMMIT_BUCKETS,
            registry=self.registry,
        )
        self._build_seconds = Histogram(
            "tradelake_dbt_build_seconds",
            "Duration of a dbt build, failed or not.",
            buckets=BUILD_BUCKETS,
            registry=self.registry,
        )
        self._build_failures = Counter(
            "tradelake_dbt_build_failures",
            "dbt builds that failed (a model or test failed, or dbt could not run).",
            registry=self.registry,
        )
        self.registry.register(_StateCollector(self))
        for topic in topics:
            self._consumed.labels(topic)
            for outcome in OUTCOMES.values():
                self._records.labels(topic, outcome)

    # -- what the runner reports -------------------------------------------------------------

    def batch_committed(self, counts: Mapping[str, Mapping[str, int]], seconds: float) -> None:
        """One landing batch committed in ``seconds``: per topic, its ``records`` and how many
        were ``landed``, ``quarantined`` and ``tombstones`` (a missing key counts 0)."""
        for topic, c in counts.items():
            unknown = set(c) - COUNT_KEYS
            if unknown:  # a misspelt key would silently drop records from the counters
                raise ValueError(f"unknown count(s) {sorted(unknown)} for {topic}; expected {sorted(COUNT_KEYS)}")
            self._consumed.labels(topic).inc(c.get("records", 0))
            for key, outcome in OUTCOMES.items():
                self._records.labels(topic, outcome).inc(c.get(key, 0))
        self._commit_seconds.observe(seconds)
        with self._lock:
            self._last_commit = self._clock()

    def set_lag(self, lag: Mapping[Position, int]) -> None:
        """Lag in records per (topic, partition); replaces the previous reading whole.

        A value below 0 (a high watermark read just before a commit past it) is exported as 0.
        """
        snapshot = {position: max(n, 0) for position, n in lag.items()}
        with self._lock:
            self._lag = snapshot

    def build_finished(self, seconds: float, ok: bool, marts: Iterable[str]) -> None:
        """A dbt build ended after ``seconds``. ``marts`` are the marts it refreshed (their
        models succeeded; a failed build may still have refreshed some), as ``schema.name``."""
        self._build_seconds.observe(seconds)
        if not ok:
            self._build_failures.inc()
        now = self._clock()
        with self._lock:
            if ok:
                self._last_success = now
            for mart in marts:
                self._mart_refreshed[mart] = now - seconds

    # -- exposition ------------------------------------------------------------------------

    def serve(self, port: int, host: str = "127.0.0.1") -> MetricsServer:
        """Serve ``/metrics`` on ``host:port`` from background threads (port 0: any free port)."""
        try:
            server, thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise TradelakeError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        return MetricsServer(server, thread)

    def _state(self, describe: bool) -> Iterator[Metric]:
        """The families whose value is the runner's current state, read under the lock."""
        lag = GaugeMetricFamily(
            "tradelake_lag_records",
            "Records in Kafka not yet landed: high watermark - next offset to land, per topic and partition.",
            labels=["topic", "partition"],
        )
        last_commit = GaugeMetricFamily(
            "tradelake_last_commit_timestamp_seconds", "When the last landing batch was committed (unix seconds)."
        )
        last_success = GaugeMetricFamily(
            "tradelake_dbt_last_success_timestamp_seconds", "When the last successful dbt build ended (unix seconds)."
        )
        mart_age = GaugeMetricFamily(
            "tradelake_mart_age_seconds",
            "Seconds since the start of the last dbt build that refreshed the mart, at scrape time.",
            labels=["mart"],
        )
        if not describe:
            with self._lock:
                now = self._clock()
                for (topic, partition), n in sorted(self._lag.items()):
                    lag.add_metric([topic, str(partition)], n)
                if self._last_commit is not None:
                    last_commit.add_metric([], self._last_commit)
                if self._last_success is not None:
                    last_success.add_metric([], self._last_success)
                for mart, refreshed in sorted(self._mart_refreshed.items()):
                    mart_age.add_metric([mart], max(now - refreshed, 0.0))
        yield from (lag, last_commit, last_success, mart_age)


class _StateCollector:
    """Hands the registry the state families at each scrape (so mart age is computed then)."""

    def __init__(self, metrics: RunMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self.metrics._state(describe=False)

    def describe(self) -> Iterator[Metric]:  # the names, for the registry's duplicate check
        return self.metrics._state(describe=True)


@dataclass
class MetricsServer:
    """prometheus-client's HTTP server on a RunMetrics registry; ``close`` stops it and frees the port."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return self.server.server_port

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://[{host}]:{port}/metrics" if ":" in host else f"http://{host}:{port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
