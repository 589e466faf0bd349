"""Configuration, read once into a typed object (never at import time).

Sources, most specific first: command-line flags, environment variables, defaults.
``KAFKA_BOOTSTRAP_SERVERS`` selects an external cluster; without it tradelake uses the
embedded broker registered under ``$TRADELAKE_HOME`` (started by ``tradelake broker`` or
``tradelake demo``). ``--kafka-config`` takes a librdkafka properties file, the format
Confluent Cloud hands out (``sasl.mechanisms=PLAIN`` …).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.errors import TradelakeError
from pipelines.lake.location import LakeLocation

PII_KEY_FILE = "pii.key"
DEFAULT_CONSUMER_GROUP = "tradelake-landing"


@dataclass(frozen=True)
class Settings:
    home: Path
    bootstrap_servers: str | None = None
    kafka_properties: Mapping[str, str] = field(default_factory=dict)
    consumer_group: str = DEFAULT_CONSUMER_GROUP
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
        group = env.get("TRADELAKE_CONSUMER_GROUP", DEFAULT_CONSUMER_GROUP)
        if not group.strip():  # librdkafka aborts the process on an empty group.id (a C assertion)
            raise TradelakeError(
                f"TRADELAKE_CONSUMER_GROUP is empty: name a consumer group, or unset it for {DEFAULT_CONSUMER_GROUP!r}"
            )
        if home_path.exists() and not home_path.is_dir():
            raise TradelakeError(f"TRADELAKE_HOME {home_path} is not a folder")
        return cls(
            home=home_path,
            bootstrap_servers=servers,
            kafka_properties=properties,
            consumer_group=group,
            pii_key=pii.encode() if pii else None,
            lake=LakeLocation.from_env(env, home_path),
        )

    def check_home(self, write: bool) -> None:
        """Fail with one line unless the home can be read (and, with ``write``, written).

        Probed by doing it — listing the folder, creating a file in it — rather than by mode
        bits, which neither root's privileges, ACLs nor a read-only mount are visible in.
        """
        try:
            if write:
                self.home.mkdir(parents=True, exist_ok=True)
                with tempfile.TemporaryFile(dir=self.home):
                    pass
            elif self.home.exists():
                os.listdir(self.home)
        except OSError as e:
            verb = "write to" if write else "read"
            raise TradelakeError(f"cannot {verb} TRADELAKE_HOME {self.home}: {e.strerror}") from None

    def kafka_client_config(self, bootstrap_servers: str) -> dict[str, str]:
        """librdkafka configuration shared by producers, consumers and admin clients."""
        conf = dict(self.kafka_properties)
        conf["bootstrap.servers"] = bootstrap_servers
        return conf

    def personal_data_key(self) -> bytes:
        """The key of the personal-data hash: ``TRADELAKE_PII_KEY`` or one kept under the home.

        A generated key is written once, atomically, with mode 0600 so that hashes stay stable
        (they are join keys) across runs; an empty or short key (under 16 bytes) is refused.
        Landing also checks it is the lake's key (pipelines.pii_key).
        """
        from pipelines.pii_key import home_key, require_length

        if self.pii_key is not None:
            return require_length(self.pii_key, "TRADELAKE_PII_KEY")
        return home_key(self.home)


def read_properties(path: Path) -> dict[str, str]:
    """Parse a librdkafka/Java properties file (``key=value``, ``#`` comments).

    Its values include credentials (``sasl.password``), so no error quotes a line: each names
    the file, the line number and at most the key.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TradelakeError(f"cannot read Kafka properties file {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise TradelakeError(f"{path}:{line}: the Kafka properties file is not UTF-8 text") from None
    props: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        sep = min((i for i in (line.find("="), line.find(":")) if i > 0), default=-1)
        if sep < 0:
            raise TradelakeError(f"{path}:{number}: expected 'key=value' (the line is not shown: it may hold a secret)")
        props[line[:sep].strip()] = line[sep + 1 :].strip()
    return props


def env_number(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    """The whole number in variable ``name`` (``default`` when unset or empty), at least ``minimum``."""
    value = (env.get(name) or "").strip()
    if not value:
        return default
    try:
        number = int(value)
    except ValueError:
        number = None
    if number is None or number < minimum:
        raise TradelakeError(f"{name}={value!r}: expected a whole number, at least {minimum} (default {default})")
    return number
