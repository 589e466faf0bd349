"""tradelake's Dagster definitions, one module per domain (assembled by pipelines/definitions.py).

- ``landing``: one asset per Kafka topic, all materialized by one micro-batch (``Lander``) run;
- ``contracts``: a blocking asset check per topic over that run's validation results;
- ``dbt``: the dbt project's models as assets (dbt tests as asset checks), sources → topics;
- ``automation``: the lag sensor, the daily full build and the marts' freshness checks;
- ``materialize``: run the whole graph once in process, recorded where ``tradelake ui`` looks
  (for ``tradelake demo`` and scripts).

Each domain module exposes ``defs(...) -> dagster.Definitions`` and builds everything when
called, never at import: importing this package reads no environment variable and runs no dbt.
"""
