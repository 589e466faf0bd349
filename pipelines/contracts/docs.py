"""``tradelake contracts docs``: GX Data Docs for the contract suites.

Rendered by Great Expectations itself from the same JSON the router compiles, so the pages a
producer team reads are the rules that decide what lands. GX's index page fills its list of
suites with JavaScript loaded from CDNs, so offline (or behind a strict proxy) it shows an
empty table; the index is written with that list already in its HTML, one link per suite
page. When the scripts do load, they replace those rows with the same list, sortable.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import great_expectations as gx

from pipelines.contracts.suites import Contract, load_contracts
from pipelines.errors import TradelakeError

# The (empty) table GX's DefaultSiteIndexBuilder writes for the suites.
_SUITES_TABLE = re.compile(r"(<table\s[^>]*ge-index-page-expectation_suites-table[^>]*>)\s*(</table>)")


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
    contracts = [c for topic in load_contracts(contracts_dir).values() for c in topic.contracts]
    for contract in contracts:
        context.suites.add(contract.gx_suite())
    context.build_data_docs(site_names=["contracts"])
    index = target / "index.html"
    index.write_text(_with_static_list(index.read_text(), contracts, target))
    return index


def suite_page(contract: Contract) -> str:
    """The suite's page, relative to the site root, where GX writes it (dots become folders)."""
    return "expectations/" + contract.name.replace(".", "/") + ".html"


def _with_static_list(page: str, contracts: list[Contract], root: Path) -> str:
    rows = []
    for c in sorted(contracts, key=lambda c: c.name):
        link = suite_page(c)
        if not (root / link).is_file():
            raise TradelakeError(f"GX Data Docs wrote no page for {c.name} (expected {root / link})")
        rows.append(f'<tr><td><a href="{html.escape(link)}">{html.escape(c.name)}</a></td></tr>')
    body = "<thead><tr><th>Expectation Suites</th></tr></thead><tbody>" + "".join(rows) + "</tbody>"
    filled, found = _SUITES_TABLE.subn(lambda m: m.group(1) + body + m.group(2), page, count=1)
    if not found:
        raise TradelakeError("GX Data Docs index has no suites table to fill (GX changed its page layout)")
    return filled
