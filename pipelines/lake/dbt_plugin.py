"""dbt-duckdb plugin (``plugins:`` in dbt/profiles.yml): dbt's DuckDB reads the lake's Delta tables.

The dbt sources are ``delta_scan('<lake>/<table>')``, so every DuckDB connection dbt opens needs
the ``delta`` extension (and on an ``s3://`` lake ``httpfs`` and an S3 secret) before the first
model runs. dbt-duckdb's own ``extensions:`` setting would ``INSTALL`` them from the network;
this plugin loads them from the pip packages in the venv instead
(``pipelines.lake.duckdb_delta``), so builds work offline and always with the extension built
for the installed DuckDB.

The lake is located from the environment dbt was started with, by the same rule as
``Settings`` (``TRADELAKE_LAKE_URL``, default ``$TRADELAKE_HOME/lake``, AWS variables for an
object store); ``pipelines.build.dbt_environment`` builds those variables for a build.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbt.adapters.duckdb.credentials import DuckDBCredentials
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt_common.context import get_invocation_context
from duckdb import DuckDBPyConnection

from pipelines.lake.duckdb_delta import OFFLINE_CONFIG, load_delta
from pipelines.lake.location import LakeLocation


class Plugin(BasePlugin):
    """Loads the Delta extension (from the venv) on dbt's DuckDB connection."""

    def initialize(self, plugin_config: dict[str, Any]) -> None:
        # The environment dbt's env_var() reads; profiles.yml has already required TRADELAKE_HOME.
        env = get_invocation_context().env
        self.location = LakeLocation.from_env(env, Path(env["TRADELAKE_HOME"]))

    def update_connection_config(self, creds: DuckDBCredentials, config: dict[str, Any]) -> None:
        # At connect time, before any extension could be fetched; the profile's settings only
        # apply to the cursors opened afterwards.
        config.update(OFFLINE_CONFIG)

    def configure_connection(self, conn: DuckDBPyConnection) -> None:
        load_delta(conn, self.location)
