"""tradelake's Dagster definitions: Dagster's defs folder (``[tool.dg.project]`` in pyproject.toml),
loaded by ``dagster.load_from_defs_folder`` from ``pipelines/definitions.py``, one folder per domain.

- ``landing/``: one asset per Kafka topic and the lake's own tables, all materialized by one
  micro-batch (``Lander``) run;
- ``contracts/``: a blocking asset check per topic over that run's validation results;
- ``dbt/``: the dbt project's models as assets (dbt tests as asset checks), sources → topics;
- ``automation/``: the micro-batch and full-build jobs, the lag sensor, the daily full build,
  the marts' freshness SLO;
- ``maintenance/``: the lake's Delta tables compacted and vacuumed on a schedule;
- ``resources.py``: the resources every domain shares.

Every Python file here is imported when the location loads and its definitions collected:
module-level Dagster objects, or what its ``@dg.definitions`` function returns (then that alone).
The latter is how a domain builds what needs the environment or the dbt manifest, when the
location loads and never at import: importing any of these modules reads no environment
variable and runs no dbt.
"""
