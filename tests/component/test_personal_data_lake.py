"""Personal data and the lake: the lake records its personal-data key's fingerprint (another
key is refused, rotation is explicit), and what the router writes for real contracts holds
none in clear, whichever column or shape it comes in, in time linear in the record."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from pipelines.contracts import load_contracts
from pipelines.errors import TradelakeError
from pipelines.lake.schemas import PII_KEYS_SCHEMA, PII_KEYS_TABLE
from pipelines.lake.tables import Lake
from pipelines.pii_key import fingerprint, recorded_fingerprint, rotate, verify
from pipelines.settings import Settings
from tests.component.contract_seeds import route, seeds

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


def test_the_current_key_is_the_one_of_the_latest_batch_whatever_the_clocks_said(tmp_path: Path):
    """A first use recorded by a machine whose clock ran a day ahead, then a rotation: the
    rotation's key is the lake's from its batch on, though its ``since`` is earlier."""
    lake = Lake(_settings(tmp_path, FIRST).lake)
    lake.ensure(PII_KEYS_TABLE, PII_KEYS_SCHEMA)
    now = datetime.now(UTC)
    rows = [
        {
            "fingerprint": fingerprint(FIRST.encode()),
            "since": now + timedelta(days=1),
            "from_batch": 1,
            "reason": "first use",
        },
        {"fingerprint": fingerprint(SECOND.encode()), "since": now, "from_batch": 5, "reason": "rotated"},
    ]
    lake.append(PII_KEYS_TABLE, pa.Table.from_pylist(rows, schema=PII_KEYS_SCHEMA), [])
    assert recorded_fingerprint(lake) == fingerprint(SECOND.encode())
    verify(lake, SECOND.encode(), 6)
    with pytest.raises(TradelakeError, match="is not the key of the lake"):
        verify(lake, FIRST.encode(), 6)


NAME, MAIL, PHONE = "Jane Doe", "jane.doe@example.com", "+1 415 555 0100"


def _cancelled(**fields: object) -> bytes:
    return orjson.dumps(seeds()[("marketplace.jobs__job.cancelled.v1", "")] | fields)


def test_text_columns_no_rule_confines_land_masked():
    """The reviewer's record: an e-mail address and a phone number in ``reason`` and in an id."""
    routed = route(
        load_contracts()["marketplace.jobs"], [_cancelled(reason=f"customer {NAME} {MAIL} {PHONE}", customer_id=MAIL)]
    )
    assert routed.landed.select(["reason", "customer_id"]).to_pylist() == [
        {"reason": f"customer {NAME} <email> <phone>", "customer_id": "<email>"}
    ]
    confined = route(load_contracts()["marketplace.jobs"], [_cancelled()]).landed
    assert confined["event_time"].to_pylist() == [seeds()[("marketplace.jobs__job.cancelled.v1", "")]["event_time"]]


def test_a_cdc_object_that_arrives_as_a_list_is_quarantined_hashed():
    values = [
        orjson.dumps({"before": None, "after": [NAME, MAIL, PHONE], "op": "c", "ts_ms": 1}),
        orjson.dumps({"before": None, "after": [["full_name", NAME], ["email", MAIL]], "op": "c", "ts_ms": 1}),
        b'{"before":null,"after":{"customer_id":"cus_1","full_\\u006eame":"Jane Doe","region":',
    ]
    for topic in ("cdc.public.customers", "marketplace.jobs"):  # a CDC row on any topic
        raw = b" ".join(route(load_contracts()[topic], values).quarantined["raw"].to_pylist())
        assert b"Jane" not in raw and b"jane" not in raw and b"555" not in raw, raw


def test_a_megabyte_reason_is_routed_in_linear_time():
    """A quarantined record's raw bytes are redacted in time linear in their size: 10x the
    bytes, ~10x the time (30x allows for noise), never the square (a 20 KB reason took 25 s)."""
    contracts = load_contracts()["marketplace.jobs"]

    def seconds(size: int) -> float:
        value = _cancelled(reason="a" * size, schema_version="1")  # a string version: quarantined
        start = time.perf_counter()
        routed = route(contracts, [value])
        assert len(routed.quarantined) == 1
        return time.perf_counter() - start

    small = min(seconds(100_000) for _ in range(3))
    large = min(seconds(1_000_000) for _ in range(3))
    assert large / small < 30, f"1 MB took {large / small:.0f}x the time of 100 KB"
