"""CSV and TSV (plain or .gz/.zst), streamed; the first line names the fields.

The field separator is ``CSV_DELIMITER`` where given, else the header line tells: the one of
``,`` ``;`` tab ``|`` that splits it into the most fields, the name's (``,`` for .csv, tab for
.tsv) unless that one leaves the header whole (a ``;`` file, as Excel writes CSV in much of
Europe). A row whose field count differs from the header's is a problem of that row (its line is
named); every value is text, so ids are read as text too.
"""

from __future__ import annotations

import csv
import itertools
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from embedder.readers import Batch, field_lengths
from embedder.readers.textio import base_name, open_text
from kit.errors import CorpusError

BATCH_ROWS = 4096
DELIMITERS = (",", ";", "\t", "|")  # tried on the header line, in this order on a tie
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # articles are longer than csv's 128 kB default
log = logging.getLogger(__name__)


def delimiter_name(delimiter: str) -> str:
    """How CSV_DELIMITER= spells ``delimiter`` (tab for a tab)."""
    return "tab" if delimiter == "\t" else delimiter


def sniff_delimiter(header: str, default: str) -> str:
    """The separator of a header line: ``default`` unless it leaves the line whole and another splits it."""
    counts = {d: len(next(csv.reader([header], delimiter=d), [])) for d in DELIMITERS}
    if counts.get(default, 0) > 1:
        return default
    best = max(DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] > 1 else default


class DelimitedReader:
    def __init__(self, path: Path, delimiter: str | None = None):
        self.path = path
        self.total_rows: int | None = None
        self.default = "\t" if base_name(path).endswith(".tsv") else ","
        self.given = delimiter  # CSV_DELIMITER=; None: the header line tells
        self.delimiter = delimiter or self.default

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        where = [0]
        with open_text(self.path, where, newline="") as f:
            first = f.readline()
            if not first.strip():
                raise CorpusError(f"{self.path} is empty: expected a header line naming the fields.")
            self.delimiter = self.given or self._sniffed(first)
            reader = csv.reader(itertools.chain([first], f), delimiter=self.delimiter)
            header = next(reader)
            yield from self._batches(reader, header, columns, where)

    def _sniffed(self, header: str) -> str:
        found = sniff_delimiter(header.rstrip("\r\n"), self.default)
        if found != self.default:
            log.info(
                "%s: fields separated by %r (from its header line; CSV_DELIMITER= chooses another)",
                self.path,
                delimiter_name(found),
            )
        return found

    def _batches(
        self, reader, header: list[str], columns: Sequence[str], where: list[int]
    ) -> Iterator[Batch]:
        index = {name: i for i, name in enumerate(header)}
        pick = [(name, index.get(name)) for name in columns]
        rows: list[list[str]] = []
        problems: dict[int, str] = {}
        file_row, first = 0, True
        for row in reader:
            where[0] = reader.line_num
            if len(row) != len(header):
                problems[len(rows)] = (
                    f"wrong number of fields (line {reader.line_num} has {len(row)}, "
                    f"the header has {len(header)})"
                )
                row = []
            rows.append(row)
            if len(rows) >= BATCH_ROWS:
                yield self._batch(rows, pick, header, file_row, problems, first)
                file_row, first, rows, problems = file_row + len(rows), False, [], {}
        if rows:
            yield self._batch(rows, pick, header, file_row, problems, first)

    def _batch(self, rows, pick, header, file_row, problems, first) -> Batch:
        cols = {
            name: [r[i] if r else None for r in rows] if i is not None else [None] * len(rows)
            for name, i in pick
        }
        fields = None
        if first:
            fields = field_lengths({h: [r[i] for r in rows[:1000] if r] for i, h in enumerate(header)})
        return Batch(cols, len(rows), str(self.path), file_row, problems, valid_utf8=False, fields=fields)
