"""What the landing process (``tradelake ingest``) sets up before its libraries load.

Landing's peak RSS is bounded (issues 11 and 16: ≤ 512 MB at a 2M-record backlog), and two things would
otherwise take a share of it without doing any work:

- **pandas.** Landing never uses it, but pyarrow imports it when it builds an array from a
  Python list (to check for pandas objects) and DuckDB imports it on ``register``. The import
  costs ~35-45 MiB resident. Both libraries treat ``ModuleNotFoundError`` as "pandas is not
  installed" and carry on, so the landing process refuses the import.
- **delta-rs's jemalloc**, configured through the environment before ``deltalake`` loads
  (``allocators.tune_delta_allocator``).
"""

from __future__ import annotations

import importlib.abc
import sys
from collections.abc import Sequence
from types import ModuleType

from pipelines.landing.allocators import tune_delta_allocator

REFUSED = "pandas"


class _Refuse(importlib.abc.MetaPathFinder):
    """Fails the import of pandas (and its submodules) as if it were not installed."""

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None) -> None:
        if fullname == REFUSED or fullname.startswith(REFUSED + "."):
            raise ModuleNotFoundError(f"No module named {fullname!r} (not loaded by tradelake ingest)", name=fullname)
        return None


def refuse_pandas() -> None:
    """Make ``import pandas`` fail in this process from now on (once it is loaded, it stays)."""
    if REFUSED not in sys.modules and not any(isinstance(f, _Refuse) for f in sys.meta_path):
        sys.meta_path.insert(0, _Refuse())


def prepare_landing_process() -> None:
    """Called first by ``tradelake ingest``, before the landing modules are imported."""
    tune_delta_allocator()
    refuse_pandas()
