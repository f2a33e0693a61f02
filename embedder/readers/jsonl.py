"""JSONL, plain or compressed (.jsonl, .jsonl.gz, .jsonl.zst): one JSON object per line, streamed.

Blocks of about 4 MiB are first parsed in C by pyarrow's JSON reader into Arrow columns, checked
in bulk like parquet (embedder.arrowcheck). A block it cannot read exactly as the line-by-line
reader would (a line that is not JSON, a blank line, a ``\r``, a field of another type than
string (or an integer id), invalid UTF-8) is read again line by line:
lines are parsed as bytes by orjson (no text decoding; about twice as fast as ``json.loads``).
A line orjson refuses is read again as the text reader always did (UTF-8 with surrogateescape,
universal newlines, ``json.loads``), so bytes that are not UTF-8, ``NaN``, a ``\\ud800`` escape or
a bare ``\\r`` give the same rows and messages as before. orjson reads an integer beyond 64 bits
as a float, so a row with a float in a needed field is parsed again by ``json.loads``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pj

from embedder.readers import SAMPLE_ROWS, Batch, field_lengths
from embedder.readers.parquet import ArrowColumns
from embedder.readers.records import Unreadable, to_batch
from embedder.readers.textio import open_bytes

BATCH_ROWS = 8192
BATCH_BYTES = 4 << 20  # or fewer rows when their lines reach this: long articles keep memory flat
ARROW_BLOCK_BYTES = 4 << 20  # bytes parsed by pyarrow at once (then up to the end of the line)
_BLANK, _AS_TEXT = object(), object()
TEXT_TYPES = (pa.string(), pa.large_string())


class JsonlReader:
    def __init__(self, path: Path):
        self.path = path
        self.total_rows: int | None = None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        file_row, where, first = 0, [0], True
        with open_bytes(self.path, where) as f:
            while chunk := f.read(ARROW_BLOCK_BYTES) + f.readline():
                rb = _arrow_block(chunk, columns)
                batches = (
                    [rb] if rb is not None else self._line_batches(chunk, columns, where, file_row, first)
                )
                for batch in batches:
                    if isinstance(batch, pa.RecordBatch):
                        where[0] += batch.num_rows  # one row per line: _arrow_block checked it
                        fields = _arrow_fields(batch, columns) if first else None
                        batch = Batch(
                            ArrowColumns(batch, self.path, 0),
                            batch.num_rows,
                            str(self.path),
                            file_row,
                            valid_utf8=True,
                            fields=fields,
                            arrow=batch,
                        )
                    first = False
                    file_row += batch.rows
                    yield batch

    def _line_batches(
        self, chunk: bytes, columns: Sequence[str], where: list[int], file_row: int, first: bool
    ) -> Iterator[Batch]:
        for block, lines in self._blocks(io.BytesIO(chunk), where):
            batch = to_batch(block, columns, str(self.path), file_row, first)
            first = False
            _reparse_floats(batch, lines)
            file_row += batch.rows
            yield batch

    @staticmethod
    def _blocks(f: io.BytesIO, where: list[int]) -> Iterator[tuple[list[Any], list[bytes | None]]]:
        """(records, the line of each, None where json.loads read it), about BATCH_BYTES at a time."""
        block: list[Any] = []
        lines: list[bytes | None] = []
        size = 0
        for raw in f:
            where[0] += 1
            record = _fast_record(raw)
            if record is _BLANK:
                continue
            if record is _AS_TEXT:
                for record in _text_records(raw, where):
                    block.append(record)
                    lines.append(None)
            else:
                block.append(record)
                lines.append(raw)
            size += len(raw)
            if len(block) >= BATCH_ROWS or size >= BATCH_BYTES:
                yield block, lines
                block, lines, size = [], [], 0
        if block:
            yield block, lines


def _arrow_fields(batch: pa.RecordBatch, columns: Sequence[str]) -> dict[str, float]:
    """The fields the rows have, with their mean text length: a column asked for that no row has is not one.

    (The explicit schema gives every column asked for, as nulls where the lines lack it.)
    """
    return {
        n: field_lengths({n: batch.column(n).slice(0, SAMPLE_ROWS).to_pylist()})[n]
        for n in batch.schema.names
        if n not in columns or batch.column(n).null_count < batch.num_rows
    }


def _arrow_block(chunk: bytes, columns: Sequence[str]) -> pa.RecordBatch | None:
    """The rows of ``chunk`` (whole lines) parsed by pyarrow, or None where only the line reader can tell."""
    if b"\r" in chunk:
        return None
    strings = pa.schema(
        [(c, pa.string()) for c in columns[1:]]
    )  # columns[0] is the id: a string or an integer
    try:
        table = pj.read_json(
            pa.BufferReader(chunk),
            read_options=pj.ReadOptions(use_threads=False, block_size=len(chunk) + 1),
            parse_options=pj.ParseOptions(explicit_schema=strings, unexpected_field_behavior="infer"),
        )
        table.validate(full=True)
    except (pa.ArrowException, ValueError):
        return None
    lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
    if table.num_rows != lines:  # a blank line (or two objects on one)
        return None
    for name in columns:
        index = table.schema.get_field_index(name)
        kind = table.schema.field(index).type if index >= 0 else pa.null()
        if (
            kind not in TEXT_TYPES
            and not pa.types.is_null(kind)
            and not (name == columns[0] and kind == pa.int64())
        ):
            return None
    return table.combine_chunks().to_batches()[0] if table.num_rows else None


def _fast_record(raw: bytes) -> Any:
    """The record on this line, ``_BLANK``, or ``_AS_TEXT`` when only the text path can tell."""
    end = len(raw) - 2 if raw.endswith(b"\r\n") else len(raw)
    if raw.find(b"\r", 0, end) >= 0:  # a bare \r ends a line in text mode: split as text does
        return _AS_TEXT
    if raw.isspace():
        return _BLANK
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return _AS_TEXT


def _text_records(raw: bytes, where: list[int]) -> Iterator[Any]:
    """The records of ``raw`` read as text (one or more lines in universal-newline mode)."""
    for k, line in enumerate(io.StringIO(raw.decode("utf-8", "surrogateescape"), newline=None)):
        where[0] += 1 if k else 0
        if line.isspace():  # stops at the first other character: no copy of the line
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError as err:
            yield Unreadable(f"line {where[0]} is not valid JSON ({err.msg})")


def _reparse_floats(batch: Batch, lines: list[bytes | None]) -> None:
    """Rows where orjson read a needed field as a float: as ``json.loads`` reads them (big integers)."""
    cols = batch.columns
    if not any(float in set(map(type, col)) for col in cols.values()):
        return
    for i, raw in enumerate(lines):
        if raw is not None and any(type(col[i]) is float for col in cols.values()):
            record = json.loads(raw)
            for name, col in cols.items():
                col[i] = record.get(name)
