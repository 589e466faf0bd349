"""``tradelake contracts docs``: GX Data Docs for the contract suites.

Rendered by Great Expectations itself from the same JSON the router compiles, so the pages a
producer team reads are the rules that decide what lands.
"""

from __future__ import annotations

from pathlib import Path

import great_expectations as gx

from pipelines.contracts.suites import load_contracts


def build_contract_docs(target: Path, contracts_dir: Path | None = None) -> Path:
    """Write the Data Docs site to ``target``; return the path of its index.html."""
    context = gx.get_context(mode="ephemeral")
    context.add_data_docs_site(
        site_name="contracts",
        site_config={
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(target)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    for topic in load_contracts(contracts_dir).values():
        for contract in topic.contracts:
            context.suites.add(gx.ExpectationSuite(**contract.suite))
    context.build_data_docs(site_names=["contracts"])
    return target / "index.html"
