"""``tradelake ui`` / ``make dagster``: the Dagster UI for one lake, on 127.0.0.1.

Runs ``dagster dev`` on the code location ``pipelines.definitions`` (named ``tradelake``, as
pyproject.toml's ``[tool.dg.project]`` does) with ``DAGSTER_HOME=$TRADELAKE_HOME/dagster`` (the
repository's ``dagster.yaml`` is copied there on every start, so the instance's runs, event
log and schedules live beside the lake, never in the repository) and the lake's
configuration in its environment: dbt's variables for the lake
(``pipelines.build.dbt_environment``: ``TRADELAKE_HOME`` absolute, the lake's URL, the
warehouse dbt writes …), which the Dagster dbt step hands on to dbt, and the broker and
properties file when given. Ctrl-C or SIGTERM stops it cleanly: ``dagster dev`` is asked to
shut its webserver, daemon and code server down (SIGINT), then, if it has not within
``STOP_TIMEOUT`` seconds, its process group is terminated.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from pipelines.broker import port_open
from pipelines.build import dbt_environment
from pipelines.errors import TradelakeError
from pipelines.settings import Settings, env_number

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_CONFIG = REPO_ROOT / "dagster.yaml"
# The code location as [tool.dg.project] in pyproject.toml declares it (module, name), so that the
# UI names it as `dagster dev` and `dg` run from the repository root do.
CODE_LOCATION = "pipelines.definitions"
LOCATION_NAME = "tradelake"
WORKSPACE_FILE = "workspace.yaml"
DEFAULT_PORT = 3000
STOP_TIMEOUT = 30.0


def dagster_home(settings: Settings) -> Path:
    return settings.home / "dagster"


def prepare_dagster_home(settings: Settings) -> Path:
    """Create ``$TRADELAKE_HOME/dagster`` with the repository's instance configuration and a
    workspace naming the code location (``dagster dev -m`` would name it after its module)."""
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    if INSTANCE_CONFIG.exists():
        shutil.copyfile(INSTANCE_CONFIG, home / "dagster.yaml")
    (home / WORKSPACE_FILE).write_text(
        "# Written by tradelake ui on every start (pipelines/ui.py).\n"
        "load_from:\n"
        "  - python_module:\n"
        f"      module_name: {CODE_LOCATION}\n"
        f"      location_name: {LOCATION_NAME}\n"
        f"      working_directory: {json.dumps(str(REPO_ROOT))}\n"
    )
    return home


def ui_environment(settings: Settings, kafka_config: str | None = None) -> dict[str, str]:
    """The environment of Dagster's processes (``dagster dev``, ``pipelines.materialize``): the
    lake's configuration, resolved once, here."""
    env = dict(os.environ) | dbt_environment(settings)
    env["DAGSTER_HOME"] = str(dagster_home(settings))
    if settings.bootstrap_servers:
        env["KAFKA_BOOTSTRAP_SERVERS"] = settings.bootstrap_servers
    if kafka_config:
        env["TRADELAKE_KAFKA_CONFIG"] = str(Path(kafka_config).expanduser().resolve())
    # `dagster dev` warns that `dg dev` supersedes it; `dg` (dagster-dg-cli) is a development
    # tool here, not a dependency of running the UI, so `dagster dev` it is, on purpose.
    quiet = "ignore:Function `dev_command` is superseded"
    env["PYTHONWARNINGS"] = ",".join(w for w in (env.get("PYTHONWARNINGS"), quiet) if w)
    return env


def check_location_environment(env: Mapping[str, str]) -> None:
    """Fail in one line on a variable the code location reads when it loads
    (``pipelines.definitions``): started with a bad one, Dagster would show a broken location
    (a ComponentTreeException in the UI), not an error line."""
    import dagster as dg

    from pipelines.defs.automation.freshness import mart_freshness_policy
    from pipelines.defs.automation.sensors import DEFAULT_SENSOR_INTERVAL, INTERVAL_VARIABLE
    from pipelines.defs.maintenance.schedules import CRON_VARIABLE, maintenance_schedule

    env_number(env, INTERVAL_VARIABLE, DEFAULT_SENSOR_INTERVAL, minimum=1)
    mart_freshness_policy(env)
    if cron := env.get(CRON_VARIABLE):
        try:
            maintenance_schedule(cron)
        except dg.DagsterInvalidDefinitionError:
            raise TradelakeError(f"{CRON_VARIABLE}={cron!r}: not a cron expression of 5 fields (UTC)") from None


def dagster_dev_command(home: Path, host: str, port: int) -> list[str]:
    workspace = str(home / WORKSPACE_FILE)
    return [sys.executable, "-m", "dagster", "dev", "-w", workspace, "--host", host, "--port", str(port)]


def _stop(process: subprocess.Popen[bytes]) -> int:
    """Ask ``dagster dev`` to shut down like Ctrl-C does; terminate its group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                _signal_group(process.pid, signal.SIGKILL)
                process.wait()
    # Anything of its session still alive (a webserver or daemon it could not stop) goes too.
    _signal_group(process.pid, signal.SIGKILL)
    return process.returncode


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def run_ui(
    settings: Settings,
    port: int = DEFAULT_PORT,
    host: str = "127.0.0.1",
    kafka_config: str | None = None,
    announce: Callable[[str], None] = print,
) -> int:
    """Run the Dagster UI in the foreground until Ctrl-C / SIGTERM; return the exit status."""
    if not 1 <= port <= 65535:
        raise TradelakeError(f"--port {port}: not a TCP port (1..65535)")
    try:
        socket.getaddrinfo(host, port)
    except socket.gaierror as e:  # dagster dev would start and serve nothing
        raise TradelakeError(f"--host {host!r}: {e.strerror}") from None
    if port_open(host, port):
        raise TradelakeError(f"port {port} on {host} is already in use (choose another with --port)")
    environment = ui_environment(settings, kafka_config)
    check_location_environment(environment)
    home = prepare_dagster_home(settings)
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # Installed before the child starts: a handled signal is reset to its default in the child,
    # whereas an ignored one stays ignored (as SIGINT is in a shell's background job), and
    # dagster dev would then ignore the SIGINT we stop it with.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        process = subprocess.Popen(
            dagster_dev_command(home, host, port),
            env=environment,
            cwd=home,  # dagster dev warns about a dagster.yaml in its working directory that is not DAGSTER_HOME's
            start_new_session=True,  # a terminal's Ctrl-C reaches us only; we stop it in order
        )
    except BaseException:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        raise
    announced = False
    try:
        while process.poll() is None and not stop.wait(0.25):
            if not announced and port_open(host, port):
                announced = True
                announce(f"Dagster UI for {settings.home}: http://{host}:{port}  (Ctrl-C to stop)")
    finally:
        returncode = _stop(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop.is_set():
        return 0
    raise TradelakeError(f"dagster dev exited with status {returncode}; see its log above")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipelines.ui", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--home", help="lake directory (env TRADELAKE_HOME, default ./.tradelake)")
    parser.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    parser.add_argument("--kafka-config", help="librdkafka properties file")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(
            home=args.home, bootstrap_servers=args.bootstrap_servers, kafka_config=args.kafka_config
        )
        return run_ui(settings, port=args.port, host=args.host, kafka_config=args.kafka_config)
    except TradelakeError as e:
        print(f"tradelake: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
