"""Landing dictionary-encodes only the columns that repeat."""

from __future__ import annotations

import pyarrow as pa

from pipelines.landing.files import dictionary_columns


def test_unique_columns_are_not_dictionary_encoded():
    n = 3000
    table = pa.table(
        {
            "event_id": [f"e{i}" for i in range(n)],
            "lat": [i / 7 for i in range(n)],
            "event_type": ["gps.ping", "gps.idle"] * (n // 2),
            "appointment_id": [None] * n,
            "rules": [["rating is between 1 and 5"]] * n,
        }
    )
    assert dictionary_columns(table) == ["event_type", "appointment_id", "rules"]
