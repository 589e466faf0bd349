"""``tradelake up``: the live local lakehouse in one command.

The embedded broker, the simulator streaming at a steady rate (``simulate --follow``), the
continuous runner (``run``: landing, rebuilds, ``/metrics``) and the Dagster UI, all on
127.0.0.1, until Ctrl-C or SIGTERM stops all of it. The children are separate processes in
sessions of their own, so a Ctrl-C in the terminal reaches only this process, which then
stops them in order — the producer first, then the runner (it finishes its batch and build),
then the UI — and the broker last.

The embedded broker keeps data in memory only, so a lake it fed earlier (``make demo``'s)
describes a stream that no longer exists: like the demo, ``up`` starts from an empty lake and
warehouse (the Dagster instance and its history are kept).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, replace

from pipelines import kafka
from pipelines.broker import EmbeddedBroker, port_open
from pipelines.demo import reset_lake
from pipelines.errors import TradelakeError
from pipelines.record import dagster_instance
from pipelines.settings import Settings
from pipelines.ui import check_location_environment

log = logging.getLogger("tradelake")

STOP_TIMEOUT = 60.0  # seconds a child may take to stop cleanly before it is killed


@dataclass
class UpOptions:
    rate: float = 200.0
    ui_port: int = 3000
    metrics_port: int = 9108
    broker_port: int | None = None
    seed: int = 42


def up(settings: Settings, options: UpOptions, stopped: threading.Event) -> None:
    """Run everything until ``stopped`` is set or a child fails; stop all of it either way."""
    for name, port in (("the Dagster UI", options.ui_port), ("/metrics", options.metrics_port)):
        if port_open("127.0.0.1", port):
            raise TradelakeError(f"port {port} for {name} on 127.0.0.1 is already in use")
    settings.personal_data_key()  # a short or broken key fails here in one line, not in the runner's log
    check_location_environment(os.environ)  # likewise the UI's code location's variables
    reset_lake(settings)
    with dagster_instance(settings):  # its storage is created once here, not raced by the runner and the UI
        pass
    with EmbeddedBroker(settings.home, port=options.broker_port) as broker:
        live = replace(settings, bootstrap_servers=broker.bootstrap_servers)
        kafka.ensure_topics(live)
        env = _child_environment(live)
        cli = [sys.executable, "-m", "pipelines.cli"]
        children: list[tuple[str, subprocess.Popen[bytes]]] = []
        try:
            for name, args in (
                ("simulator", ["simulate", "--follow", "--rate", str(options.rate), "--seed", str(options.seed), "-q"]),
                ("runner", ["run", "--metrics-port", str(options.metrics_port)]),
                ("Dagster UI", ["ui", "--port", str(options.ui_port)]),
            ):
                children.append((name, _start(cli + args, env, settings.home / f"up-{name.split()[-1].lower()}.log")))
            print(f"tradelake up: broker {broker.bootstrap_servers}, lake {settings.lake.url}", flush=True)
            print(f"  Dagster UI   http://127.0.0.1:{options.ui_port}  (assets refresh as the runner builds)")
            print(f"  metrics      http://127.0.0.1:{options.metrics_port}/metrics  (docs/grafana-dashboard.json)")
            print(f"  simulator    {options.rate:,.0f} events/s;  logs: {settings.home}/up-*.log")
            print("  notebooks    jupyter lab notebooks/  (they read the published warehouse)")
            print("  Ctrl-C stops everything.", flush=True)
            failed = _wait(children, stopped)
        finally:
            _stop_all(children)
    if failed:
        name, rc = failed
        raise TradelakeError(f"the {name} exited with status {rc}; see {settings.home}/up-*.log")


def _child_environment(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env |= {"TRADELAKE_HOME": str(settings.home), "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers or ""}
    if settings.lake is not None and not settings.lake.is_local:
        env["TRADELAKE_LAKE_URL"] = settings.lake.url
    if settings.pii_key:
        env["TRADELAKE_PII_KEY"] = settings.pii_key.decode()
    return env


def _start(args: list[str], env: dict[str, str], log_path: os.PathLike[str]) -> subprocess.Popen[bytes]:
    with open(log_path, "ab") as out:
        return subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _wait(children: list[tuple[str, subprocess.Popen[bytes]]], stopped: threading.Event) -> tuple[str, int] | None:
    """Until asked to stop (None) or a child exits by itself (its name and status)."""
    while not stopped.wait(0.5):
        for name, child in children:
            rc = child.poll()
            if rc is not None:
                return name, rc
    return None


def _stop_all(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM each child in start order and wait for it; kill one that does not stop in time."""
    for name, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                log.warning("the %s did not stop within %.0fs: killed", name, STOP_TIMEOUT)
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
