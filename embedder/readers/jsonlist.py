"""A JSON file holding one list of objects; loaded whole (the JSON grammar has no row boundary)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

from embedder.readers import Batch
from embedder.readers.pickled import as_list
from embedder.readers.records import record_batches
from kit.errors import CorpusError


class JsonListReader:
    def __init__(self, path: Path):
        self.path = path
        self.total_rows: int | None = None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        try:
            with open(self.path, encoding="utf-8", errors="surrogateescape") as f:
                records = as_list(json.load(f), self.path)
        except json.JSONDecodeError as err:
            raise CorpusError(
                f"{self.path} is not valid JSON: {err}. A file of one object per line "
                "is JSONL: name it .jsonl."
            ) from err
        self.total_rows = len(records)
        yield from record_batches(records, columns, str(self.path))
