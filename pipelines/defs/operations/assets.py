"""``tradelake publish`` as an asset: the derived events sent to Kafka after the ops marts build.

It sits in the ``operations`` group, downstream of the three ops change models, so a run that
builds them can publish what they list; ``tradelake run`` publishes after every build and
reports it here as a runless materialization (``pipelines.record.Recorder.publish``).
"""

import dagster as dg

from pipelines.defs.resources import TradelakeResource
from pipelines.publish import CHANGES, PublishResult, publish

PUBLISH_KEY = dg.AssetKey(["ops", "published_events"])
PUBLISHED_TABLE_KEY = dg.AssetKey(["lake", "published"])  # the dbt source lake.published
OPERATIONS_GROUP = "operations"
CHANGE_MODELS = [dg.AssetKey(model.split(".")) for model, _ in CHANGES.values()]


def publish_metadata(result: PublishResult) -> dict[str, dg.MetadataValue]:
    return {
        "events": dg.MetadataValue.int(result.total),
        **{f"events/{topic}": dg.MetadataValue.int(n) for topic, n in result.published.items()},
        "recovered": dg.MetadataValue.int(result.recovered),
        "already_published": dg.MetadataValue.int(result.skipped),
        "run_id": dg.MetadataValue.int(result.run_id),
    }


# The lake's _published table, which the change models read (what was already announced). Written
# by the publish below, but declared apart: as its asset, the graph would have a cycle.
published_table = dg.AssetSpec(
    PUBLISHED_TABLE_KEY,
    group_name=OPERATIONS_GROUP,
    kinds={"delta"},
    description="The lake's `_published` table: every derived event sent, written by `ops/published_events`.",
)


@dg.asset(
    key=PUBLISH_KEY,
    group_name=OPERATIONS_GROUP,
    deps=CHANGE_MODELS,
    kinds={"kafka", "delta"},
    description=(
        "Derived events published exactly once to notifications.customer, finance.reconciliation_breaks and "
        "rankings.changes (a transactional producer; what was sent recorded in the lake's `_published` table)."
    ),
    tags={"tradelake/layer": "publish"},
)
def published_events(context: dg.AssetExecutionContext, tradelake: TradelakeResource) -> dg.MaterializeResult:
    result = publish(tradelake.settings())
    context.log.info(result.summary())
    return dg.MaterializeResult(metadata=publish_metadata(result))
