"""Data contracts: Great Expectations suites in ``expectations/``, the one definition of
what a valid record is, compiled into the landing router."""

from pipelines.contracts.suites import Column, Contract, TopicContracts, load_contracts

__all__ = ["Column", "Contract", "TopicContracts", "load_contracts"]
