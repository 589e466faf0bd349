"""Continuous mode through the real broker: ``tradelake run`` lands and rebuilds by itself, serves
``/metrics``, records its work in the Dagster instance, and never fails because a reader holds
the warehouse open; ``tradelake up`` starts and stops the whole live lakehouse cleanly."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipelines import kafka
from pipelines.broker import free_port, port_open
from pipelines.lake.schemas import PUBLISHED_TABLE
from pipelines.record import dagster_instance
from pipelines.settings import Settings
from pipelines.status import partition_status
from tests.conftest import TEST_PII_KEY, cli_env, run_cli
from tests.e2e.lake_checks import read_table

pytestmark = pytest.mark.e2e

METRICS = {
    "tradelake_lag_records",
    "tradelake_records_consumed",
    "tradelake_records",
    "tradelake_batch_commit_seconds",
    "tradelake_last_commit_timestamp_seconds",
    "tradelake_dbt_build_seconds",
    "tradelake_dbt_last_success_timestamp_seconds",
    "tradelake_mart_age_seconds",
}


# A reader process: opens the warehouse, answers a query, waits, answers it again on the same connection.
HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
query = "select sum(jobs_posted) from pricing.price_bands"
print(con.sql(query).fetchone()[0], flush=True)
sys.stdin.readline()
print(con.sql(query).fetchone()[0], flush=True)
"""


def _scrape(port: int) -> dict[str, list]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def _jobs_posted(warehouse: Path) -> int | None:
    """Jobs counted by the pricing mart, on a connection opened for this query only."""
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            return con.sql("select sum(jobs_posted) from pricing.price_bands").fetchone()[0]
    except duckdb.Error:
        return None


def _post_new_jobs(settings: Settings, n: int) -> None:
    """``n`` valid job.posted events with job ids no simulation uses."""
    producer = kafka.producer(settings)
    for i in range(n):
        job_id = f"job_live_{i:04d}"
        value = {
            "event_id": str(uuid.uuid4()),
            "event_type": "job.posted",
            "event_time": "2026-11-30T12:00:00.000Z",
            "schema_version": 1,
            "job_id": job_id,
            "customer_id": "cus_live",
            "trade": "plumber",
            "region": "chi",
            "urgency": "urgent",
            "budget_cents": None,
            "currency": "USD",
            "site_lat": 41.9,
            "site_lon": -87.6,
        }
        producer.produce("marketplace.jobs", key=job_id.encode(), value=json.dumps(value).encode())
    assert producer.flush(30) == 0


