"""`tradelake broker` runs a real broker that the other commands find through the lake."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from pipelines.broker import REGISTRY_FILE, free_port, port_open
from tests.conftest import run_cli


def test_broker_command_is_found_by_other_commands_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRADELAKE_"))}
    env["TRADELAKE_HOME"] = str(tmp_path)
    broker = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "broker", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = broker.stdout.readline()  # printed once the topics exist
        assert f"listening on 127.0.0.1:{port}" in ready, ready + broker.stderr.read()
        assert (tmp_path / REGISTRY_FILE).exists()
        home_only = {"TRADELAKE_HOME": str(tmp_path)}  # no KAFKA_BOOTSTRAP_SERVERS
        produced = run_cli("simulate", "--events", "1000", env=home_only)
        assert produced.returncode == 0, produced.stderr
        landed = run_cli("ingest", "--once", env=home_only)
        assert landed.returncode == 0, landed.stderr
        assert f"landed {produced.stdout.split()[1]} records" in landed.stdout
    finally:
        broker.send_signal(signal.SIGTERM)
        assert broker.wait(timeout=20) == 0
    assert not (tmp_path / REGISTRY_FILE).exists() and not port_open("127.0.0.1", port)
