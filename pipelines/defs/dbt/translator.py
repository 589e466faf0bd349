"""From dbt nodes to assets: relations as keys, the ONE folder rule for groups, sources as the
landing assets, the freshness policy on the marts.

Asset keys are the relations themselves, ``<schema>/<model>`` (``staging/stg_fleet__gps``,
``pricing/price_bands`` …). One rule maps a model to its group: the folder the model file is
in (``models/staging`` → ``staging``, ``models/marts/finance`` → ``finance``), which the
project also uses as the relation's schema. dbt sources are the landing assets: a source
table whose ``meta.topic`` names a Kafka topic is ``landing/<topic>``, and the lake's own
tables (source ``lake``) are ``landing/batches`` and ``landing/quarantine``, so the global
graph reads topic → staging → dimensions/marts. A model file added under ``dbt/models/``
shows up with no Python change (the manifest is re-parsed whenever the project changed).
Models under ``models/marts/`` are tagged ``tradelake/layer=mart`` and carry the marts'
freshness policy (``pipelines.defs.automation.freshness``).
"""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtProject

from pipelines.defs.automation.freshness import mart_freshness_policy
from pipelines.defs.landing.assets import BATCHES_KEY, QUARANTINE_KEY, topic_key

LAYER_TAG = "tradelake/layer"
MART_LAYER = "mart"
DEFAULT_GROUP = "dbt"
# The lake's bookkeeping tables, declared in the dbt source named "lake".
LAKE_SOURCES = {"batches": BATCHES_KEY, "quarantine": QUARANTINE_KEY}


def model_folder(dbt_resource_props: Mapping[str, Any]) -> str:
    """The folder the model's file is in (fqn = [project, *folders, name]); root models: ``dbt``."""
    fqn = dbt_resource_props.get("fqn", [])
    return str(fqn[-2]) if len(fqn) > 2 else DEFAULT_GROUP


class TradelakeDbtTranslator(DagsterDbtTranslator):
    """Relations as keys, folders as groups, sources as the landing assets, fresh marts.

    ``mart_freshness``: the marts' policy (default: ``mart_freshness_policy``'s default SLO).
    """

    def __init__(
        self,
        settings: DagsterDbtTranslatorSettings | None = None,
        mart_freshness: dg.FreshnessPolicy | None = None,
    ) -> None:
        super().__init__(settings)
        self.mart_freshness = mart_freshness or mart_freshness_policy({})

    def get_asset_spec(self, manifest: Mapping[str, Any], unique_id: str, project: DbtProject | None) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        if spec.tags.get(LAYER_TAG) == MART_LAYER:
            spec = dg.apply_freshness_policy(spec, self.mart_freshness)
        return spec

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            meta = {**(dbt_resource_props.get("config") or {}).get("meta", {}), **dbt_resource_props.get("meta", {})}
            if meta.get("topic"):
                return topic_key(str(meta["topic"]))
            if dbt_resource_props["source_name"] == "lake" and dbt_resource_props["name"] in LAKE_SOURCES:
                return LAKE_SOURCES[dbt_resource_props["name"]]
            return super().get_asset_key(dbt_resource_props)
        return dg.AssetKey([dbt_resource_props["schema"], dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return model_folder(dbt_resource_props)

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        fqn = dbt_resource_props.get("fqn", [])
        layer = MART_LAYER if len(fqn) > 2 and fqn[1] == "marts" else model_folder(dbt_resource_props)
        return {**super().get_tags(dbt_resource_props), LAYER_TAG: layer}
