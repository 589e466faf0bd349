"""A record that is not UTF-8 is flagged alone; its neighbours keep their text."""

from __future__ import annotations

import duckdb
import pyarrow as pa

from pipelines.landing.router import _utf8_text


def test_one_bad_record_among_thousands_is_the_only_one_flagged():
    values = [f'{{"n":{i}}}'.encode() for i in range(10_000)]
    values[5_003] = b'{"name":"\xff"}'
    values[9_999] = None
    text, utf8 = _utf8_text(pa.array(values, pa.binary()))
    assert utf8.to_pylist() == [i != 5_003 for i in range(10_000)]
    expected = [None if i in (5_003, 9_999) else f'{{"n":{i}}}' for i in range(10_000)]
    assert text.to_pylist() == expected


def test_valid_values_are_cast_without_a_copy_and_empty_or_null_batches_work():
    values = pa.array([b'{"a":1}', None, b"[]"], pa.binary())
    text, utf8 = _utf8_text(values)
    assert text.buffers()[2].address == values.buffers()[2].address
    assert text.to_pylist() == ['{"a":1}', None, "[]"] and utf8.to_pylist() == [True, True, True]
    for edge in (pa.array([], pa.binary()), pa.nulls(3, pa.binary())):
        text, utf8 = _utf8_text(edge)
        assert text.type == pa.string() and len(text) == len(utf8) == len(edge)


def test_bad_records_are_hidden_as_nulls_over_the_same_buffers():
    """Not a copy of the batch's values: the text shares their buffers, the records that are
    not UTF-8 hidden by the validity bitmap, which Arrow's validation and DuckDB both honour."""
    values = pa.array([b'{"a":1}', b"\xff\xfe", None, b'"x"'] * 3000, pa.binary()).slice(5)
    text, utf8 = _utf8_text(values)
    assert text.buffers()[2].address == values.buffers()[2].address
    text.validate(full=True)
    originals = values.to_pylist()
    assert utf8.to_pylist() == [v != b"\xff\xfe" for v in originals]
    expected = [None if v in (None, b"\xff\xfe") else v.decode() for v in originals]
    assert text.to_pylist() == expected
    con = duckdb.connect()
    con.register("t", pa.table({"v": text}))
    assert con.execute("select count(v), count(*) filter (where v is null) from t").fetchone() == (
        sum(e is not None for e in expected),
        sum(e is None for e in expected),
    )
