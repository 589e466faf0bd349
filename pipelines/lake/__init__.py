"""The lake: Delta Lake tables, the one commit point every reader goes through.

``schemas`` defines the tables' columns, ``location`` where the lake lives (a folder or an
``s3://`` URL), ``tables`` is the only module that knows Delta (writes, committed offsets,
reads of the lake's own tables), ``duckdb_delta`` lets DuckDB read the tables through their
Delta log, and ``maintain`` compacts, checkpoints and vacuums them.
"""
