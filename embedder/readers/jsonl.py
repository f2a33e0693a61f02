"""JSONL, plain or compressed (.jsonl, .jsonl.gz, .jsonl.zst): one JSON object per line, streamed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator, Sequence

from embedder.readers import Batch
from embedder.readers.records import Unreadable, record_batches
from embedder.readers.textio import open_text


class JsonlReader:
    def __init__(self, path: Path):
        self.path = path
        self.total_rows = None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        yield from record_batches(self._records(), columns, str(self.path))

    def _records(self) -> Iterator[Any]:
        where = [0]
        loads = json.loads
        with open_text(self.path, where) as f:
            for line_no, line in enumerate(f, start=1):
                where[0] = line_no
                if line.isspace():  # stops at the first other character: no copy of the line
                    continue
                try:
                    yield loads(line)
                except json.JSONDecodeError as err:
                    yield Unreadable(f"line {line_no} is not valid JSON ({err.msg})")
