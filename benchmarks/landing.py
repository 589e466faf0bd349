"""Landing benchmark: N simulated events on the embedded broker, then, each in its own process:

(a) consume-only — a bare confluent-kafka loop touching every record's key and value, with
    the same fetch settings as landing;
(b) landing — ``tradelake ingest --once`` with the contracts (routing, Delta Lake commits);
(c) landing with contract rules off — suites reduced to their type-list expectations, so the
    difference to (b) is what the rules cost.
Prints events/s, the ratio b/a, the time landing spent committing per batch (Delta commits of
every table a batch touches) and each process's peak RSS (from wait4, per child).

    .venv/bin/python benchmarks/landing.py --events 2000000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines import kafka
from pipelines.broker import EmbeddedBroker
from pipelines.catalog import TOPIC_NAMES
from pipelines.contracts.suites import TYPE_LIST, default_contracts_dir
from pipelines.settings import Settings
from pipelines.watermarks import high_watermarks

CONSUME_ONLY = """
import sys, time
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pipelines.catalog import TOPIC_NAMES
from pipelines.kafka import FETCH_TUNING
bs, total = sys.argv[1], int(sys.argv[2])
md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics
c = Consumer({"bootstrap.servers": bs, "group.id": "bench", "enable.auto.commit": False, **FETCH_TUNING})
c.assign([TopicPartition(t, p, 0) for t in TOPIC_NAMES for p in md[t].partitions])
n, size, start = 0, 0, time.monotonic()
while n < total:
    for m in c.consume(10000, timeout=1):
        if m.error() is None:
            n += 1
            v = m.value()
            size += len(v) if v else 0
            m.key(); m.offset(); m.partition(); m.topic(); m.timestamp()
print(n, time.monotonic() - start)
"""


def run(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a child; return (seconds, its own peak RSS in MiB, stdout)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.monotonic()
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's rusage, not all children's
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status):
            sys.exit(f"{' '.join(cmd[:4])} failed: {err.read()[-2000:]}")
        return seconds, usage.ru_maxrss / 1024, out.read()


def rules_off(target: Path) -> Path:
    """A copy of the contracts keeping only what defines columns (type lists)."""
    for src in default_contracts_dir().glob("*/*.json"):
        suite = json.loads(src.read_text())
        suite["expectations"] = [e for e in suite["expectations"] if e["type"] == TYPE_LIST]
        dst = target / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(json.dumps(suite))
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=50_000, help="as `tradelake ingest --batch-size`")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (b) and (c), alternated; the median is shown")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tradelake-bench-"))
    py = sys.executable
    with EmbeddedBroker(work / "broker") as broker:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "TRADELAKE_PII_KEY": "benchmark-personal-data-key",
        }
        cli = [py, "-m", "pipelines.cli"]
        print(f"producing {args.events:,} events to {broker.bootstrap_servers} …", flush=True)
        t, _, _ = run([*cli, "simulate", "--events", str(args.events), "--seed", str(args.seed), "-q"], env)
        settings = Settings.load(env={}, bootstrap_servers=broker.bootstrap_servers)
        metadata = kafka.admin(settings).list_topics(timeout=10).topics
        produced = sum(
            high_watermarks(settings, [(t, p) for t in TOPIC_NAMES for p in metadata[t].partitions]).values()
        )
        print(f"  produced {produced:,} records in {t:.1f}s ({produced / t:,.0f}/s)", flush=True)
        results = []
        t, rss, out = run([py, "-c", CONSUME_ONLY, broker.bootstrap_servers, str(produced)], env)
        n, secs = out.split()
        results.append(("(a) consume only", int(n), [float(secs)], rss))
        runs: dict[str, tuple[int, list[float], float]] = {}
        commit_ms: dict[str, list[float]] = {}
        for attempt in range(args.repeat):
            for label, extra in (
                ("(b) landing, contracts on", {}),
                ("(c) landing, rules off", {"TRADELAKE_CONTRACTS": str(rules_off(work / "rules-off"))}),
            ):
                home = work / f"{label[1]}{attempt}"
                t, rss, out = run(
                    [*cli, "ingest", "--once", "-q", "--batch-size", str(args.batch_size)],
                    {**env, **extra, "TRADELAKE_HOME": str(home)},
                )
                shutil.rmtree(home, ignore_errors=True)
                records = int(out.split()[1].replace(",", ""))  # "landed N records in …"
                commit_ms.setdefault(label, []).append(
                    float(re.search(r"took ([\d,.]+) ms per batch", out)[1].replace(",", ""))
                )
                _, times, peak = runs.get(label, (records, [], 0.0))
                runs[label] = (records, [*times, t], max(peak, rss))
        results.extend((label, n, times, rss) for label, (n, times, rss) in runs.items())
    shutil.rmtree(work, ignore_errors=True)
    print(f"\n{'run':<28}{'records':>12}{'seconds':>10}{'events/s':>12}{'peak RSS MiB':>14}  (median of runs; range)")
    rates = []
    for label, n, times, rss in results:
        secs = statistics.median(times)
        rates.append(n / secs)
        spread = f"  {n / max(times):,.0f}–{n / min(times):,.0f}/s" if len(times) > 1 else ""
        print(f"{label:<28}{n:>12,}{secs:>10.1f}{n / secs:>12,.0f}{rss:>14,.0f}{spread}")
    a, b, c = rates
    print(f"\nlanding/consume ratio b/a = {b / a:.2f}; contract rules cost {100 * (1 - b / c):.0f}% of rules-off rate")
    for label, values in commit_ms.items():
        print(f"{label}: committing took {statistics.median(values):,.0f} ms per batch (median of runs)")


if __name__ == "__main__":
    main()
