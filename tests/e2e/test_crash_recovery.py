"""kill -9 at random moments while traffic flows; after restarts the lake is exact."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from tests.conftest import TEST_PII_KEY, run_cli
from tests.e2e.lake_checks import assert_exactly_once, read_table


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
            time.sleep(rng.uniform(4.5, 7.0))  # start-up and the group join take ~4 s; kill at a random moment after
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
