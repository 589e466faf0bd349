"""Send simulated marketplace traffic to Kafka (the simulator itself knows nothing of Kafka)."""

from __future__ import annotations

import logging

from confluent_kafka import KafkaException

from pipelines import kafka
from pipelines.errors import TradelakeError
from pipelines.progress import Progress
from pipelines.settings import Settings
from pipelines.simulator import Simulation, SimulationConfig, SimulationReport

log = logging.getLogger("tradelake")


def simulate(settings: Settings, config: SimulationConfig) -> SimulationReport:
    """Produce the simulation's records in order; fail loudly if any delivery fails."""
    kafka.ensure_topics(settings)
    producer = kafka.producer(settings)
    failures: list[str] = []

    def on_delivery(err, msg) -> None:
        if err is not None:
            failures.append(f"{msg.topic()}: {err.str()}")

    simulation = Simulation(config)
    progress = Progress("simulate")
    sent = 0
    for record in simulation.records():
        while True:
            try:
                producer.produce(record.topic, value=record.value, key=record.key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.05)  # local queue full: let deliveries drain
            except KafkaException as e:
                raise TradelakeError(f"cannot produce to {record.topic}: {e.args[0].str()}") from None
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
            progress.tick(sent)
    remaining = producer.flush(60)
    if remaining or failures:
        raise TradelakeError(
            f"{remaining + len(failures)} record(s) not delivered; first: {failures[0] if failures else 'timeout'}"
        )
    progress.log(sent)
    return simulation.report
