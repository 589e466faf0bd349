"""The contract files and their model: `tradelake contracts check` refuses unsound files naming
the file, and a suite the router's DuckDB cannot run before any record is routed; the model is
re-read when a file changes; warning rules, ``expect_column_to_exist`` and ``mostly`` mean what
they mean in GX; the Data Docs index lists every suite offline."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import orjson
import pytest

from pipelines.contracts import DEFAULT_MOSTLY, load_contracts
from pipelines.contracts.check import check_contracts
from pipelines.contracts.docs import build_contract_docs
from pipelines.contracts.suites import default_contracts_dir
from pipelines.defs.contracts.checks import mostly_by_rule
from pipelines.errors import TradelakeError
from pipelines.landing.committer import TopicBatch
from pipelines.landing.router import TopicRouter
from pipelines.landing.stats import IngestStats
from pipelines.landing.validation import validation_summary
from tests.component.contract_seeds import route, rules_by_offset, seeds
from tests.conftest import run_cli

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


def test_a_broken_derived_event_suite_is_a_contract_problem(contracts: Path):
    path = contracts / "derived" / "rankings.changes" / "top3.left.v1.json"
    suite = json.loads(path.read_text())
    suite["name"] = "wrong"
    path.write_text(json.dumps(suite))
    with pytest.raises(TradelakeError, match=r"suite name should be 'rankings\.changes__top3\.left\.v1'"):
        check_contracts(contracts)


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


@pytest.mark.parametrize(
    ("expectation", "shown"),
    [
        (
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "producer", "regex": "(["},
                "meta": {"rule": "producer is a name"},
            },
            "missing ]",
        ),
        (  # a lookahead: Python's re (GX) compiles it, RE2 (DuckDB, the router) does not
            {
                "type": "expect_column_values_to_match_regex",
                "kwargs": {"column": "producer", "regex": "^(?!test).*$"},
                "meta": {"rule": "producer is no test"},
            },
            "invalid perl operator",
        ),
        (
            {
                "type": "unexpected_rows_expectation",
                "kwargs": {"unexpected_rows_query": "SELECT * FROM {batch} WHERE speed_kph > 300"},
                "meta": {"rule": "speed is plausible"},
            },
            "speed_kph",
        ),
    ],
)
def test_a_suite_duckdb_cannot_run_is_refused_before_any_record_naming_file_and_expectation(
    contracts: Path, expectation: dict, shown: str
):
    """Such a suite loads and GX takes it; it used to pass ``contracts check`` and then fail
    routing with a DuckDB traceback at the first batch."""
    _gps_rule(contracts, expectation)
    where = f"{contracts / GPS} expectation #{len(json.loads((contracts / GPS).read_text())['expectations'])}"
    result = run_cli("contracts", "check", env={"TRADELAKE_CONTRACTS": str(contracts)})
    lines = result.stderr.splitlines()
    assert result.returncode != 0 and len(lines) == 1, result.stderr
    assert lines[0].startswith("tradelake: error:") and where in lines[0] and shown in lines[0], lines[0]
    with pytest.raises(TradelakeError) as refused:  # what `tradelake run` builds first, per topic
        TopicRouter(load_contracts(contracts)["fleet.gps"], b"k")
    assert where in str(refused.value) and shown in str(refused.value)


def test_a_misspelled_topic_is_refused_naming_the_file_and_the_topic(contracts: Path):
    _edit(contracts, lambda s: s["meta"].update(topic="fleet.gsp"))
    for read in (load_contracts, check_contracts):
        with pytest.raises(TradelakeError) as refused:
            read(contracts)
        message = str(refused.value)
        assert "gps.ping.v1.json" in message and "'fleet.gsp'" in message and "\n" not in message


def test_contracts_follow_an_edited_file_without_a_restart(contracts: Path):
    first = load_contracts(contracts)
    assert load_contracts(contracts) is first, "parsed once while the files are unchanged"
    _edit(contracts, lambda s: s["expectations"][0]["meta"].update(rule="event_id is present"))
    edited = load_contracts(contracts)["fleet.gps"].contracts[0]
    assert edited.rules[0].name == "event_id is present"
    assert first["fleet.gps"].contracts[0].rules[0].name != "event_id is present", (
        "a router keeps what it was built with"
    )


def _gps_rule(contracts: Path, expectation: dict) -> None:
    _edit(contracts, lambda s: s["expectations"].append(expectation))


def test_a_warning_rule_is_measured_and_never_quarantines(contracts: Path):
    _gps_rule(
        contracts,
        {
            "type": "expect_column_values_to_be_between",
            "kwargs": {"column": "speed_kmh", "max_value": 80, "mostly": 0.99},
            "meta": {"rule": "speed_kmh is at most 80"},
            "severity": "warning",
        },
    )
    topic = load_contracts(contracts)["fleet.gps"]
    seed = seeds()[("fleet.gps__gps.ping.v1", "")]
    values = [orjson.dumps(dict(seed, speed_kmh=speed)) for speed in (10, 20, 95, 120, 30)]
    routed = route(topic, values)
    assert len(routed.landed) == 5 and len(routed.quarantined) == 0, "warnings never quarantine"
    summary = validation_summary(topic, routed)
    result = next(r for r in summary["suites"][0]["results"] if r["rule"] == "speed_kmh is at most 80")
    assert result["unexpected_count"] == 2 and result["severity"] == "warning" and result["mostly"] == 0.99
    assert not result["success"], "2 of 5 is more than the 1% allowed"
    assert not summary["suites"][0]["success"]
    stats = IngestStats()  # the run's summary and its Dagster metadata: counted, not as quarantine
    stats.add(TopicBatch("fleet.gps", {}, Counter(), Counter(), Counter(), routed.failures, summary))
    assert stats.quarantine_rules["fleet.gps"] == {}
    assert stats.warning_rules["fleet.gps"] == {"speed_kmh is at most 80": 2}


def test_expect_column_to_exist_means_the_key_is_present(contracts: Path):
    _gps_rule(
        contracts,
        {"type": "expect_column_to_exist", "kwargs": {"column": "producer"}, "meta": {"rule": "producer exists"}},
    )
    topic = load_contracts(contracts)["fleet.gps"]
    seed = seeds()[("fleet.gps__gps.ping.v1", "")]
    absent = {k: v for k, v in seed.items() if k != "producer"}
    judged = rules_by_offset(
        route(topic, [orjson.dumps(seed), orjson.dumps(dict(seed, producer=None)), orjson.dumps(absent)])
    )
    assert judged == {0: [], 1: [], 2: ["producer exists"]}, "JSON null exists; an absent key does not"


def test_one_mostly_default_for_the_validation_summary_and_the_dagster_check(contracts: Path):
    _edit(contracts, lambda s: s["expectations"][0]["kwargs"].update(mostly=0.5))
    topic = load_contracts(contracts)["fleet.gps"]
    rules = topic.contracts[0].rules
    assert rules[0].mostly == 0.5 and all(r.mostly == DEFAULT_MOSTLY for r in rules[1:])
    mostly = mostly_by_rule()
    assert all(
        mostly[(c.name, r.name)] == r.mostly for tc in load_contracts().values() for c in tc.contracts for r in c.rules
    )
    seed = seeds()[("fleet.gps__gps.ping.v1", "")]
    summary = validation_summary(topic, route(topic, [orjson.dumps(seed)]))
    assert {r["mostly"] for r in summary["suites"][0]["results"][1:]} == {DEFAULT_MOSTLY}


def test_the_data_docs_index_lists_every_suite_without_javascript(contracts: Path, tmp_path: Path):
    index = build_contract_docs(tmp_path / "docs", contracts)
    page = index.read_text()
    listed = page[page.index("<tbody>") : page.index("</tbody>")]
    for tc in load_contracts(contracts).values():
        for c in tc.contracts:
            link = "expectations/" + c.name.replace(".", "/") + ".html"
            assert f'<a href="{link}">{c.name}</a>' in listed
            assert (index.parent / link).is_file()
