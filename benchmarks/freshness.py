"""Freshness benchmark: how long from producing an event to seeing it in a mart, in continuous mode.

On the embedded broker, in whole processes as a user runs them: ``tradelake simulate --follow``
produces background traffic (``--rate``, default 1,000 events/s) and ``tradelake run`` lands
and rebuilds continuously. Once the first build is published, a canary ``job.posted`` is
produced every ``--every`` seconds, each in a week of its own (in 2001, which no simulated job
uses), and the published warehouse is polled (a read-only connection per poll, as a notebook
holds it) until ``pricing.price_bands`` counts the canary's job. Prints p50/p95/max of the
produce → mart latency and the runner's peak RSS.

    .venv/bin/python benchmarks/freshness.py --canaries 20
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.settings import Settings

FIRST_WEEK = date(2001, 1, 1)  # a Monday
POLL_SECONDS = 0.25


def canary(i: int) -> tuple[bytes, bytes, date]:
    week = FIRST_WEEK + timedelta(weeks=i)
    job_id = f"canary_{i:04d}_{uuid.uuid4().hex[:8]}"
    value = {
        "event_id": str(uuid.uuid4()),
        "event_type": "job.posted",
        "event_time": f"{week.isoformat()}T12:00:00.000Z",
        "schema_version": 1,
        "producer": "freshness-benchmark/1",
        "job_id": job_id,
        "customer_id": "cus_canary",
        "trade": "electrician",
        "region": "nyc",
        "urgency": "standard",
        "budget_cents": 10_000,
        "currency": "USD",
        "site_lat": 40.7,
        "site_lon": -74.0,
    }
    return job_id.encode(), json.dumps(value).encode(), week


def visible(warehouse: Path, week: date) -> bool:
    if not warehouse.exists():
        return False
    try:
        with duckdb.connect(str(warehouse), read_only=True) as con:
            found = con.execute(
                "select coalesce(sum(jobs_posted), 0) from pricing.price_bands where week_start = ?", [week]
            ).fetchone()
    except duckdb.Error:  # not built yet
        return False
    return bool(found and found[0] > 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=1000.0, help="background events per second")
    parser.add_argument("--canaries", type=int, default=20)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between canaries")
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for one canary")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tradelake-freshness-"))
    home = work / "home"
    cli = [sys.executable, "-m", "pipelines.cli"]
    with EmbeddedBroker(work / "broker") as broker:
        env = {**os.environ, "TRADELAKE_HOME": str(home), "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
        env["TRADELAKE_PII_KEY"] = "freshness-benchmark-key-0123456789"
        settings = Settings.load(env=env)
        kafka.ensure_topics(settings)
        logs = {name: open(work / f"{name}.log", "w") for name in ("simulate", "run")}  # noqa: SIM115
        sim = subprocess.Popen(
            [*cli, "simulate", "--follow", "--rate", str(args.rate), "-q"],
            env=env,
            stdout=logs["simulate"],
            stderr=subprocess.STDOUT,
        )
        runner = subprocess.Popen([*cli, "run"], env=env, stdout=logs["run"], stderr=subprocess.STDOUT)
        latencies: list[float] = []
        try:
            warehouse = home / "warehouse.duckdb"
            started = time.monotonic()
            while not warehouse.exists():
                if runner.poll() is not None or time.monotonic() - started > args.timeout:
                    sys.exit(f"the runner built nothing; see {work / 'run.log'}")
                time.sleep(0.5)
            print(
                f"first build published after {time.monotonic() - started:.1f}s; {args.canaries} canaries …", flush=True
            )
            producer = kafka.producer(settings)
            for i in range(args.canaries):
                key, value, week = canary(i)
                producer.produce("marketplace.jobs", key=key, value=value)
                producer.flush(10)
                sent = time.monotonic()
                while not visible(warehouse, week):
                    if time.monotonic() - sent > args.timeout:
                        sys.exit(f"canary {i} not visible after {args.timeout:.0f}s; see {work / 'run.log'}")
                    time.sleep(POLL_SECONDS)
                latencies.append(time.monotonic() - sent)
                print(f"  canary {i + 1:>3}: {latencies[-1]:5.1f}s", flush=True)
                time.sleep(max(args.every - latencies[-1], 0.0))
        finally:
            for proc in (sim, runner):
                proc.send_signal(signal.SIGTERM)
            _, _, usage = os.wait4(runner.pid, 0)
            sim.wait(timeout=60)
            for f in logs.values():
                f.close()
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, max(0, round(0.95 * len(ordered)) - 1))]
    print(
        f"\nproduce → mart (pricing.price_bands) over {len(ordered)} canaries, background {args.rate:,.0f} events/s: "
        f"p50 {statistics.median(ordered):.1f}s · p95 {p95:.1f}s · max {ordered[-1]:.1f}s; "
        f"runner peak RSS {usage.ru_maxrss / 1024:,.0f} MiB; measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    )
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
