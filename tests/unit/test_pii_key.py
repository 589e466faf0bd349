"""The personal-data key file: written atomically, never empty, never too short."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pipelines.errors import TradelakeError
from pipelines.pii_key import MIN_KEY_BYTES, fingerprint, write_key_file
from pipelines.settings import Settings
from tests.conftest import run_cli


def _home(tmp_path: Path) -> Settings:
    return Settings.load(env={}, home=str(tmp_path))


def test_a_generated_key_is_whole_private_and_stable(tmp_path: Path):
    settings = _home(tmp_path)
    key = settings.personal_data_key()
    assert len(key) == 64 and key == settings.personal_data_key()
    assert (tmp_path / "pii.key").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pii.key"], "no temporary file left"


def test_an_empty_key_file_is_refused(tmp_path: Path):
    (tmp_path / "pii.key").write_bytes(b"")
    with pytest.raises(TradelakeError, match=r"pii.key is empty \(0 bytes"):
        _home(tmp_path).personal_data_key()


def test_a_short_key_file_is_refused_without_showing_it(tmp_path: Path):
    (tmp_path / "pii.key").write_bytes(b"s3cr3t\n")
    with pytest.raises(TradelakeError, match=r"pii.key is too short \(6 bytes") as e:
        _home(tmp_path).personal_data_key()
    assert "s3cr3t" not in str(e.value)


@pytest.mark.parametrize("key", ["Q7", "Zq9" * 5])
def test_a_short_environment_key_is_refused_without_showing_it(key: str):
    with pytest.raises(TradelakeError, match=rf"TRADELAKE_PII_KEY is too short \({len(key)} bytes\)") as e:
        Settings.load(env={"TRADELAKE_PII_KEY": key}).personal_data_key()
    assert key not in str(e.value)
    assert Settings.load(env={"TRADELAKE_PII_KEY": "x" * MIN_KEY_BYTES}).personal_data_key() == b"x" * MIN_KEY_BYTES


def test_a_failed_write_leaves_no_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A full disk while the key is written: one clear error, and no (empty) pii.key behind."""

    def disk_full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(TradelakeError, match=r"cannot write the personal-data key .*pii.key: No space left on device"):
        _home(tmp_path).personal_data_key()
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert len(_home(tmp_path).personal_data_key()) == 64, "the next start writes a whole key"


def test_a_key_file_another_process_created_first_is_kept(tmp_path: Path):
    path = tmp_path / "pii.key"
    assert write_key_file(path, b"a" * 32, replace=False)
    assert not write_key_file(path, b"b" * 32, replace=False)
    assert path.read_bytes() == b"a" * 32
    assert write_key_file(path, b"c" * 32, replace=True) and path.read_bytes() == b"c" * 32
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pii.key"]


def test_the_fingerprint_names_the_key_without_being_its_hash():
    import hashlib

    key = b"k" * 32
    assert fingerprint(key) == fingerprint(key) != fingerprint(b"j" * 32)
    assert fingerprint(key) != hashlib.sha256(key).hexdigest()


@pytest.mark.parametrize(("key_file", "env_key"), [(b"", ""), (None, "tiny-key")])
def test_ingest_refuses_a_bad_key_in_one_line(tmp_path: Path, key_file: bytes | None, env_key: str):
    if key_file is not None:
        (tmp_path / "pii.key").write_bytes(key_file)
    env = {"TRADELAKE_HOME": str(tmp_path), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "TRADELAKE_PII_KEY": env_key}
    result = run_cli("ingest", "--once", env=env, timeout=60)
    assert result.returncode != 0
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("tradelake: error: "), result.stderr
    assert "personal-data key" in result.stderr or "TRADELAKE_PII_KEY" in result.stderr
    assert not env_key or env_key not in result.stderr
