"""kill -9 at random moments while traffic flows; after restarts the lake is exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from tests.conftest import TEST_PII_KEY, run_cli
from tests.e2e.lake_checks import assert_exactly_once, has_table, open_table, read_table


def _start_follow(lake) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRADELAKE_"))}
    env |= {
        "TRADELAKE_HOME": str(lake.home),
        "KAFKA_BOOTSTRAP_SERVERS": lake.bootstrap_servers,
        "TRADELAKE_PII_KEY": TEST_PII_KEY,
    }
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ingest", "--follow", "--batch-size", "3000", "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_until_it_took_partitions(lake, lander: subprocess.Popen, timeout: float = 60) -> None:
    """Until ``_owners`` records the lander's take of its partitions."""
    deadline = time.monotonic() + timeout
    while True:
        if lander.poll() is not None:
            raise AssertionError(lander.stderr.read().decode())
        owners = open_table(lake, "_owners").to_pyarrow_table(columns=["owner"]) if has_table(lake, "_owners") else None
        if owners is not None and any(o.endswith(f":{lander.pid}") for o in owners["owner"].to_pylist()):
            return
        assert time.monotonic() < deadline, "the lander took no partition"
        time.sleep(0.2)


def test_sigkill_during_landing_loses_nothing_and_duplicates_nothing(lake):
    rng = random.Random(20261123)
    producer = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "simulate",
            "--events",
            "80000",
            "--seed",
            "5",
            "-q",
            "--bootstrap-servers",
            lake.bootstrap_servers,
            "--home",
            str(lake.home),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    kills = 0
    try:
        for _ in range(5):
            lander = _start_follow(lake)
            _wait_until_it_took_partitions(lake, lander)  # start-up and the group join: ~4 s, more on a busy machine
            time.sleep(rng.uniform(0.5, 3.0))  # then a kill at a random moment of landing
            if lander.poll() is not None:
                raise AssertionError(lander.stderr.read().decode())
            lander.send_signal(signal.SIGKILL)
            lander.wait()
            kills += 1
    finally:
        assert producer.wait(timeout=300) == 0, producer.stderr.read().decode()
    assert kills == 5
    assert len(read_table(lake, "_batches", ["batch_id"])) > 0, "the killed runs committed batches"

    result = run_cli("ingest", "--once", settings=lake)
    assert result.returncode == 0, result.stderr
    assert_exactly_once(lake)


def test_sigterm_stops_follow_cleanly(lake):
    lander = _start_follow(lake)
    time.sleep(2)
    lander.send_signal(signal.SIGTERM)
    assert lander.wait(timeout=30) == 0
