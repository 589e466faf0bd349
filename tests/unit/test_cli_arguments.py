"""Every numeric flag is checked by the parser: a bad value is one line, before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli_errors import assert_one_line_error
from tests.conftest import run_cli

BAD_FLAGS = [
    (["ingest", "--once", "--batch-size", "0"], "--batch-size: '0' is not a whole number at least 1"),
    (["ingest", "--once", "--batch-size", "-5"], "--batch-size: '-5' is not a whole number at least 1"),
    (["ingest", "--once", "--flush-interval", "nan"], "--flush-interval: 'nan' is not a number above 0"),
    (["ingest", "--once", "--flush-interval", "0"], "--flush-interval"),
    (["simulate", "--events", "-1"], "--events: '-1' is not a whole number at least 1"),
    (["simulate", "--events", "many"], "--events: 'many' is not a whole number"),
    (["simulate", "--malformed-rate", "5"], "--malformed-rate: '5' is not a number within 0..1"),
    (["simulate", "--rate", "inf"], "--rate: 'inf' is not a number above 0"),
    (["demo", "--events", "0"], "--events"),
    (["ui", "--port", "99999"], "--port: '99999' is not a whole number within 1..65535"),
    (["broker", "--port", "0"], "--port"),
    (["up", "--ui-port", "70000"], "--ui-port"),
    (["up", "--rate", "-1"], "--rate"),
    (["run", "--metrics-port", "-1"], "--metrics-port"),
    (["run", "--debounce", "-1"], "--debounce: '-1' is not a number at least 0"),
    (["run", "--full-build-hour", "24"], "--full-build-hour"),
    (["maintain", "--target-file-mib", "0"], "--target-file-mib"),
    (["maintain", "--retention-hours", "-1"], "--retention-hours"),
    (["export"], "the following arguments are required: mart"),
    (["no-such-command"], "invalid choice"),
]


@pytest.mark.parametrize(("args", "expected"), BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_is_one_line(tmp_path: Path, args: list[str], expected: str):
    result = run_cli(*args, env={"TRADELAKE_HOME": str(tmp_path / "home")})
    assert_one_line_error(result, expected)
    assert result.returncode == 2
    assert not (tmp_path / "home").exists(), "nothing ran"
