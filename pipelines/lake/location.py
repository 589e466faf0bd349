"""Where the lake lives: a folder (default ``$TRADELAKE_HOME/lake``) or ``s3://bucket/prefix``.

Object stores take the usual AWS variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``AWS_ENDPOINT_URL`` for MinIO, R2 or a loopback server, ``AWS_ALLOW_HTTP``
for a plain-HTTP endpoint, ``AWS_CONDITIONAL_PUT=etag`` for safe concurrent commits). They
are read once here and handed to delta-rs and DuckDB explicitly, so both see the same store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import TradelakeError

# delta-rs (object_store) storage options taken from the environment of the same name.
_STORAGE_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ALLOW_HTTP",
    "AWS_CONDITIONAL_PUT",
    "AWS_S3_ALLOW_UNSAFE_RENAME",
    "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
)


@dataclass(frozen=True)
class LakeLocation:
    url: str  # a local absolute path, or s3://bucket/prefix
    storage_options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, env: Mapping[str, str], home: Path) -> LakeLocation:
        url = (env.get("TRADELAKE_LAKE_URL") or "").strip()
        if not url:
            return cls(str(home / "lake"))
        if url.startswith("s3://"):
            if len(url.rstrip("/")) <= len("s3://"):
                raise TradelakeError("TRADELAKE_LAKE_URL must name a bucket: s3://bucket[/prefix]")
            options = {k.lower(): env[k] for k in _STORAGE_VARIABLES if env.get(k)}
            if "aws_region" not in options:
                options["aws_region"] = options.pop("aws_default_region", "us-east-1")
            return cls(url.rstrip("/"), options)
        if "://" in url and not url.startswith("file://"):
            raise TradelakeError(f"TRADELAKE_LAKE_URL {url!r}: only a folder or s3://bucket/prefix is supported")
        return cls(str(Path(url.removeprefix("file://")).expanduser().resolve()))

    @property
    def is_local(self) -> bool:
        return not self.url.startswith("s3://")

    def table_uri(self, name: str) -> str:
        return f"{self.url}/{name}"
