"""The lake records its personal-data key's fingerprint; another key is refused, rotation is explicit."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.errors import TradelakeError
from pipelines.lake.schemas import PII_KEYS_TABLE
from pipelines.lake.tables import Lake
from pipelines.pii_key import fingerprint, rotate, verify
from pipelines.settings import Settings

FIRST = "first-personal-data-key-0123456789"
SECOND = "second-personal-data-key-987654321"


def _settings(home: Path, key: str | None) -> Settings:
    return Settings.load(env={"TRADELAKE_PII_KEY": key} if key else {}, home=str(home))


def _rows(settings: Settings) -> list[dict]:
    table = Lake(settings.lake).read(PII_KEYS_TABLE, ["fingerprint", "from_batch", "reason", "since"])
    return [{k: v for k, v in r.items() if k != "since"} for r in table.sort_by("since").to_pylist()]


def test_a_different_key_on_an_existing_lake_is_refused_until_rotated(tmp_path: Path):
    first = _settings(tmp_path, FIRST)
    lake = Lake(first.lake)
    verify(lake, first.personal_data_key(), 1)
    verify(lake, first.personal_data_key(), 4)  # the same key again: nothing to record
    assert _rows(first) == [{"fingerprint": fingerprint(FIRST.encode()), "from_batch": 1, "reason": "first use"}]

    second = _settings(tmp_path, SECOND)
    with pytest.raises(TradelakeError, match=r"is not the key of the lake at .*tradelake pii-key rotate") as e:
        verify(lake, second.personal_data_key(), 5)
    message = str(e.value)
    assert "\n" not in message and FIRST not in message and SECOND not in message
    assert fingerprint(FIRST.encode())[:12] in message, "the lake's key is named by its fingerprint"

    assert "from batch 1 on" in rotate(second)  # no batch landed yet: _batches does not exist
    assert _rows(second)[-1] == {"fingerprint": fingerprint(SECOND.encode()), "from_batch": 1, "reason": "rotated"}
    verify(lake, second.personal_data_key(), 5)
    with pytest.raises(TradelakeError, match="is not the key of the lake"):
        verify(lake, first.personal_data_key(), 5)
    with pytest.raises(TradelakeError, match="holds the lake's key already"):
        rotate(second)


def test_rotating_the_home_key_file_writes_a_new_key(tmp_path: Path):
    settings = _settings(tmp_path, None)
    old = settings.personal_data_key()
    verify(Lake(settings.lake), old, 1)
    message = rotate(settings)
    new = (tmp_path / "pii.key").read_bytes()
    assert new != old and len(new) == 64 and (tmp_path / "pii.key").stat().st_mode & 0o777 == 0o600
    assert str(tmp_path / "pii.key") in message and new.decode() not in message
    verify(Lake(settings.lake), settings.personal_data_key(), 2)
    assert [r["reason"] for r in _rows(settings)] == ["first use", "rotated"]


def test_an_interrupted_rotation_is_finished_by_rotating_again(tmp_path: Path):
    """The key file was replaced but the lake not told (a crash between the two): rotate records it."""
    settings = _settings(tmp_path, None)
    verify(Lake(settings.lake), settings.personal_data_key(), 1)
    (tmp_path / "pii.key").write_bytes(b"r" * 64)
    with pytest.raises(TradelakeError, match="is not the key of the lake"):
        verify(Lake(settings.lake), settings.personal_data_key(), 2)
    rotate(settings)
    assert (tmp_path / "pii.key").read_bytes() == b"r" * 64, "the file's key is the one recorded"
    verify(Lake(settings.lake), b"r" * 64, 2)


def test_rotating_without_a_lake_is_refused(tmp_path: Path):
    with pytest.raises(TradelakeError, match=r"no lake at .* yet"):
        rotate(_settings(tmp_path, FIRST))


def test_the_fingerprint_lives_with_a_lake_on_s3(tmp_path: Path, s3_env: dict[str, str]):
    """Two homes on one S3 lake: the second one's own key is refused by what the first recorded."""
    first = Settings.load(env={**s3_env, "TRADELAKE_PII_KEY": FIRST}, home=str(tmp_path / "one"))
    verify(Lake(first.lake), first.personal_data_key(), 1)
    other_home = Settings.load(env=s3_env, home=str(tmp_path / "two"))  # generates its own pii.key
    with pytest.raises(TradelakeError, match=r"is not the key of the lake at s3://"):
        verify(Lake(other_home.lake), other_home.personal_data_key(), 1)
