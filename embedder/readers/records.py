"""Batches from records (dicts) one at a time: what JSONL, pickle, JSON and ``prepare(records)`` share."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from embedder.readers import Batch, field_lengths

BATCH_ROWS = 4096
BATCH_CHARS = 2 << 20  # or fewer rows when their text reaches this: long articles keep memory flat


class Unreadable:
    """A record that could not be read (a line that is not JSON); ``reason`` says why."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def record_batches(
    records: Iterable[Any], columns: Sequence[str], file: str, batch_rows: int = BATCH_ROWS
) -> Iterator[Batch]:
    """Group ``records`` into batches of ``columns``; non-dicts become problems of their row."""
    block: list[Any] = []
    first, file_row, chars = True, 0, 0
    for record in records:
        block.append(record)
        if type(record) is dict:
            chars += sum(len(v) for c in columns if type(v := record.get(c)) is str)
        if len(block) >= batch_rows or chars >= BATCH_CHARS:
            yield to_batch(block, columns, file, file_row, first)
            file_row += len(block)
            block, first, chars = [], False, 0
    if block:
        yield to_batch(block, columns, file, file_row, first)


def to_batch(block: list[Any], columns: Sequence[str], file: str, file_row: int, first: bool) -> Batch:
    """A ``Batch`` of ``columns`` from ``block``; a non-dict record becomes an empty row with a problem."""
    problems = {}
    for i, record in enumerate(block):
        if type(record) is not dict:
            problems[i] = (
                record.reason
                if isinstance(record, Unreadable)
                else f"not a dict (got {type(record).__name__})"
            )
            block[i] = {}
    cols = {name: [r.get(name) for r in block] for name in columns}
    fields = _sample_fields(block) if first else None
    return Batch(cols, len(block), file, file_row, problems, fields=fields)


def _sample_fields(block: list[dict]) -> dict[str, float]:
    names: dict[str, None] = {}
    for record in block[:1000]:
        names.update(dict.fromkeys(record))
    return field_lengths({n: [r.get(n) for r in block[:1000]] for n in names})
