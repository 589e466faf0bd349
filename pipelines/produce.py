"""Send simulated marketplace traffic to Kafka (the simulator itself knows nothing of Kafka)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import KafkaException

from pipelines import kafka
from pipelines.errors import TradelakeError
from pipelines.progress import Progress
from pipelines.settings import Settings
from pipelines.simulator import Simulation, SimulationConfig, SimulationReport

log = logging.getLogger("tradelake")


class Pace:
    """Keeps production at ``rate`` records per second on average (None: as fast as possible)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self.started = time.monotonic()

    def wait(self, sent: int) -> None:
        if self.rate:
            ahead = sent / self.rate - (time.monotonic() - self.started)
            if ahead > 0:
                time.sleep(ahead)


def simulate(
    settings: Settings,
    config: SimulationConfig,
    rate: float | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> SimulationReport:
    """Produce the simulation's records in order; fail loudly if any delivery fails.

    With ``rate``, records are sent at that many per second (a live stream rather than a
    backlog); ``should_stop`` ends the stream early, after delivering what was sent.
    """
    kafka.ensure_topics(settings)
    producer = kafka.producer(settings)
    failures: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err.str()}")

    simulation = Simulation(config)
    progress = Progress("simulate")
    pace = Pace(rate)
    sent = 0
    for record in simulation.records():
        if should_stop():
            break
        while True:
            try:
                producer.produce(record.topic, value=record.value, key=record.key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as e:
                raise TradelakeError(f"cannot produce to {record.topic}: {e.args[0].str()}") from None
        sent += 1
        if rate:  # a live stream: deliver as we go, at the pace asked for
            producer.poll(0)
            if sent % 100 == 0:
                pace.wait(sent)
                progress.tick(sent)
        elif sent % 10_000 == 0:
            producer.poll(0)
            progress.tick(sent)
    remaining = producer.flush(60)
    if remaining or failures:
        raise TradelakeError(
            f"{remaining + len(failures)} record(s) not delivered; first: {failures[0] if failures else 'timeout'}"
        )
    progress.log(sent)
    return simulation.report
