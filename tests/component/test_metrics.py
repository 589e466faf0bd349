"""``RunMetrics`` served over HTTP by prometheus-client and scraped as Prometheus would: every
metric of issue 12 item 5 is present with its labels and the values the runner reported, the
time-dependent ones computed at scrape time; a taken port is a one-line error."""

from __future__ import annotations

import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from pipelines.errors import TradelakeError
from pipelines.metrics import RunMetrics

JOBS, CUSTOMERS, GPS = "marketplace.jobs", "cdc.public.customers", "fleet.gps"
PRICE_BANDS, RECONCILIATION = "pricing.price_bands", "finance.payment_reconciliation"

# The families a runner exports (parser names: counters without their _total suffix).
FAMILIES = {
    "tradelake_lag_records": "gauge",
    "tradelake_records_consumed": "counter",
    "tradelake_records": "counter",
    "tradelake_batch_commit_seconds": "histogram",
    "tradelake_last_commit_timestamp_seconds": "gauge",
    "tradelake_dbt_build_seconds": "histogram",
    "tradelake_dbt_build_failures": "counter",
    "tradelake_dbt_last_success_timestamp_seconds": "gauge",
    "tradelake_mart_age_seconds": "gauge",
}


class Clock:
    """Unix seconds that move only when the test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def scrape(url: str) -> dict[str, Metric]:
    """GET ``/metrics`` and parse it with prometheus-client's parser, by family name."""
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return {f.name: f for f in text_string_to_metric_families(response.read().decode())}


def series(families: dict[str, Metric], family: str, sample: str | None = None) -> dict[frozenset, float]:
    """A family's samples named ``sample`` (default: the family's name), by their labels."""
    return {frozenset(s.labels.items()): s.value for s in families[family].samples if s.name == (sample or family)}


def value(families: dict[str, Metric], family: str, sample: str | None = None, **labels: str) -> float:
    return series(families, family, sample)[frozenset(labels.items())]


def labelled(**labels: str) -> frozenset:
    return frozenset(labels.items())


def test_scrape_shows_every_metric_with_its_labels_and_values() -> None:
    clock = Clock(1000.0)
    metrics = RunMetrics(topics=[JOBS, CUSTOMERS, GPS], clock=clock)
    metrics.batch_committed(
        {JOBS: {"records": 10, "landed": 8, "quarantined": 2}, CUSTOMERS: {"records": 5, "landed": 3, "tombstones": 2}},
        seconds=0.02,
    )
    clock.now = 1010.0
    metrics.batch_committed({JOBS: {"records": 4, "landed": 4, "quarantined": 0, "tombstones": 0}}, seconds=0.3)
    metrics.set_lag({(JOBS, 0): 7, (JOBS, 1): 0, (CUSTOMERS, 0): 3})
    clock.now = 1020.0
    metrics.build_finished(4.0, ok=True, marts=[PRICE_BANDS, RECONCILIATION])
    clock.now = 1050.0
    metrics.build_finished(2.0, ok=False, marts=[PRICE_BANDS])  # refreshed one mart, then a test failed
    clock.now = 1060.0

    with metrics.serve(0) as server:
        assert server.url == f"http://127.0.0.1:{server.port}/metrics"
        got = scrape(server.url)
        assert {f: got[f].type for f in FAMILIES} == FAMILIES
        assert {f for f in got if not f.endswith("_created")} == set(FAMILIES)

        assert series(got, "tradelake_lag_records") == {
            labelled(topic=JOBS, partition="0"): 7,
            labelled(topic=JOBS, partition="1"): 0,
            labelled(topic=CUSTOMERS, partition="0"): 3,
        }

        consumed = "tradelake_records_consumed_total"
        assert value(got, "tradelake_records_consumed", consumed, topic=JOBS) == 14
        assert value(got, "tradelake_records_consumed", consumed, topic=CUSTOMERS) == 5
        assert value(got, "tradelake_records_consumed", consumed, topic=GPS) == 0  # declared, nothing yet
        expected = {
            (JOBS, "landed"): 12,
            (JOBS, "quarantined"): 2,
            (JOBS, "tombstone"): 0,
            (CUSTOMERS, "landed"): 3,
            (CUSTOMERS, "quarantined"): 0,
            (CUSTOMERS, "tombstone"): 2,
            (GPS, "landed"): 0,
            (GPS, "quarantined"): 0,
            (GPS, "tombstone"): 0,
        }
        records = series(got, "tradelake_records", "tradelake_records_total")
        assert records == {labelled(topic=t, outcome=o): n for (t, o), n in expected.items()}

        commit = "tradelake_batch_commit_seconds"
        assert value(got, commit, f"{commit}_count") == 2
        assert value(got, commit, f"{commit}_sum") == pytest.approx(0.32)
        assert value(got, commit, f"{commit}_bucket", le="0.005") == 0
        assert value(got, commit, f"{commit}_bucket", le="0.025") == 1
        assert value(got, commit, f"{commit}_bucket", le="0.25") == 1
        assert value(got, commit, f"{commit}_bucket", le="0.35") == 2
        assert value(got, commit, f"{commit}_bucket", le="5.0") == 2
        assert value(got, commit, f"{commit}_bucket", le="+Inf") == 2
        assert value(got, "tradelake_last_commit_timestamp_seconds") == 1010.0

        build = "tradelake_dbt_build_seconds"
        assert value(got, build, f"{build}_count") == 2
        assert value(got, build, f"{build}_sum") == 6.0
        assert value(got, build, f"{build}_bucket", le="1.0") == 0
        assert value(got, build, f"{build}_bucket", le="2.5") == 1
        assert value(got, build, f"{build}_bucket", le="5.0") == 2
        assert value(got, "tradelake_dbt_build_failures", "tradelake_dbt_build_failures_total") == 1
        assert value(got, "tradelake_dbt_last_success_timestamp_seconds") == 1020.0  # not the failed build

        # From the start of the build that last refreshed each mart, as of the scrape.
        assert value(got, "tradelake_mart_age_seconds", mart=PRICE_BANDS) == 1060 - 1048
        assert value(got, "tradelake_mart_age_seconds", mart=RECONCILIATION) == 1060 - 1016
        clock.now = 1075.0
        later = scrape(server.url)
        assert value(later, "tradelake_mart_age_seconds", mart=PRICE_BANDS) == 1075 - 1048
        assert value(later, "tradelake_mart_age_seconds", mart=RECONCILIATION) == 1075 - 1016

        # The producer stopped and landing caught up: a new reading replaces the old one whole.
        metrics.set_lag({(JOBS, 0): 0, (CUSTOMERS, 0): -1})  # a watermark read just before a commit
        caught_up = scrape(server.url)
        assert series(caught_up, "tradelake_lag_records") == {
            labelled(topic=JOBS, partition="0"): 0,
            labelled(topic=CUSTOMERS, partition="0"): 0,
        }


