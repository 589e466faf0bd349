"""The landing process keeps pandas out and configures delta-rs's jemalloc before it loads.

Each case runs in a fresh interpreter: the test session itself has pandas and deltalake loaded.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from pipelines.landing.allocators import DELTA_JEMALLOC_CONF, DELTA_JEMALLOC_CONF_VARIABLE


def _run(code: str, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if k != DELTA_JEMALLOC_CONF_VARIABLE} | env
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=environ, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_arrow_and_duckdb_work_with_pandas_refused_and_pandas_is_never_loaded():
    out = _run("""
        import sys
        from pipelines.landing.process import prepare_landing_process
        prepare_landing_process()
        import pipelines.landing.ingest  # every landing module
        import duckdb, pyarrow as pa
        table = pa.table({"x": pa.array([1, 2, None]), "s": pa.array(["a", None, "c"])})  # from lists
        con = duckdb.connect()
        con.register("t", table)
        assert con.execute("SELECT sum(x), count(s) FROM t").fetchall() == [(3, 2)]
        assert con.execute("SELECT * FROM t").to_arrow_table().num_rows == 3
        try:
            import pandas
        except ModuleNotFoundError as e:
            print("refused:", e.name)
        print("loaded:", sorted(m for m in sys.modules if m.split(".")[0] == "pandas"))
    """)
    assert out.splitlines() == ["refused: pandas", "loaded: []"]


def test_delta_rs_jemalloc_is_configured_before_deltalake_loads():
    code = """
        import os, sys
        {before}
        from pipelines.landing.process import prepare_landing_process
        prepare_landing_process()
        print(os.environ.get("{name}"))
    """
    name = DELTA_JEMALLOC_CONF_VARIABLE
    assert _run(code.format(before="", name=name)) == DELTA_JEMALLOC_CONF
    assert _run(code.format(before="", name=name), **{name: "narenas:2"}) == "narenas:2"  # the user's own
    # Too late once deltalake is loaded: its allocator has read the environment already.
    assert _run(code.format(before="import deltalake", name=name)) == "None"
