"""DuckDB reads the lake through the Delta log (``delta_scan``), never by globbing files.

The ``delta`` and ``httpfs`` extensions come from pip packages built for this DuckDB version
(``duckdb-extension-delta``, ``duckdb-extension-httpfs``) and are loaded from the venv by
path: nothing is downloaded, so the lake is readable offline and in CI. On an ``s3://`` lake
an S3 secret is created from the same storage options delta-rs writes with.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from urllib.parse import urlsplit

import duckdb

from pipelines.errors import TradelakeError
from pipelines.lake.location import LakeLocation

# Connection settings for a DuckDB that must never fetch an extension from the network.
OFFLINE_CONFIG = {"autoinstall_known_extensions": False, "autoload_known_extensions": False}


def extension_path(name: str) -> Path:
    """The extension file that the pip package ``duckdb-extension-<name>`` ships."""
    try:
        package = importlib.import_module(f"duckdb_extension_{name}")
    except ImportError:
        raise TradelakeError(f"the DuckDB extension package duckdb-extension-{name} is not installed") from None
    path = Path(package.__file__).parent / "extensions" / f"v{duckdb.__version__}" / f"{name}.duckdb_extension"
    if not path.is_file():
        raise TradelakeError(
            f"duckdb-extension-{name} has no build for DuckDB {duckdb.__version__}: install the matching version"
        )
    return path


def load_delta(con: duckdb.DuckDBPyConnection, location: LakeLocation) -> duckdb.DuckDBPyConnection:
    """Make ``delta_scan`` (and, on an S3 lake, its object store) available on ``con``."""
    if not location.is_local:
        con.execute(f"load '{extension_path('httpfs')}'")
    con.execute(f"load '{extension_path('delta')}'")
    if not location.is_local:
        con.execute(s3_secret_sql(location))
    return con


def s3_secret_sql(location: LakeLocation) -> str:
    """A DuckDB S3 secret equal to the storage options delta-rs uses for the lake."""
    o = location.storage_options
    parts = ["TYPE s3", "PROVIDER config", f"REGION {_quote(o.get('aws_region', 'us-east-1'))}"]
    if o.get("aws_access_key_id"):
        parts.append(f"KEY_ID {_quote(o['aws_access_key_id'])}")
    if o.get("aws_secret_access_key"):
        parts.append(f"SECRET {_quote(o['aws_secret_access_key'])}")
    if o.get("aws_session_token"):
        parts.append(f"SESSION_TOKEN {_quote(o['aws_session_token'])}")
    if endpoint := o.get("aws_endpoint_url"):
        url = urlsplit(endpoint)
        parts.append(f"ENDPOINT {_quote(url.netloc or url.path)}")
        # object_store's default with a custom endpoint is path style (bucket in the path), as MinIO and moto need
        vhost = o.get("aws_virtual_hosted_style_request", "").lower() == "true"
        parts.append(f"URL_STYLE '{'vhost' if vhost else 'path'}'")
        parts.append(f"USE_SSL {'false' if url.scheme == 'http' else 'true'}")
    return f"CREATE OR REPLACE SECRET tradelake_lake ({', '.join(parts)})"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def connect(location: LakeLocation, database: str = ":memory:", read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection that can read the lake's tables."""
    return load_delta(duckdb.connect(database, read_only=read_only, config=dict(OFFLINE_CONFIG)), location)