def _wait(condition, timeout: float, what: str, process: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process exited with {process.returncode}: {process.stderr.read()}")
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def test_run_lands_and_rebuilds_by_itself_with_metrics_dagster_history_and_an_open_reader(lake):
    port = free_port()
    env = cli_env(lake)
    cli = [sys.executable, "-m", "pipelines.cli"]
    runner = subprocess.Popen(
        [*cli, "run", "--metrics-port", str(port), "--flush-interval", "2", "--no-full-build"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    reader = None
    try:
        first = run_cli("simulate", "--events", "4000", "--seed", "1", "-q", settings=lake)
        assert first.returncode == 0, first.stderr
        warehouse = lake.home / "warehouse.duckdb"
        before = _wait(lambda: _jobs_posted(warehouse), 180, "a first build of the marts", runner)
        # An analyst's session (another process) holding the published warehouse open while the runner rebuilds.
        reader = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        held = int(reader.stdout.readline())
        _post_new_jobs(lake, 25)
        after = _wait(
            lambda: (n := _jobs_posted(warehouse)) and n > before and n, 180, "the new jobs in a mart", runner
        )
        assert after == before + 25, "no other command ran: the runner rebuilt the marts"
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert int(reader.stdout.readline()) == held == before, "the open session keeps the build it opened"
        assert reader.wait(timeout=30) == 0

        def lag_gone() -> dict | None:
            samples = _scrape(port)
            lags = [s.value for s in samples.get("tradelake_lag_records", [])]
            return samples if lags and max(lags) == 0 else None

        samples = _wait(lag_gone, 60, "lag 0 once the producer stopped", runner)
        assert set(samples) >= METRICS, sorted(METRICS - set(samples))
        landed = sum(s.value for s in samples["tradelake_records"] if s.name == "tradelake_records_total")
        consumed = sum(s.value for s in samples["tradelake_records_consumed"] if s.name.endswith("_total"))
        assert landed == consumed > 0
        assert {s.labels["mart"] for s in samples["tradelake_mart_age_seconds"]} >= {"pricing.price_bands"}
        assert runner.poll() is None, "no build failed the runner"
    finally:
        if reader is not None and reader.poll() is None:
            reader.kill()
        runner.send_signal(signal.SIGTERM)
        rc = runner.wait(timeout=120)
    stderr = runner.stderr.read()
    assert rc == 0, stderr
    assert "build failed" not in stderr and "publish failed" not in stderr, stderr
    with dagster_instance(lake) as instance:
        published = instance.fetch_materializations(dg.AssetKey(["ops", "published_events"]), limit=1000).records
        jobs = instance.fetch_materializations(dg.AssetKey(["landing", "marketplace.jobs"]), limit=1000).records
        mart = instance.get_latest_materialization_event(dg.AssetKey(["pricing", "price_bands"]))
        checks = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(dg.AssetKey(["landing", "fleet.gps"]), "contract")
        )
    assert len(jobs) >= 2, "every batch that carried jobs is a materialization of the topic's asset"
    assert all("lag" in r.asset_materialization.metadata for r in jobs), "lag over time, plotted by the UI"
    assert mart is not None and checks is not None
    # every build is followed by a publish of the derived events, recorded as the asset's materialization
    assert len(published) >= 2 and sum(r.asset_materialization.metadata["events"].value for r in published) > 0
    assert len(read_table(lake, PUBLISHED_TABLE)) == sum(
        r.asset_materialization.metadata["events"].value + r.asset_materialization.metadata["recovered"].value
        for r in published
    ), "what the runner published is what the lake records"


def test_a_build_run_from_the_cli_shows_in_dagster(lake):
    assert run_cli("simulate", "--events", "2000", "-q", settings=lake).returncode == 0
    assert run_cli("ingest", "--once", settings=lake).returncode == 0
    result = run_cli("build", settings=lake)
    assert result.returncode == 0, result.stderr
    with dagster_instance(lake) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey(["finance", "payment_reconciliation"]))
        check = instance.get_latest_asset_check_evaluation_record(
            dg.AssetCheckKey(
                dg.AssetKey(["finance", "payment_reconciliation"]), "unique_payment_reconciliation_gateway_ref"
            )
        )
    assert (
        event is not None and event.asset_materialization.metadata["tradelake/recorded_by"].value == "tradelake build"
    )
    assert check is not None and check.event.dagster_event.event_specific_data.passed


def _ports_free(*ports: int) -> bool:
    for port in ports:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return False
    return True


def test_up_starts_the_live_lakehouse_and_stops_all_of_it(tmp_path):
    home = tmp_path / "home"
    ui, metrics = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRADELAKE_", "DAGSTER_"))}
    env |= {"TRADELAKE_HOME": str(home), "TRADELAKE_PII_KEY": TEST_PII_KEY}
    up = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "up",
            "--rate",
            "300",
            "--ui-port",
            str(ui),
            "--metrics-port",
            str(metrics),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        _wait(lambda: port_open("127.0.0.1", ui) and port_open("127.0.0.1", metrics), 120, "UI and metrics", up)

        def landed() -> bool:
            samples = _scrape(metrics)
            return sum(s.value for s in samples.get("tradelake_records_consumed", []) if s.name.endswith("_total")) > 0

        _wait(landed, 120, "records flowing into the lake", up)
        _wait(lambda: (home / "warehouse.duckdb").exists(), 180, "a build by the runner", up)
        with urllib.request.urlopen(f"http://127.0.0.1:{ui}/server_info", timeout=10) as response:
            assert response.status == 200
    finally:
        os.killpg(up.pid, signal.SIGINT)  # Ctrl-C in the terminal
        rc = up.wait(timeout=180)
    out, err = up.communicate()
    assert rc == 0, err
    assert "tradelake up: stopped" in out
    assert _ports_free(ui, metrics), "the UI and metrics ports are free again"
    children = subprocess.run(["pgrep", "-f", str(home)], capture_output=True, text=True).stdout.split()
    assert not children, f"processes of the lakehouse left running: {children}"


def test_the_lag_sensor_skips_with_its_reason_while_a_runner_owns_the_lake(lake):
    from pipelines.defs.automation.sensors import LAG_SENSOR
    from tests.e2e.test_dagster import code_location, lake_environment

    runner = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "run", "--no-full-build"],
        env=cli_env(lake),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        me = f"{socket.gethostname()}:{runner.pid}"
        _wait(
            lambda: (
                lake.lake.url
                and os.path.isdir(f"{lake.lake.url}/_owners")
                and {r.owner for r in partition_status(lake)} == {me}
            ),
            60,
            "the runner took every partition (status shows it as their owner)",
            runner,
        )
        with lake_environment(lake), dg.instance_for_test() as instance:
            defs = code_location()
            sensor = defs.resolve_sensor_def(LAG_SENSOR)
            runner.send_signal(signal.SIGSTOP)  # lag, held still for one tick: the sensor names its owner
            try:
                assert run_cli("simulate", "--events", "1500", "-q", settings=lake).returncode == 0
                tick = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
            finally:
                runner.send_signal(signal.SIGCONT)
            assert isinstance(tick, dg.SkipReason) and "owns landing" in tick.skip_message, tick
            assert "lag per partition (owner): " in tick.skip_message and f"({me})" in tick.skip_message, tick
            for _ in range(3):  # whatever the lag at the tick, while the runner lands: a skip, never a run
                tick = sensor(dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources))
                assert isinstance(tick, dg.SkipReason), tick
                assert "'tradelake run'" in tick.skip_message and "owns landing" in tick.skip_message
                time.sleep(1)
            assert not instance.get_run_records(), "no run was launched, so none failed"
    finally:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=120) == 0, runner.stderr.read()
    with lake_environment(lake), dg.instance_for_test() as instance:  # the runner stopped: the sensor may land again
        defs = code_location()
        tick = defs.resolve_sensor_def(LAG_SENSOR)(
            dg.build_sensor_context(instance=instance, definitions=defs, resources=defs.resources)
        )
        assert not (isinstance(tick, dg.SkipReason) and "owns landing" in (tick.skip_message or ""))
