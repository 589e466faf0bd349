"""Configuration, read once into a typed object (never at import time).

Sources, most specific first: command-line flags, environment variables, defaults.
``KAFKA_BOOTSTRAP_SERVERS`` selects an external cluster; without it tradelake uses the
embedded broker registered under ``$TRADELAKE_HOME`` (started by ``tradelake broker`` or
``tradelake demo``). ``--kafka-config`` takes a librdkafka properties file, the format
Confluent Cloud hands out (``sasl.mechanisms=PLAIN`` …).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import TradelakeError
from pipelines.lake.location import LakeLocation

PII_KEY_FILE = "pii.key"


@dataclass(frozen=True)
class Settings:
    home: Path
    bootstrap_servers: str | None = None
    kafka_properties: Mapping[str, str] = field(default_factory=dict)
    consumer_group: str = "tradelake-landing"
    pii_key: bytes | None = None
    lake: LakeLocation | None = None  # None: the folder ``lake`` under the home

    def __post_init__(self) -> None:
        if self.lake is None:
            object.__setattr__(self, "lake", LakeLocation(str(self.home / "lake")))

    @classmethod
    def load(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        home: str | None = None,
        bootstrap_servers: str | None = None,
        kafka_config: str | None = None,
    ) -> Settings:
        """Build settings from flags (arguments) over environment variables over defaults."""
        env = os.environ if env is None else env
        home_path = Path(home or env.get("TRADELAKE_HOME") or ".tradelake").expanduser().resolve()
        config_file = kafka_config or env.get("TRADELAKE_KAFKA_CONFIG")
        properties = read_properties(Path(config_file)) if config_file else {}
        servers = bootstrap_servers or env.get("KAFKA_BOOTSTRAP_SERVERS") or properties.get("bootstrap.servers") or None
        pii = env.get("TRADELAKE_PII_KEY")
        return cls(
            home=home_path,
            bootstrap_servers=servers,
            kafka_properties=properties,
            consumer_group=env.get("TRADELAKE_CONSUMER_GROUP", "tradelake-landing"),
            pii_key=pii.encode() if pii else None,
            lake=LakeLocation.from_env(env, home_path),
        )

    def kafka_client_config(self, bootstrap_servers: str) -> dict[str, str]:
        """librdkafka configuration shared by producers, consumers and admin clients."""
        conf = dict(self.kafka_properties)
        conf["bootstrap.servers"] = bootstrap_servers
        return conf

    def personal_data_key(self) -> bytes:
        """The key of the personal-data hash: ``TRADELAKE_PII_KEY`` or one kept under the home.

        A generated key is written once with mode 0600 so that hashes stay stable (they are
        join keys) across runs of the same lake.
        """
        if self.pii_key:
            return self.pii_key
        path = self.home / PII_KEY_FILE
        if not path.exists():
            self.home.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return path.read_text().strip().encode()


def read_properties(path: Path) -> dict[str, str]:
    """Parse a librdkafka/Java properties file (``key=value``, ``#`` comments)."""
    try:
        text = path.read_text()
    except OSError as e:
        raise TradelakeError(f"cannot read Kafka properties file {path}: {e.strerror}") from None
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise TradelakeError(f"{path}:{number}: expected 'key=value', got {line[:60]!r}")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props
