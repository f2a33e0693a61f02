"""Corpus readers: one small module per input format, all behind one interface.

A reader streams :class:`Batch` es of rows, column by column, so that preparing a corpus holds
one batch in memory whatever its size (a pickle or a JSON list are the exception: neither can
be read in pieces). ``embedder.readers.detect.open_reader`` picks the reader from the name, or else from the content.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SUPPORTED = (
    "parquet (a .parquet file, a folder of them or a glob such as 'data/*.parquet'); "
    "JSONL (.jsonl, .jsonl.gz, .jsonl.zst); CSV or TSV (.csv, .tsv, also .gz/.zst); "
    "a Hugging Face datasets save_to_disk folder (or one .arrow file); "
    "a pickle (.pkl, a list of dicts) or a JSON list (.json)"
)
SAMPLE_ROWS = 1000  # rows looked at to list a file's fields when a field is missing


@dataclass
class Batch:
    """Consecutive rows of one file, column by column."""

    columns: dict[str, list]  # field -> one value per row; None where a row lacks the field
    rows: int
    file: str  # the file the rows come from, as the user named it
    file_row: int  # 0-based row within ``file`` of the first row
    problems: dict[int, str] = field(default_factory=dict)  # offset -> why that row could not be read
    valid_utf8: bool = False  # strings were decoded from UTF-8, so they hold no lone surrogate
    fields: dict[str, float] | None = None  # first batch of a file: field -> mean text length (-1: not text)
    where: str | None = (
        None  # multi-file sources: suffix after "file row R" (", row group 3"); None: the row says enough
    )
    arrow: Any = (
        None  # parquet: the pyarrow RecordBatch the columns come from (checked in bulk, embedder.arrowcheck)
    )

    def nones(self, name: str) -> int:
        """Rows whose ``name`` is None, without making Python values of an Arrow column."""
        if self.arrow is not None and name not in self.columns:
            index = self.arrow.schema.get_field_index(name)
            return self.rows if index < 0 else self.arrow.column(index).null_count
        return self.columns[name].count(None)

    def locate(self, offset: int) -> str:
        """``file row R, row group G`` for multi-part sources, else ""."""
        if self.where is None:
            return ""
        return f"{Path(self.file).name} row {self.file_row + offset}{self.where}"


class Reader(Protocol):
    path: Path  # what the user passed (file, folder or glob)
    total_rows: int | None  # known up front (parquet, arrow metadata), else None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        """Yield the rows in order with at least ``columns`` (missing ones as None)."""
        ...


def field_lengths(columns: dict[str, list]) -> dict[str, float]:
    """Field -> mean length of its text values (-1 when it holds no text), over the given rows."""
    out = {}
    for name, values in columns.items():
        texts = [v for v in values[:SAMPLE_ROWS] if isinstance(v, str)]
        out[name] = sum(map(len, texts)) / len(texts) if texts else -1.0
    return out


def expand(source: Path) -> list[Path]:
    """The files a glob names, sorted; the path itself otherwise."""
    text = str(source)
    if any(c in text for c in "*?["):
        return sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
    return [source]
