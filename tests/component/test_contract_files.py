"""`tradelake contracts check` refuses unsound contract files with a message naming the file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipelines.contracts.check import check_contracts
from pipelines.contracts.suites import default_contracts_dir
from pipelines.errors import TradelakeError

GPS = Path("fleet.gps") / "gps.ping.v1.json"


@pytest.fixture
def contracts(tmp_path: Path) -> Path:
    copy = tmp_path / "expectations"
    shutil.copytree(default_contracts_dir(), copy)
    return copy


def _edit(contracts: Path, change) -> None:
    path = contracts / GPS
    suite = json.loads(path.read_text())
    change(suite)
    path.write_text(json.dumps(suite))


def test_the_shipped_contracts_pass(contracts: Path):
    assert check_contracts(contracts).startswith("contracts ok:")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["expectations"][0]["meta"].pop("rule"), "has no meta.rule"),
        (lambda s: s["expectations"][0]["meta"].update(rule="lat\x1fis a number"), "control characters"),
        (lambda s: s["expectations"].append({**s["expectations"][0]}), "duplicate rule names"),
        (
            lambda s: s["expectations"].append(
                {"type": "expect_column_values_to_be_unique", "kwargs": {"column": "lat"}, "meta": {"rule": "unique"}}
            ),
            "not supported by the landing router",
        ),
    ],
)
def test_an_unsound_suite_is_refused_naming_its_file(contracts: Path, change, message: str):
    _edit(contracts, change)
    with pytest.raises(TradelakeError, match=message) as refused:
        check_contracts(contracts)
    assert "gps.ping.v1.json" in str(refused.value)
