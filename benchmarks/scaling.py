"""Scaling benchmark: one backlog landed by 1, 2 and 3 ``ingest --follow`` processes of one group.

A backlog of N simulated events on the embedded broker; then, for each process count k, a new
lake and k followers sharing it (cooperative-sticky assignment, ownership epochs). Measured:
the time from start until the lake has committed every partition up to its high watermark
(polled from ``_batches``, the commit point), the landing rate after the first commit (the
group's first join takes ~3 s on Tansu and is not landing), each process's commit latency per
batch (the Delta commits of every table a batch touches, as the process reports it: this is
where concurrent writers to one table would show) and each process's peak RSS (wait4, per child).
The ratio to k = 1 is the figure to read: on a 2-core machine the total should not collapse.

    .venv/bin/python benchmarks/scaling.py --events 300000 --processes 1,2,3
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.catalog import TOPIC_NAMES
from pipelines.lake.location import LakeLocation
from pipelines.lake.maintain import lake_tables, live_files
from pipelines.lake.schemas import BATCHES_TABLE
from pipelines.lake.tables import Lake
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks


def lake_bytes(lake: Lake) -> int:
    """Bytes of the live data files of every table (what a day's sizing multiplies)."""
    total = 0
    for name in lake_tables():
        dt = lake.table(name)
        if dt is not None:
            total += sum(sum(sizes) for sizes in live_files(dt).values())
    return total


def landed_records(lake: Lake) -> int:
    """Records the lake has committed (the sum of ``_batches.records``)."""
    table = lake.read(BATCHES_TABLE, ["records"])
    return 0 if table is None else sum(table["records"].to_pylist())


def land_with(k: int, env: dict[str, str], home: Path, total: int, batch_size: int) -> dict[str, Any]:
    """Start k followers on a new lake, wait until they have landed ``total`` records, stop them."""
    env = {**env, "TRADELAKE_HOME": str(home)}
    cmd = [sys.executable, "-m", "pipelines.cli", "ingest", "--follow", "-q", "--batch-size", str(batch_size)]
    with contextlib.ExitStack() as files:
        outs = [files.enter_context(tempfile.TemporaryFile("w+")) for _ in range(k)]
        return _measure(k, cmd, env, outs, Lake(LakeLocation(str(home / "lake"))), total)


def _measure(k: int, cmd: list[str], env: dict[str, str], outs: list, lake: Lake, total: int) -> dict[str, Any]:
    start = time.monotonic()
    procs = [subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, text=True) for out in outs]
    first_commit = None
    landed = 0
    while landed < total:
        time.sleep(0.5)
        if any(p.poll() is not None for p in procs):
            outs[0].seek(0)
            sys.exit(f"a follower exited early: {outs[0].read()[-2000:]}")
        landed = landed_records(lake) if lake.exists(BATCHES_TABLE) else 0
        if landed and first_commit is None:
            first_commit = time.monotonic()
        print(f"  k={k}: {landed:,}/{total:,} landed, {time.monotonic() - start:.0f}s", flush=True)
    done = time.monotonic()
    for p in procs:
        p.send_signal(signal.SIGTERM)
    peaks, commit_ms = [], []
    for p, out in zip(procs, outs, strict=True):
        _, status, usage = os.wait4(p.pid, 0)
        peaks.append(usage.ru_maxrss / 1024)
        out.seek(0)
        text = out.read()
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"a follower failed: {text[-2000:]}")
        found = re.search(r"took ([\d,.]+) ms per batch", text)
        if found and "in 0 batch(es)" not in text:
            commit_ms.append(float(found[1].replace(",", "")))
    after_join = done - (first_commit or start)
    counts = lake.read(BATCHES_TABLE, ["topic", "records"]).group_by("topic").aggregate([("records", "sum")])
    largest = max(counts.to_pylist(), key=lambda r: r["records_sum"])
    return {
        "largest_topic": f"{largest['topic']} {100 * largest['records_sum'] / total:.0f}%",
        "bytes_per_record": lake_bytes(lake) / total,
        "seconds": done - start,
        "rate": total / after_join,
        "commit_ms": statistics.median(commit_ms) if commit_ms else float("nan"),
        "peak_rss": max(peaks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=50_000)
    parser.add_argument("--processes", default="1,2,3", help="process counts to run, comma-separated")
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="tradelake-scaling-"))
    try:
        with EmbeddedBroker(work / "broker") as broker:
            env = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "TRADELAKE_PII_KEY": "benchmark-personal-data-key",
                "TRADELAKE_CONSUMER_GROUP": "tradelake-scaling-bench",
            }
            env.pop("TRADELAKE_LAKE_URL", None)
            print(f"producing {args.events:,} events …", flush=True)
            simulate = [sys.executable, "-m", "pipelines.cli", "simulate", "-q", "--events", str(args.events)]
            subprocess.run([*simulate, "--seed", str(args.seed)], env=env, check=True)
            settings = Settings.load(env={}, bootstrap_servers=broker.bootstrap_servers)
            metadata = kafka.admin(settings).list_topics(timeout=10).topics
            partitions = [(t, p) for t in TOPIC_NAMES for p in metadata[t].partitions]
            total = sum(high_watermarks(settings, partitions).values())
            print(f"  {total:,} records in {len(partitions)} partitions", flush=True)
            results = {}
            for k in counts:
                # Each run its own consumer group too: a group's committed offsets are not used
                # (the lake decides), but a fresh group joins without the last run's members.
                run_env = {**env, "TRADELAKE_CONSUMER_GROUP": f"tradelake-scaling-bench-{k}"}
                results[k] = land_with(k, run_env, work / f"home-{k}", total, args.batch_size)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = results[counts[0]]["rate"]
    columns = ("processes", 9), ("seconds", 10), ("events/s", 12), ("vs first", 10), ("commit ms/batch", 17)
    print("\n" + "".join(f"{name:>{width}}" for name, width in columns) + f"{'peak RSS MiB':>14}")
    for k, r in results.items():
        print(
            f"{k:>9}{r['seconds']:>10.1f}{r['rate']:>12,.0f}{r['rate'] / base:>10.2f}"
            f"{r['commit_ms']:>17,.0f}{r['peak_rss']:>14,.0f}"
        )
    print("(events/s: records / time from the first commit to the last; commit ms: median over processes)")
    first = results[counts[0]]
    print(f"lake: {first['bytes_per_record']:,.0f} bytes per record in Parquet (zstd), before compaction")
    print(f"largest topic: {first['largest_topic']} of the records")


if __name__ == "__main__":
    main()
