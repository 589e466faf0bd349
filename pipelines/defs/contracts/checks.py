"""Contract checks: per topic, a blocking asset check over the run's validation results.

Landing routes every record through the topic's contracts (GX suites in ``expectations/``)
and commits, per micro-batch and topic, the validation result in the ``validation`` column of
the topic's ``_batches`` rows (the same JSON on each partition's row): for each suite the
rows it judged and, per rule, the rows that broke it, its severity and its ``mostly``. The
check of a topic reads the validation results of the batches its latest materialization
wrote (``first_batch``…``last_batch`` in the landing metadata) and fails with severity ERROR
when a critical rule was broken by a larger share of rows than ``1 - mostly`` allows, so that
the dbt assets downstream do not build on that run (the check is *blocking*). Records that
failed are in quarantine either way; this check asks whether the batch as a whole is fit.

On evidence, not on noise: a rule fails when the lower bound of the one-sided Wilson interval
of its unexpected share (``ContractPolicy.confidence``, default 95 %) exceeds ``1 - mostly``.
On a large batch that is the plain share; on a rare event type it keeps one bad record out of
eleven (quarantined all the same) from stopping every mart, while four out of five still
fail. ``confidence = 0`` gives GX's plain rule (share > 1 - mostly).

A rule's ``mostly`` comes from the contract model (pipelines.contracts): its own, else
``DEFAULT_MOSTLY``, the one default the validation summary uses too. Records no suite could
judge (not UTF-8, not strict JSON, no contract for their event type and version) count
against their structural rule, with ``DEFAULT_MOSTLY``, over every record of the topic. A
warning-severity rule beyond its ``mostly`` makes the check fail with severity WARN, which
does not block.
"""

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

import dagster as dg

from pipelines.catalog import TOPIC_NAMES
from pipelines.contracts import DEFAULT_MOSTLY, load_contracts
from pipelines.defs.landing.assets import TOPIC_BY_KEY, topic_key
from pipelines.defs.resources import ContractPolicy, TradelakeResource
from pipelines.lake.schemas import BATCHES_TABLE
from pipelines.lake.tables import Lake

CHECK_NAME = "contract"
STRUCTURAL = "(structure)"  # the "suite" of records no suite could judge
_EPSILON = 1e-12


def wilson_lower_bound(unexpected: int, judged: int, confidence: float) -> float:
    """One-sided lower confidence bound of a share (Wilson score interval); the share itself at 0."""
    if judged <= 0:
        return 0.0
    p = unexpected / judged
    if confidence <= 0:
        return p
    z = NormalDist().inv_cdf(confidence)
    centre = p + z * z / (2 * judged)
    spread = z * math.sqrt(p * (1 - p) / judged + z * z / (4 * judged * judged))
    return max(0.0, (centre - spread) / (1 + z * z / judged))


@dataclass(frozen=True)
class RuleOutcome:
    suite: str
    rule: str
    severity: str
    mostly: float
    unexpected: int
    judged: int
    confidence: float = 0.0

    @property
    def share(self) -> float:
        return self.unexpected / self.judged if self.judged else 0.0

    @property
    def lower_bound(self) -> float:
        return wilson_lower_bound(self.unexpected, self.judged, self.confidence)

    @property
    def allowed(self) -> float:
        return 1.0 - self.mostly

    @property
    def failed(self) -> bool:
        return self.judged > 0 and self.lower_bound > self.allowed + _EPSILON

    @property
    def critical(self) -> bool:
        return self.severity.lower() == "critical"


@dataclass
class ContractEvaluation:
    """A topic's contract results over some batches."""

    topic: str
    batches: list[int] = field(default_factory=list)
    records: int = 0
    landed: int = 0
    quarantined: int = 0
    rules: list[RuleOutcome] = field(default_factory=list)

    @property
    def failing(self) -> list[RuleOutcome]:
        return [r for r in self.rules if r.failed]

    @property
    def passed(self) -> bool:
        return not self.failing

    @property
    def severity(self) -> dg.AssetCheckSeverity:
        if any(r.critical for r in self.failing):
            return dg.AssetCheckSeverity.ERROR
        return dg.AssetCheckSeverity.WARN

    def describe(self) -> str:
        if not self.batches:
            return f"{self.topic}: no new batch in the latest landing run; nothing to judge"
        span = f"batch {self.batches[0]}" + (f"–{self.batches[-1]}" if len(self.batches) > 1 else "")
        if self.passed:
            return (
                f"{self.topic}, {span}: every contract rule within its mostly "
                f"({self.quarantined:,} of {self.records:,} records quarantined)"
            )
        worst = max(self.failing, key=lambda r: (r.critical, r.share - r.allowed))
        return (
            f"{self.topic}, {span}: {len(self.failing)} rule(s) broken beyond their mostly, e.g. "
            f"{worst.suite}: '{worst.rule}' broken by {worst.unexpected:,} of {worst.judged:,} rows "
            f"({worst.share:.1%}), more than the {worst.allowed:.1%} allowed"
        )

    def metadata(self, policy: ContractPolicy) -> dict[str, Any]:
        failing = sorted(self.failing, key=lambda r: (not r.critical, -(r.share - r.allowed)))
        broken = sorted((r for r in self.rules if r.unexpected), key=lambda r: -r.unexpected)
        return {
            "batches": dg.MetadataValue.json(self.batches),
            "records": dg.MetadataValue.int(self.records),
            "landed": dg.MetadataValue.int(self.landed),
            "quarantined": dg.MetadataValue.int(self.quarantined),
            "failing_rules": dg.MetadataValue.int(len(failing)),
            "failures": dg.MetadataValue.md(_rules_table(failing) if failing else "No rule beyond its `mostly`."),
            "unexpected_by_rule": dg.MetadataValue.json({f"{r.suite}: {r.rule}": r.unexpected for r in broken}),
            "policy": dg.MetadataValue.text(
                f"mostly {DEFAULT_MOSTLY:g} for rules without their own; "
                f"fail at {policy.confidence:.0%} one-sided confidence (Wilson lower bound)"
            ),
        }


