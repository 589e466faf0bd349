"""Run a topic's fast path (pipelines.contracts.fast) on a batch: which rows certainly land.

The typed parse is ``pyarrow.json``'s streaming reader with the plan's explicit schema, over
the candidate values joined by newlines: measured on 200k GPS records, one thread, ~1.3–1.9 µs
per record against ~3.8 µs for DuckDB's ``json_transform_strict`` (which also casts 1.5 to an
integer, 123 to a string and "1" to a number, and ignores undeclared keys: it would need a
type check per field, the parse the routing query already does). Arrow refuses a changed
kind, a key twice, an undeclared key, a trailing comma and numbers beyond double or BIGINT
(docs/decisions.md, "Landing fast path").

Arrow stops a read at the first bad record. A parse error names its row (within its block):
the blocks before it are kept, the lines before it in its block are read again and the rest
after it; an error without a row (a number that does not
convert, an undeclared key) halves the range until it is small, which then goes to the
routing query whole. A candidate is a value that starts with ``{`` and holds no newline,
carriage return or NUL byte, and no second document after its object (TWO_DOCUMENTS), so
that each line is exactly one row: the rows of the blocks read before a refusal are matched
to lines by counting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from pipelines.contracts.fast import FastPlan, typed_schema
from pipelines.landing.views import only_valid

SMALLEST_RANGE = 16  # lines refused without a row, in fewer: they take the routing query whole
BLOCK_BYTES = 1 << 18  # the parse's block: a refused record costs re-reading at most this
MAX_READS = 16  # reads of a batch's lines beyond this plus one per 500 lines: the rest takes the query
# Outside strings, a ``}`` is followed by a comma, ``]``, ``}`` or the end, JSON whitespace
# between. A line with anything else after one may hold a second document (``{…} {…}``,
# ``{…} null {…}``), which the reader takes as more rows and so shifts every row after it.
# The line starts with ``{``, so its first document ends with a ``}``: this finds every such
# line; inside a string it is a false alarm (the record takes the routing query).
TWO_DOCUMENTS = r"\}[ \t]*[^ \t,\]}]"
LINE_BREAKS = r"[\x00\n\r]"  # a value holding one would be more than one line
_ERROR_ROW = re.compile(r"in row (\d+)\s*$")


@dataclass
class FastRows:
    """The rows of a batch the fast path lands (positions in the batch, ascending), their
    typed columns, the suite that judged each and its broken warning rules."""

    positions: np.ndarray
    typed: pa.Table
    judged: pa.Table  # _contract, _warnings


def candidates(text: pa.Array, utf8: pa.Array, misfit: str) -> np.ndarray:
    """Positions of the values the parse may take, one line each: UTF-8 text from ``{`` to
    ``}``, with no newline, carriage return or NUL byte, and not two documents (TWO_DOCUMENTS).
    Values ``misfit`` matches (a field of another kind) would be refused: left out at once.
    One regex pass finds all three (a byte scan in numpy cost more than the regex itself)."""
    ok = pc.and_kleene(utf8, pc.and_kleene(pc.starts_with(text, "{"), pc.ends_with(text, "}")))
    ok = pc.and_kleene(ok, pc.greater_equal(pc.binary_length(text), 2))
    refused = "|".join(p for p in (LINE_BREAKS, TWO_DOCUMENTS, misfit) if p)
    ok = pc.and_kleene(ok, pc.invert(pc.match_substring_regex(text, refused)))
    return np.flatnonzero(pc.fill_null(ok, False).to_numpy(zero_copy_only=False))


def _lines(text: pa.Array, chosen: np.ndarray) -> tuple[pa.Buffer, np.ndarray]:
    """The values at ``chosen`` (ascending positions) as lines in one buffer, and the byte
    offset where each line starts (the last entry: the end).

    The others are hidden as nulls (``views.only_valid``), which add no bytes to the join:
    the values are copied once, into the lines, and not first by a ``take``.
    """
    if len(chosen) < len(text):
        keep = np.zeros(len(text), np.bool_)
        keep[chosen] = True
        text = only_valid(text, keep)
    joined = pc.binary_join_element_wise(text, pa.scalar("\n"), pa.scalar(""))
    offsets = np.frombuffer(joined.buffers()[1], np.int32)[joined.offset : joined.offset + len(joined) + 1]
    if len(chosen) < len(text):
        offsets = np.append(offsets[chosen], offsets[-1])
    return joined.buffers()[2], offsets.astype(np.int64)


class _Lines:
    """The values as lines, read by Arrow's streaming JSON reader.

    Every read counts against a budget (``MAX_READS``): each refusal costs reads of part of
    a block again, and a batch full of refusals would cost more than the routing query.
    """

    def __init__(self, text: pa.Array, chosen: np.ndarray, schema: pa.Schema) -> None:
        self.data, self.offsets = _lines(text, chosen)
        self.schema = schema
        self.reads = 0
        self.budget = MAX_READS + len(chosen) // 500

    def reader(self, start: int, stop: int) -> pj.JSONStreamingReader:
        """A reader of lines ``start``..``stop``."""
        self.reads += 1
        first = int(self.offsets[start])
        return pj.open_json(
            pa.BufferReader(self.data.slice(first, int(self.offsets[stop]) - first)),
            read_options=pj.ReadOptions(use_threads=False, block_size=BLOCK_BYTES),
            parse_options=pj.ParseOptions(explicit_schema=self.schema, unexpected_field_behavior="error"),
        )

    def read(self, start: int, stop: int) -> list[tuple[int, pa.Table]]:
        """Lines ``start``..``stop`` parsed, as (first line, table) parts; the lines of the
        parts left out are refused. A refusal naming its row splits the range around that
        line; one naming none is looked for by halving the failing block's lines."""
        parts: list[tuple[int, pa.Table]] = []
        pending = [(start, stop)]
        while pending:
            start, stop = pending.pop()
            if start >= stop or self.reads >= self.budget:
                continue  # nothing left, or past the budget: refused
            done, batches = start, []
            try:
                for batch in self.reader(start, stop):
                    batches.append(batch)
                    done += batch.num_rows
                if done == stop:  # else rows and lines do not match (TWO_DOCUMENTS prevents it)
                    parts.append((start, pa.Table.from_batches(batches, self.schema)))
                continue
            except pa.ArrowInvalid as e:
                failed = _error_line(e, done, stop)
            if batches:
                parts.append((start, pa.Table.from_batches(batches, self.schema)))
            if failed is not None:
                pending += [(failed + 1, stop), (done, failed)]  # the lines before it first
            else:  # the failing block's lines: those that start within a block of its start
                end = min(stop, int(np.searchsorted(self.offsets, self.offsets[done] + BLOCK_BYTES, side="right")) + 1)
                parts += self.halve(done, end)
                pending.append((end, stop))
        return parts

    def halve(self, start: int, stop: int) -> list[tuple[int, pa.Table]]:
        """The parts of lines ``start``..``stop`` the parse takes, found by halving (a range of
        at most SMALLEST_RANGE lines that fails, or one the budget cannot afford, is refused)."""
        if self.reads >= self.budget:
            return []
        try:
            table = self.reader(start, stop).read_all()
            if table.num_rows == stop - start:
                return [(start, table)]
        except pa.ArrowInvalid:
            pass
        if stop - start <= SMALLEST_RANGE:
            return []
        middle = (start + stop) // 2
        return self.halve(start, middle) + self.halve(middle, stop)


