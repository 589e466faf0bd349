"""Landing benchmark: N simulated events on the embedded broker, then, each in its own process:

(a) consume-only — a plain confluent-kafka consume loop touching every record's key and
    value, with landing's fetch settings: the pace of reading the backlog at all;
(b) landing — ``tradelake ingest --once`` with the contracts (fast path, routing query for
    the rest, PII masking, Delta Lake commits);
(d) dlt, the peer — a dlt pipeline on the same topics: a resource reading the backlog with
    confluent-kafka and yielding each record as a dict (as dlt's Kafka source does), loaded to
    Parquet files by dlt's filesystem destination. Needs the ``bench`` extra
    (``pip install -e '.[bench]'``); without it the run says so and skips it.

(a) and (b) run ``--repeat`` times, alternated, so each landing run has a consume-only run
beside it under the same load; the ratio b/a is the median of the runs' ratios. dlt runs once
(it is the slowest by far). ``--rules-off`` adds (c), landing with the suites reduced to their
type lists, to see what the rules cost. Prints events/s, ratios, the time landing spent
committing per batch and each process's peak RSS (from wait4, per child).

    .venv/bin/python benchmarks/landing.py --events 2000000 --repeat 3
"""

from __future__ import annotations

import argparse
import importlib.util
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
bs, total, call = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics
c = Consumer({"bootstrap.servers": bs, "group.id": "bench", "enable.auto.commit": False, **FETCH_TUNING})
c.assign([TopicPartition(t, p, 0) for t in TOPIC_NAMES for p in md[t].partitions])
n, size, start = 0, 0, time.monotonic()
while n < total:
    for m in c.consume(call, timeout=1):
        if m.error() is None:
            n += 1
            v = m.value()
            size += len(v) if v else 0
            m.key(); m.offset(); m.partition(); m.topic(); m.timestamp()
print(n, time.monotonic() - start)
"""

# dlt's Kafka source yields one dict per message (its value decoded, the message's topic,
# partition, offset, key and timestamp beside it); the same here, with one table per topic.
DLT_PEER = """
import sys, time, json
import dlt
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient
from pipelines.catalog import TOPIC_NAMES
from pipelines.kafka import FETCH_TUNING
bs, total, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
md = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics

@dlt.resource(name="kafka", table_name=lambda item: item["_kafka"]["topic"].replace(".", "_"))
def messages():
    c = Consumer({"bootstrap.servers": bs, "group.id": "dlt", "enable.auto.commit": False, **FETCH_TUNING})
    c.assign([TopicPartition(t, p, 0) for t in TOPIC_NAMES for p in md[t].partitions])
    n = 0
    while n < total:
        batch = []
        for m in c.consume(10000, timeout=1):
            if m.error() is not None:
                continue
            n += 1
            value = m.value()
            try:
                data = json.loads(value) if value is not None else None
            except ValueError:
                data = {"_raw": value.hex()}
            if not isinstance(data, dict):
                data = {"_value": json.dumps(data)}
            key = m.key()
            data["_kafka"] = {"topic": m.topic(), "partition": m.partition(), "offset": m.offset(),
                              "key": key.hex() if key else None, "ts": m.timestamp()[1]}
            batch.append(data)
        yield batch
    c.close()

start = time.monotonic()
pipeline = dlt.pipeline("bench", destination=dlt.destinations.filesystem(out), dataset_name="kafka",
                        pipelines_dir=out + "/.dlt")
pipeline.run(messages(), loader_file_format="parquet")
print(total, time.monotonic() - start)
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


