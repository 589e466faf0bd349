"""Shared fixtures: a real embedded broker per test (Kafka protocol over TCP), lakes on temp dirs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelines.broker import EmbeddedBroker
from pipelines.settings import Settings
from tests.s3 import MotoS3

TEST_PII_KEY = "test-personal-data-key"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A fresh Tansu broker: each test owns its topics and offsets (start-up takes ~0.1 s)."""
    with EmbeddedBroker(tmp_path / "broker") as b:
        yield b


@pytest.fixture
def lake(tmp_path: Path, broker: EmbeddedBroker) -> Settings:
    """Settings for a lake on a temp dir fed by the test's broker, topics created."""
    from pipelines import kafka

    settings = Settings.load(
        env={"TRADELAKE_PII_KEY": TEST_PII_KEY}, home=str(tmp_path / "lake"), bootstrap_servers=broker.bootstrap_servers
    )
    kafka.ensure_topics(settings)
    return settings


def cli_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment of a ``tradelake`` subprocess: this one's, without any tradelake, Kafka or
    Dagster setting of the developer's, pointed at ``settings``' lake and broker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "TRADELAKE_", "DAGSTER_"))}
    if settings is not None:
        env |= {
            "TRADELAKE_HOME": str(settings.home),
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers or "",
            "TRADELAKE_PII_KEY": TEST_PII_KEY,
        }
    return env


def run_cli(
    *args: str,
    settings: Settings | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    preexec_fn: Callable[[], None] | None = None,
):
    """Run the real ``tradelake`` console entry point in a subprocess (``preexec_fn``: e.g. limits)."""
    full_env = cli_env(settings) | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=preexec_fn,
    )


@pytest.fixture(scope="session")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoS3]:
    """One loopback S3 server (``moto_server``) for the session; each test takes its own bucket."""
    server = MotoS3(tmp_path_factory.mktemp("moto") / "moto_server.log")
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3_env(moto_s3: MotoS3) -> dict[str, str]:
    """The environment of a lake at ``s3://<a new bucket>/lake`` on the loopback server."""
    return moto_s3.lake_env(moto_s3.create_bucket())


@pytest.fixture
def s3_lake(tmp_path: Path, broker: EmbeddedBroker, s3_env: dict[str, str]) -> Settings:
    """Settings for a lake on the loopback S3 server fed by the test's broker, topics created
    (pass ``env=s3_env`` to ``run_cli`` as well: the subprocess must find the same lake)."""
    from pipelines import kafka

    settings = Settings.load(
        env={"TRADELAKE_PII_KEY": TEST_PII_KEY, **s3_env},
        home=str(tmp_path / "home"),
        bootstrap_servers=broker.bootstrap_servers,
    )
    kafka.ensure_topics(settings)
    return settings
