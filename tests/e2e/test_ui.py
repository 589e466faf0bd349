"""`tradelake ui`: dagster dev on 127.0.0.1, the asset graph in a real (headless) browser, clean stop."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.broker import free_port, port_open
from pipelines.ui import LOCATION_NAME

pytestmark = pytest.mark.e2e

GROUPS = ["landing", "staging", "dimensions", "pricing", "rankings", "finance", "audit", "operations"]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--window-size=1600,1000",
    "--virtual-time-budget=20000",
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail("Chromium is required for the UI test: apt-get install -y chromium (Debian's package)")
    return found


def graphql(port: int, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for_asset_groups(port: int, process: subprocess.Popen, timeout: float = 180) -> set[str]:
    """Until the webserver answers and the code location has loaded its assets."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "tradelake ui exited early"
        try:
            nodes = graphql(port, "{ assetNodes { groupName } }")["data"]["assetNodes"]
            if nodes:
                return {n["groupName"] for n in nodes}
        except (OSError, KeyError, TypeError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"the Dagster UI did not list assets within {timeout:.0f}s")


def browse(url: str, tmp_path: Path, action: list[str], name: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / ('chromium-' + name)}", *action, url],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_ui_lists_the_asset_groups_and_stops_cleanly(tmp_path: Path):
    port = free_port()
    home = tmp_path / "lake"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRADELAKE_", "KAFKA_", "DAGSTER_"))}
    log = open(tmp_path / "ui.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.ui", "--port", str(port), "--home", str(home)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        groups = wait_for_asset_groups(port, process)
        assert set(GROUPS) <= groups
        workspace = graphql(port, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        locations = [entry["name"] for entry in workspace["data"]["workspaceOrError"]["locationEntries"]]
        assert locations == [LOCATION_NAME], "named as in pyproject.toml's [tool.dg.project]"

        url = f"http://127.0.0.1:{port}/asset-groups"
        page = browse(url, tmp_path, ["--dump-dom"], "dom")
        assert page.returncode == 0, page.stderr[-2000:]
        (tmp_path / "asset-graph.html").write_text(page.stdout)
        for group in GROUPS:
            assert f">{group}<" in page.stdout, f"group {group} not listed on the asset graph page"

        shot = tmp_path / "asset-graph.png"
        done = browse(url, tmp_path, [f"--screenshot={shot}"], "screenshot")
        assert done.returncode == 0, done.stderr[-2000:]
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
        assert (home / "dagster" / "dagster.yaml").exists(), "the instance lives under $TRADELAKE_HOME/dagster"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
            log.close()
    assert returncode == 0, (tmp_path / "ui.log").read_text()[-3000:]
    assert not port_open("127.0.0.1", port), "the webserver stopped with it"
    assert "Dagster services shut down" in (tmp_path / "ui.log").read_text()
