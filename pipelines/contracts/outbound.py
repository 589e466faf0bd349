"""The contracts of the derived events tradelake publishes back to Kafka (``tradelake publish``):
GX suites in ``expectations/derived/<topic>/<event_type>.v<N>.json``, in the format of the
inbound ones, parsed by the same loader. They live apart because landing never reads these
topics: ``load_contracts`` keeps to the catalog's topics.
"""

from __future__ import annotations

from pathlib import Path

from pipelines.contracts.suites import TopicContracts, default_contracts_dir, load_suite
from pipelines.errors import TradelakeError

OUTBOUND_TOPICS: tuple[str, ...] = ("notifications.customer", "finance.reconciliation_breaks", "rankings.changes")


def load_outbound_contracts(directory: Path | None = None) -> dict[str, TopicContracts]:
    """Every outbound topic's contracts (each topic must have at least one suite)."""
    root = (directory or default_contracts_dir()).resolve() / "derived"
    found: dict[str, list] = {t: [] for t in OUTBOUND_TOPICS}
    for path in sorted(root.glob("*/*.json")):
        contract = load_suite(path)
        if contract.topic not in found:
            raise TradelakeError(f"{path}: meta.topic {contract.topic!r} is not a topic tradelake publishes")
        found[contract.topic].append(contract)
    if missing := [t for t, suites in found.items() if not suites]:
        raise TradelakeError(f"no contract for the derived topic(s) {', '.join(missing)} under {root}")
    return {t: TopicContracts(t, False, tuple(suites)) for t, suites in found.items()}