class Results:
    """Each run's records, seconds and peak RSS, by label."""

    def __init__(self) -> None:
        self.runs: dict[str, list[tuple[int, float, float]]] = {}

    def add(self, label: str, records: int, seconds: float, rss: float) -> None:
        self.runs.setdefault(label, []).append((records, seconds, rss))

    def rate(self, label: str, i: int | None = None) -> float:
        runs = self.runs[label]
        if i is not None:
            return runs[i][0] / runs[i][1]
        return statistics.median(n / s for n, s, _ in runs)

    def table(self) -> str:
        lines = [f"{'run':<30}{'records':>12}{'seconds':>10}{'events/s':>12}{'peak RSS MiB':>14}  (median; range)"]
        for label, runs in self.runs.items():
            rates = [n / s for n, s, _ in runs]
            spread = f"  {min(rates):,.0f}–{max(rates):,.0f}/s" if len(runs) > 1 else ""
            seconds = statistics.median(s for _, s, _ in runs)
            peak = max(r for _, _, r in runs)
            lines.append(
                f"{label:<30}{runs[0][0]:>12,}{seconds:>10.1f}{self.rate(label):>12,.0f}{peak:>14,.0f}{spread}"
            )
        return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=50_000, help="as `tradelake ingest --batch-size`")
    parser.add_argument("--repeat", type=int, default=1, help="runs of (a) and (b), alternated; medians are shown")
    parser.add_argument("--consume-call", type=int, default=10_000, help="messages per consume() call in (a)")
    parser.add_argument("--rules-off", action="store_true", help="also (c): landing with the suites' type lists only")
    parser.add_argument("--no-dlt", action="store_true", help="skip (d), the dlt peer")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tradelake-bench-"))
    py = sys.executable
    with EmbeddedBroker(work / "broker") as broker:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "TRADELAKE_PII_KEY": "benchmark-personal-data-key",
            "RUNTIME__DLTHUB_TELEMETRY": "false",
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
        results = Results()
        commit_ms: dict[str, list[float]] = {}
        landings = [("(b) landing, contracts on", {})]
        if args.rules_off:
            landings.append(("(c) landing, rules off", {"TRADELAKE_CONTRACTS": str(rules_off(work / "rules-off"))}))
        for attempt in range(args.repeat):
            t, rss, out = run(
                [py, "-c", CONSUME_ONLY, broker.bootstrap_servers, str(produced), str(args.consume_call)], env
            )
            n, secs = out.split()
            results.add("(a) consume only", int(n), float(secs), rss)
            for label, extra in landings:
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
                results.add(label, records, t, rss)
            ratio = results.rate(landings[0][0], attempt) / results.rate("(a) consume only", attempt)
            print(f"  run {attempt + 1}: b/a = {ratio:.2f}", flush=True)
        dlt_note = ""
        if args.no_dlt:
            dlt_note = "dlt: skipped (--no-dlt)"
        elif importlib.util.find_spec("dlt") is None:
            dlt_note = "dlt: NOT INSTALLED, peer skipped (pip install -e '.[bench]')"
        else:
            _, rss, out = run([py, "-c", DLT_PEER, broker.bootstrap_servers, str(produced), str(work / "dlt")], env)
            n, secs = out.split()[-2:]  # its own timing: the pipeline, not dlt's imports
            results.add("(d) dlt, Kafka -> Parquet", int(n), float(secs), rss)
    shutil.rmtree(work, ignore_errors=True)
    print("\n" + results.table())
    a, b = "(a) consume only", landings[0][0]
    ratios = [results.rate(b, i) / results.rate(a, i) for i in range(args.repeat)]
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(f"\nlanding/consume b/a = {statistics.median(ratios):.2f} (median of the runs' ratios: {each})")
    if "(d) dlt, Kafka -> Parquet" in results.runs:
        print(f"landing/dlt b/d = {results.rate(b) / results.rate('(d) dlt, Kafka -> Parquet'):.1f}x")
    else:
        print(dlt_note)
    if args.rules_off:
        cost = 100 * (1 - results.rate(b) / results.rate(landings[1][0]))
        print(f"contract rules cost {cost:.0f}% of the rules-off rate")
    for label, values in commit_ms.items():
        print(f"{label}: committing took {statistics.median(values):,.0f} ms per batch (median of runs)")


if __name__ == "__main__":
    main()
