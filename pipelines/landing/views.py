"""Views of a batch's values that share its buffers instead of copying them.

A 50,000-record GPS batch is ~14 MiB of values; each copy of them (a cast that had to be
redone in chunks, a ``take`` of the values the fast path reads) was one more batch-sized
allocation alive while the batch routes, and two batches route at once (docs/benchmarks.md,
2026-12-04). Hiding values behind the validity bitmap costs a bitmap, not a copy.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa


def only_valid(values: pa.Array, keep: np.ndarray, as_type: pa.DataType | None = None) -> pa.Array:
    """``values`` with every slot ``keep`` is False at made null, over the same offsets and
    data buffers (``as_type``: the same layout under another type, binary as string).

    A null slot's bytes are never read as a value (Arrow's full validation and DuckDB's
    import skip them), so a slot holding bytes that are not UTF-8 may be hidden this way in
    a string array. ``keep`` must be False where ``values`` is null.
    """
    bits = np.zeros(values.offset + len(values), np.bool_)
    bits[values.offset :] = keep
    validity = pa.py_buffer(np.packbits(bits, bitorder="little"))
    return pa.Array.from_buffers(
        as_type or values.type, len(values), [validity, *values.buffers()[1:]], offset=values.offset
    )