def _rules_table(rules: Iterable[RuleOutcome]) -> str:
    lines = [
        "| suite | rule | severity | unexpected | judged | share | share, lower bound | allowed |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rules:
        rule = r.rule.replace("|", "\\|")
        lines.append(
            f"| {r.suite} | {rule} | {r.severity} | {r.unexpected:,} | {r.judged:,} | {r.share:.2%} "
            f"| {r.lower_bound:.2%} | {r.allowed:.2%} |"
        )
    return "\n".join(lines)


def mostly_by_rule() -> dict[tuple[str, str], float]:
    """(suite, rule) → the rule's ``mostly`` in the current contract files (its own or the default)."""
    return {(c.name, r.name): r.mostly for tc in load_contracts().values() for c in tc.contracts for r in c.rules}


Validation = tuple[int, Mapping[str, Any]]  # batch id, the topic's validation result in that batch


def read_validations(lake: Lake, topic: str, batches: tuple[int, int] | None) -> list[Validation]:
    """The topic's committed validation results of the batches ``first``…``last``, one per batch
    (the same JSON is on each partition's row of the batch)."""
    if batches is None:
        return []
    first, last = batches
    quoted = topic.replace("'", "''")
    rows = lake.read(
        BATCHES_TABLE,
        ["batch_id", "validation"],
        where=f"topic = '{quoted}' and batch_id between {int(first)} and {int(last)}",
    )
    if rows is None:
        return []
    by_batch = dict(zip(rows["batch_id"].to_pylist(), rows["validation"].to_pylist(), strict=True))
    return [(b, json.loads(by_batch[b])) for b in sorted(by_batch)]


def evaluate_contract(
    topic: str,
    validations: Iterable[Validation],
    declared: Mapping[tuple[str, str], float],
    default_mostly: float = DEFAULT_MOSTLY,
    confidence: float = 0.0,
) -> ContractEvaluation:
    """Sum a topic's per-rule results over batches and judge each rule against its mostly
    (``declared``, from mostly_by_rule; ``default_mostly`` for a rule no longer in the files
    and for the structural rules)."""
    result = ContractEvaluation(topic)
    judged: dict[str, int] = defaultdict(int)
    unexpected: dict[tuple[str, str], int] = defaultdict(int)
    severity: dict[tuple[str, str], str] = {}
    structural: dict[str, int] = defaultdict(int)
    for batch_id, entry in validations:
        result.batches.append(batch_id)
        result.landed += int(entry.get("landed", 0))
        result.quarantined += int(entry.get("quarantined", 0))
        result.records += int(entry.get("landed", 0)) + int(entry.get("quarantined", 0))
        for suite in entry.get("suites", []):
            name = suite["suite"]
            judged[name] += int(suite["statistics"]["evaluated_rows"])
            for r in suite["results"]:
                key = (name, r["rule"])
                unexpected[key] += int(r["unexpected_count"])
                severity[key] = str(r.get("severity", "critical"))
        for rule, n in (entry.get("no_contract") or {}).items():
            structural[rule] += int(n)
    result.batches.sort()
    for (suite, rule), n in sorted(unexpected.items()):
        mostly = declared.get((suite, rule), default_mostly)
        result.rules.append(RuleOutcome(suite, rule, severity[(suite, rule)], mostly, n, judged[suite], confidence))
    for rule, n in sorted(structural.items()):
        result.rules.append(RuleOutcome(STRUCTURAL, rule, "critical", default_mostly, n, result.records, confidence))
    return result


def _batches_of_latest_landing(instance: dg.DagsterInstance, key: dg.AssetKey) -> tuple[int, int] | None:
    """The first and last batch the asset's latest materialization committed (None: none)."""
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    md = event.asset_materialization.metadata
    if "first_batch" not in md or "last_batch" not in md:
        return None
    return int(md["first_batch"].value), int(md["last_batch"].value)


@dg.multi_asset_check(
    name="contract_checks",
    specs=[
        dg.AssetCheckSpec(
            CHECK_NAME,
            asset=topic_key(topic),
            blocking=True,
            description=(
                f"Data contract of `{topic}` over the batches of its latest landing run: fails (ERROR, blocking "
                "the dbt models downstream) when a critical rule is broken by more rows than its `mostly` allows."
            ),
        )
        for topic in TOPIC_NAMES
    ],
    can_subset=True,
)
def contract_checks(
    context: dg.AssetCheckExecutionContext, tradelake: TradelakeResource, contract_policy: ContractPolicy
) -> Iterator[dg.AssetCheckResult]:
    lake = Lake(tradelake.settings().lake)
    declared = mostly_by_rule()
    for check_key in sorted(context.selected_asset_check_keys, key=lambda k: k.asset_key.to_user_string()):
        topic = TOPIC_BY_KEY[check_key.asset_key]
        batches = _batches_of_latest_landing(context.instance, check_key.asset_key)
        evaluation = evaluate_contract(
            topic,
            read_validations(lake, topic, batches),
            declared,
            confidence=contract_policy.confidence,
        )
        context.log.info(evaluation.describe())
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=CHECK_NAME,
            passed=evaluation.passed,
            severity=evaluation.severity,
            description=evaluation.describe(),
            metadata=evaluation.metadata(contract_policy),
        )
