"""Data contracts: Great Expectations suites in ``expectations/``, the one definition of
what a valid record is, compiled into the landing router."""

from pipelines.contracts.suites import DEFAULT_MOSTLY, Column, Contract, Rule, TopicContracts, load_contracts

__all__ = ["DEFAULT_MOSTLY", "Column", "Contract", "Rule", "TopicContracts", "load_contracts"]
