"""Deterministic, realistic traffic for every topic of the tradelake event catalog.

A pure generator (no Kafka here): ``Simulation(SimulationConfig(...)).records()`` yields
``Record(topic, key, value)`` in production order, with late, redelivered, v1/v2 and
malformed records, and ``Simulation.report`` says what was produced and planted.
"""

from .config import SimulationConfig
from .model import Record
from .report import SimulationReport
from .simulation import Simulation

__all__ = ["Record", "Simulation", "SimulationConfig", "SimulationReport"]
