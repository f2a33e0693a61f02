"""JSONL, plain or compressed (.jsonl, .jsonl.gz, .jsonl.zst): one JSON object per line, streamed.

Lines are parsed as bytes by orjson (no text decoding; about twice as fast as ``json.loads``).
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

from embedder.readers import Batch
from embedder.readers.records import Unreadable, to_batch
from embedder.readers.textio import open_bytes

BATCH_ROWS = 8192
BATCH_BYTES = 4 << 20  # or fewer rows when their lines reach this: long articles keep memory flat
_BLANK, _AS_TEXT = object(), object()


class JsonlReader:
    def __init__(self, path: Path):
        self.path = path
        self.total_rows: int | None = None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        file_row = 0
        for block, lines in self._blocks():
            batch = to_batch(block, columns, str(self.path), file_row, file_row == 0)
            _reparse_floats(batch, lines)
            file_row += batch.rows
            yield batch

    def _blocks(self) -> Iterator[tuple[list[Any], list[bytes | None]]]:
        """(records, the line of each, None where json.loads read it), about BATCH_BYTES at a time."""
        block: list[Any]
        lines: list[bytes | None]
        where, block, lines, size = [0], [], [], 0
        with open_bytes(self.path, where) as f:
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