def _error_line(error: pa.ArrowInvalid, first: int, stop: int) -> int | None:
    """The line a parse error names (its row counts from the failing block's first line)."""
    m = _ERROR_ROW.search(str(error))
    return first + int(m[1]) if m and first + int(m[1]) < stop else None


def parse(text: pa.Array, chosen: np.ndarray, schema: pa.Schema) -> tuple[np.ndarray, pa.Table]:
    """The values of ``text`` at ``chosen`` (ascending) the strict parse takes: their
    indices into ``chosen`` (ascending) and rows.

    One streaming read over the lines. Where it stops at a refused record, the blocks read
    so far are kept, and the lines before the refused one and after it are read again as
    ranges of their own (a refused line costs re-reading part of one block). Past the read
    budget, the lines not yet read are refused: they take the routing query.
    """
    if len(chosen) == 0:
        return np.empty(0, np.int64), schema.empty_table()
    parts = sorted(_Lines(text, chosen, schema).read(0, len(chosen)), key=lambda part: part[0])
    positions = np.concatenate([np.arange(s, s + t.num_rows) for s, t in parts] or [np.empty(0, np.int64)])
    return positions, pa.concat_tables([t for _, t in parts]) if parts else schema.empty_table()


def _field(column: pa.Array, name: str) -> pa.Array:
    return pc.struct_field(column, [column.type.get_field_index(name)])


def typed_columns(plan: FastPlan, parsed: pa.Table) -> pa.Table:
    """The parsed records as the flat relation the plan's query reads (``typed_schema``):
    a null object's fields are null (``struct_field`` keeps the parent's nulls)."""
    arrays = []
    for c in plan.columns:
        first, *rest = c.path.split(".")
        array = parsed[first].combine_chunks()
        for name in rest:
            array = _field(array, name)
        arrays.append(array if c.landed else pc.is_valid(array))
    return pa.Table.from_arrays(arrays, schema=typed_schema(plan))


def fast_rows(plan: FastPlan, text: pa.Array, utf8: pa.Array, run_query) -> FastRows:
    """Which rows of a batch (``text``, ``utf8`` as the routing query reads them) land by the
    fast path; ``run_query(sql, table)`` runs the plan's query (a prepared statement of it)."""
    chosen = candidates(text, utf8, plan.misfit)
    parsed_at, parsed = parse(text, chosen, plan.schema)
    typed = typed_columns(plan, parsed)
    judged = run_query(plan.sql, typed)
    passed = judged["_pass"].to_numpy(zero_copy_only=False)
    keep = pa.array(passed)
    positions = chosen[parsed_at[passed]]
    return FastRows(positions, typed.filter(keep), judged.select(["_contract", "_warnings"]).filter(keep))