def test_nothing_reported_yet_exports_the_families_without_made_up_values() -> None:
    metrics = RunMetrics()
    with metrics.serve(0) as server:
        got = scrape(server.url)
    assert {f for f in got if not f.endswith("_created")} == set(FAMILIES)
    for family in (
        "tradelake_lag_records",
        "tradelake_last_commit_timestamp_seconds",
        "tradelake_dbt_last_success_timestamp_seconds",
        "tradelake_mart_age_seconds",
    ):
        assert series(got, family) == {}, family  # no 0 that would read as "committed in 1970"
    assert value(got, "tradelake_dbt_build_failures", "tradelake_dbt_build_failures_total") == 0


def test_two_runners_in_one_process_keep_their_own_numbers() -> None:
    a, b = RunMetrics(topics=[JOBS]), RunMetrics(topics=[JOBS])
    a.batch_committed({JOBS: {"records": 3, "landed": 3}}, seconds=0.01)
    with a.serve(0) as sa, b.serve(0) as sb:
        assert value(scrape(sa.url), "tradelake_records_consumed", "tradelake_records_consumed_total", topic=JOBS) == 3
        assert value(scrape(sb.url), "tradelake_records_consumed", "tradelake_records_consumed_total", topic=JOBS) == 0


def test_a_misspelt_count_is_refused() -> None:
    with pytest.raises(ValueError, match="tombstone"):
        RunMetrics().batch_committed({JOBS: {"records": 1, "tombstone": 1}}, seconds=0.01)


def test_a_taken_port_is_a_one_line_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TradelakeError) as e:
            RunMetrics().serve(port)
    assert str(e.value) == f"cannot serve metrics on 127.0.0.1:{port}: Address already in use"


def test_close_stops_serving_and_frees_the_port() -> None:
    metrics = RunMetrics()
    server = metrics.serve(0)
    port = server.port
    scrape(server.url)
    server.close()
    assert not server.thread.is_alive()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(server.url, timeout=5)
    with metrics.serve(port) as again:
        assert "tradelake_mart_age_seconds" in scrape(again.url)
