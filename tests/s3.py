"""A loopback S3 server for the ``s3://`` lake tests: moto's ``moto_server``, run as a separate process.

A real HTTP server, not an in-process mock: delta-rs (Rust), DuckDB's httpfs (C++) and the
``tradelake`` subprocesses all reach it over TCP, the way they would reach MinIO, R2 or AWS.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

# moto accepts any credentials; the region must be one it knows.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "tradelake-test", "AWS_SECRET_ACCESS_KEY": "tradelake-test"}
REGION = "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoS3:
    """``moto_server`` on a free loopback port, from start until ``close``."""

    def __init__(self, log: Path, timeout: float = 30.0) -> None:
        executable = Path(sys.executable).with_name("moto_server")
        if not executable.exists():
            raise RuntimeError("moto_server is not installed: pip install -e '.[dev]' (it brings moto[server])")
        self.endpoint = f"http://127.0.0.1:{_free_port()}"
        self._log = log.open("wb")
        port = self.endpoint.rsplit(":", 1)[1]
        self._process = subprocess.Popen(
            [str(executable), "-p", port, "-H", "127.0.0.1"], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"moto_server did not start on {self.endpoint}: {log.read_text()[-2000:]}")
            time.sleep(0.1)

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.endpoint, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True  # any HTTP answer: the server is up
        except OSError:
            return False

    def create_bucket(self) -> str:
        """A new, empty bucket (one per test, so tests never see each other's tables)."""
        import boto3  # comes with moto

        name = f"tradelake-{uuid.uuid4().hex[:12]}"
        boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        ).create_bucket(Bucket=name)
        return name

    def lake_env(self, bucket: str, prefix: str = "lake") -> dict[str, str]:
        """The environment a user sets for a lake at ``s3://bucket/prefix`` on this server."""
        return {
            "TRADELAKE_LAKE_URL": f"s3://{bucket}/{prefix}",
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": REGION,
            "AWS_ALLOW_HTTP": "true",  # the loopback server speaks plain HTTP
            "AWS_CONDITIONAL_PUT": "etag",  # commits by conditional put: safe with concurrent writers
            **CREDENTIALS,
        }

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
