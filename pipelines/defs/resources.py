"""Resources shared by the domains: the lake (and its Kafka cluster) and the contract policy.

``defs`` binds them for the code location: ``tradelake`` to ``EnvVar("TRADELAKE_HOME")``,
resolved when a run or a sensor tick starts, never when the location loads.
"""

import dagster as dg
from pydantic import Field

from pipelines.settings import Settings


class TradelakeResource(dg.ConfigurableResource):
    """The lake under ``home`` and the Kafka cluster that feeds it (``pipelines.settings.Settings``).

    ``home`` is bound to ``EnvVar("TRADELAKE_HOME")`` in the code location. The broker and its
    librdkafka properties file are optional: left unset, they are resolved when a run or a
    sensor tick starts, like every tradelake command does (``KAFKA_BOOTSTRAP_SERVERS``,
    ``TRADELAKE_KAFKA_CONFIG``, else the embedded broker registered under the home).
    """

    home: str = Field(description="tradelake's home ($TRADELAKE_HOME): the lake unless TRADELAKE_LAKE_URL, warehouse.")
    bootstrap_servers: str | None = Field(
        default=None, description="Kafka bootstrap servers; default: KAFKA_BOOTSTRAP_SERVERS or the embedded broker."
    )
    kafka_config: str | None = Field(
        default=None,
        description="librdkafka properties file (e.g. Confluent Cloud's); default: TRADELAKE_KAFKA_CONFIG.",
    )

    def settings(self) -> Settings:
        return Settings.load(home=self.home, bootstrap_servers=self.bootstrap_servers, kafka_config=self.kafka_config)


class ContractPolicy(dg.ConfigurableResource):
    """How the blocking contract checks judge a micro-batch.

    A contract rule fails a topic's check when the share of the rows it judged that broke it
    exceeds ``1 - mostly``. ``mostly`` is part of the contract, not of this policy: a rule's own
    (GX kwarg in ``expectations/``), else ``pipelines.contracts.DEFAULT_MOSTLY``, the one default
    the validation summary stored with each batch uses too. Records that break a rule are
    quarantined either way: the check decides whether the batch as a whole is fit to build the marts from, i.e.
    whether a producer is broken rather than a few records bad, hence ``confidence``: a rule
    fails on evidence (the lower bound of its unexpected share), not on one bad record among a
    handful of a rare event type.
    """

    confidence: float = Field(
        default=0.95,
        ge=0.0,
        lt=1.0,
        description=(
            "A rule fails only when, at this one-sided confidence (Wilson interval), its unexpected share "
            "exceeds 1 - mostly; 0 judges the plain share (GX's rule)."
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    tradelake = TradelakeResource(home=dg.EnvVar("TRADELAKE_HOME"))
    return dg.Definitions(resources={"tradelake": tradelake, "contract_policy": ContractPolicy()})
