"""``tradelake`` command line (SPEC §5). Expected failures print one line and exit non-zero."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import NoReturn

from pipelines.errors import TradelakeError, environment_error
from pipelines.settings import Settings

log = logging.getLogger("tradelake")


DEFAULT_EVENTS = 100_000
# --follow streams one long simulation: ~5.5 hours at 1,000 records/s (the simulator sizes its
# marketplace by the events asked for; its clock runs far faster than the wall's).
FOLLOW_EVENTS = 20_000_000
DEFAULT_FOLLOW_RATE = 1_000


def _stop_on_signals() -> Callable[[], bool]:
    """A flag set by SIGTERM/SIGINT, so a long-running command finishes what it is doing and exits 0."""
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    return stopped.is_set


def _settings(args: argparse.Namespace) -> Settings:
    """The settings of the command, its home checked for the access the command needs (``home_access``)."""
    settings = Settings.load(home=args.home, bootstrap_servers=args.bootstrap_servers, kafka_config=args.kafka_config)
    settings.check_home(write=args.home_access == "write")
    return settings


class _Parser(argparse.ArgumentParser):
    """A usage error is an expected failure too: one ``tradelake: error:`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"tradelake: error: {message} (see '{self.prog} --help')\n")


def _number(kind: type, low: float, high: float = math.inf, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite ``kind`` within ``low``..``high`` (``low`` excluded when ``low_open``)."""
    bound = f"above {low:g}" if low_open else f"at least {low:g}" if high == math.inf else f"within {low:g}..{high:g}"
    name = "a whole number" if kind is int else "a number"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value > high or value < low or (low_open and value == low):
            raise argparse.ArgumentTypeError(f"{text!r} is not {name} {bound}")
        return value

    return parse


COUNT = _number(int, 1)  # events, batch sizes, MiB
HOURS = _number(int, 0)
SECONDS = _number(float, 0, low_open=True)
SECONDS_OR_ZERO = _number(float, 0)
RATE = _number(float, 0, low_open=True)
SHARE = _number(float, 0, 1)
PORT = _number(int, 1, 65535)


def cmd_broker(args: argparse.Namespace) -> int:
    from pipelines import kafka
    from pipelines.broker import EmbeddedBroker

    settings = _settings(args)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    with EmbeddedBroker(settings.home, port=args.port) as broker:
        kafka.ensure_topics(Settings.load(home=str(settings.home), bootstrap_servers=broker.bootstrap_servers))
        print(f"embedded Kafka broker (Tansu) listening on {broker.bootstrap_servers}", flush=True)
        print(f"  export KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap_servers}   # or run tradelake with the same home")
        print("  memory-only storage: data lives as long as this process. Ctrl-C to stop.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            stopped.wait()
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from pipelines.produce import simulate
    from pipelines.simulator import SimulationConfig

    events = args.events if args.events is not None else FOLLOW_EVENTS if args.follow else DEFAULT_EVENTS
    stop = _stop_on_signals() if args.follow else (lambda: False)
    report = simulate(
        _settings(args),
        SimulationConfig(events=events, seed=args.seed, malformed_rate=args.malformed_rate),
        rate=args.rate or (DEFAULT_FOLLOW_RATE if args.follow else None),
        should_stop=stop,
    )
    total = sum(report.records_per_topic.values())
    print(f"produced {total:,} records over {len(report.records_per_topic)} topics (seed {args.seed})")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from pipelines.landing.process import prepare_landing_process

    prepare_landing_process()  # before the landing modules load their libraries
    from pipelines.landing.ingest import ingest
    from pipelines.summary import format_ingest

    stats = ingest(
        _settings(args),
        follow=args.follow,
        batch_size=args.batch_size,
        flush_interval=args.flush_interval,
        reset_topics=args.reset_topic,
    )
    print(format_ingest(stats))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from pipelines.run import RunOptions, run

    runner = run(
        _settings(args),
        RunOptions(
            batch_size=args.batch_size,
            flush_interval=args.flush_interval,
            debounce=args.debounce,
            metrics_port=args.metrics_port,
            full_build_hour=None if args.no_full_build else args.full_build_hour,
        ),
    )
    print(f"tradelake run stopped after {runner.builds} build(s)")
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    from pipelines.up import UpOptions, up

    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    up(_settings(args), UpOptions(rate=args.rate, ui_port=args.ui_port, metrics_port=args.metrics_port), stopped)
    print("tradelake up: stopped")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from pipelines.build import build, dbt_target
    from pipelines.record import Recorder, dagster_instance

    settings = _settings(args)
    result = build(settings, select=args.select, full_refresh=args.full_refresh)
    print(result.summary())
    with dagster_instance(settings) as instance:  # the UI shows the build, whoever ran it
        Recorder(instance, "tradelake build").build(dbt_target(settings))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from pipelines.publish import publish

    print(publish(_settings(args)).summary())
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipelines.kafka import bootstrap_servers
    from pipelines.status import format_status, partition_status, require_lake

    settings = _settings(args)
    require_lake(settings)
    try:
        bootstrap_servers(settings)
        with_broker = True
    except TradelakeError as e:  # no broker configured: the lake's side is still worth showing
        log.warning("%s; showing what the lake has committed only", e)
        with_broker = False
    print(format_status(partition_status(settings, with_broker=with_broker)))
    return 0


def cmd_contracts_check(args: argparse.Namespace) -> int:
    from pipelines.contracts.check import check_contracts

    print(check_contracts())
    return 0


def cmd_contracts_docs(args: argparse.Namespace) -> int:
    from pipelines.contracts.docs import build_contract_docs

    index = build_contract_docs(_settings(args).home / "docs" / "contracts")
    print(f"contract docs: {index.as_uri()}")
    return 0


def cmd_ui(args: argparse.Namespace) -> int:
    from pipelines.ui import run_ui

    return run_ui(_settings(args), port=args.port, host=args.host, kafka_config=args.kafka_config)


def cmd_export(args: argparse.Namespace) -> int:
    from pipelines.export import export

    done = export(_settings(args), args.mart, args.format, args.out, include_staging=args.include_staging)
    print(f"exported {done.rows:,} rows of {done.relation} to {done.path}")
    return 0


def cmd_maintain(args: argparse.Namespace) -> int:
    from pipelines.lake.maintain import DEFAULT_RETENTION_HOURS, DEFAULT_TARGET_SIZE, run_maintenance

    settings = _settings(args)
    report = run_maintenance(
        settings,
        tables=args.table,
        retention_hours=DEFAULT_RETENTION_HOURS if args.retention_hours is None else args.retention_hours,
        target_size=DEFAULT_TARGET_SIZE if args.target_file_mib is None else args.target_file_mib * 2**20,
        on_table=lambda t: print(t.line(), flush=True),  # one line per table as it is done: long runs show progress
    )
    if not report.tables:
        print(f"nothing to maintain: the lake at {settings.lake.url} has no tables yet")
    else:
        print(report.summary())
    return 0


def cmd_pii_key_rotate(args: argparse.Namespace) -> int:
    from pipelines.pii_key import rotate

    print(rotate(_settings(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from pipelines.demo import run_demo

    run_demo(_settings(args), events=args.events, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--home", help="lake directory (env TRADELAKE_HOME, default ./.tradelake)")
    common.add_argument("--bootstrap-servers", help="Kafka bootstrap servers (env KAFKA_BOOTSTRAP_SERVERS)")
    common.add_argument("--kafka-config", help="librdkafka properties file, e.g. from Confluent Cloud")
    common.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    common.add_argument("-v", "--verbose", action="store_true", help="also show the Kafka client's own log")

    parser = _Parser(prog="tradelake", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Callable[[argparse.Namespace], int], home: str, **kwargs: str) -> _Parser:
        """A subcommand; ``home`` is the access it needs to TRADELAKE_HOME ("read" or "write")."""
        p = sub.add_parser(name, parents=[common], **kwargs)
        p.set_defaults(func=func, home_access=home)
        return p

    p = command("demo", cmd_demo, "write", help="embedded broker → simulate → land → summary")
    p.add_argument("--events", type=COUNT, default=300_000)
    p.add_argument("--seed", type=int, default=42)

    p = command("broker", cmd_broker, "write", help="run the embedded broker in the foreground")
    p.add_argument("--port", type=PORT, default=9092)

    p = command("simulate", cmd_simulate, "read", help="produce realistic marketplace traffic")
    p.add_argument(
        "--events", type=COUNT, help=f"target count (default {DEFAULT_EVENTS:,}; --follow: {FOLLOW_EVENTS:,})"
    )
    p.add_argument(
        "--follow",
        action="store_true",
        help=f"a live stream: keep producing (at --rate, default {DEFAULT_FOLLOW_RATE:,}/s) until SIGTERM/Ctrl-C",
    )
    p.add_argument("--rate", type=RATE, help="records per second (default: as fast as possible; --follow: 1,000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--malformed-rate", type=SHARE, default=0.005, help="share of malformed records, 0..1")

    p = command("ingest", cmd_ingest, "write", help="land the topics into the lake's Delta tables")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--once", action="store_true", help="up to the current high watermarks, then exit")
    mode.add_argument("--follow", action="store_true", help="keep landing until SIGTERM/Ctrl-C")
    p.add_argument("--batch-size", type=COUNT, default=50_000, help="records per micro-batch at most")
    p.add_argument(
        "--flush-interval",
        type=SECONDS,
        default=5.0,
        metavar="SECONDS",
        help="every consumed record is committed within this many seconds (default 5)",
    )
    p.add_argument(
        "--reset-topic",
        action="append",
        default=[],
        metavar="TOPIC",
        help="the topic was replaced (new topic ID): record the reset and land the new stream beside the old",
    )

    p = command("run", cmd_run, "write", help="continuous mode: land, rebuild the marts, serve /metrics")
    p.add_argument("--batch-size", type=COUNT, default=50_000, help="records per micro-batch at most")
    p.add_argument("--flush-interval", type=SECONDS, default=5.0, metavar="SECONDS", help="commit every record within")
    p.add_argument(
        "--debounce", type=SECONDS_OR_ZERO, default=1.0, metavar="SECONDS", help="wait after a commit before building"
    )
    p.add_argument("--metrics-port", type=PORT, help="serve Prometheus /metrics on 127.0.0.1:PORT")
    p.add_argument(
        "--full-build-hour", type=int, default=3, choices=range(24), metavar="H", help="daily full build (UTC)"
    )
    p.add_argument("--no-full-build", action="store_true", help="no daily full build")

    p = command("up", cmd_up, "write", help="the live local lakehouse: broker, simulator, run, Dagster UI")
    p.add_argument("--rate", type=RATE, default=200.0, help="simulated events per second (default 200)")
    p.add_argument("--ui-port", type=PORT, default=3000)
    p.add_argument("--metrics-port", type=PORT, default=9108)

    p = command("build", cmd_build, "write", help="validate and build the dbt models (dbt build)")
    p.add_argument("--select", help="dbt selection, e.g. 'marts.finance+'")
    p.add_argument("--full-refresh", action="store_true", help="rebuild incremental models from scratch")

    command(
        "publish", cmd_publish, "write", help="derived events (notifications, reconciliation breaks, top 3) to Kafka"
    )

    command("status", cmd_status, "read", help="per topic/partition lag, quarantine, freshness")

    p = command("ui", cmd_ui, "write", help="the Dagster UI for this lake on 127.0.0.1 (Ctrl-C to stop)")
    p.add_argument("--port", type=PORT, default=3000)
    p.add_argument("--host", default="127.0.0.1")

    p = command("export", cmd_export, "read", help="write a mart to CSV or Parquet (for spreadsheets)")
    p.add_argument("mart", help="schema.table, e.g. finance.payment_reconciliation")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", help="output file (default ./<schema.table>.<format>)")
    p.add_argument(
        "--include-staging",
        action="store_true",
        help="also allow the staging, intermediate and audit relations (the quarantine's raw bytes included)",
    )

    p = command(
        "maintain", cmd_maintain, "write", help="compact, checkpoint and vacuum the lake's tables; offsets are kept"
    )
    p.add_argument(
        "--retention-hours",
        type=HOURS,
        metavar="H",
        help="vacuum the files no version of the last H hours references (default and minimum: 168, 7 days)",
    )
    p.add_argument(
        "--table", action="append", metavar="NAME", help="only this table (repeatable), e.g. fleet.gps or _batches"
    )
    p.add_argument("--target-file-mib", type=COUNT, metavar="MIB", help="size of the compacted files (default 64)")

    p = sub.add_parser("pii-key", help="the lake's personal-data key")
    ksub = p.add_subparsers(dest="pii_key_command", required=True)
    k = ksub.add_parser(
        "rotate", parents=[common], help="hash with a new key from the next batch on (earlier hashes will not match)"
    )
    k.set_defaults(func=cmd_pii_key_rotate, home_access="write")

    p = sub.add_parser("contracts", help="data contract tools")
    csub = p.add_subparsers(dest="contracts_command", required=True)
    c = csub.add_parser("check", parents=[common], help="validate the contract files themselves")
    c.set_defaults(func=cmd_contracts_check, home_access="read")
    c = csub.add_parser("docs", parents=[common], help="render GX Data Docs of the contracts under $TRADELAKE_HOME")
    c.set_defaults(func=cmd_contracts_docs, home_access="write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
    log.addHandler(handler)  # only tradelake's own logger: libraries keep their defaults
    log.setLevel(logging.WARNING if args.quiet else logging.INFO)
    log.propagate = False
    logging.getLogger("tradelake.librdkafka").setLevel(logging.DEBUG if getattr(args, "verbose", False) else 100)
    try:
        return args.func(args)
    except TradelakeError as e:
        print(f"tradelake: error: {e}", file=sys.stderr)
        return e.exit_code
    except Exception as e:  # the machine's failures (disk full, permission denied) are one line; bugs are not
        error = environment_error(e)
        if error is None:
            raise
        print(f"tradelake: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("tradelake: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `tradelake status | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
