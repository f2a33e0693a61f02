"""A pickle holding a list of dicts. A pickle cannot be read in pieces: it is loaded whole.

Only plain lists, dicts, strings and numbers are accepted, so a pickle cannot run code here.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from embedder.readers import Batch
from embedder.readers.records import record_batches
from kit.errors import CorpusError


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numbers only: a pickle cannot run code through it."""

    def find_class(self, module: str, name: str) -> Any:
        raise CorpusError(
            f"The pickle holds an object of type {module}.{name}; the kit reads only plain lists, "
            "dicts, strings and numbers from a pickle. Convert it to JSONL (one JSON object per "
            "line with id, title, url, text) and pass that file instead."
        )


def as_list(data: Any, path: Path) -> list:
    """``data`` unpickled from ``path`` if it is a list; a ``CorpusError`` otherwise."""
    if not isinstance(data, list):
        raise CorpusError(f"{path} holds a {type(data).__name__}; expected a list of dicts.")
    return data


class PickleReader:
    def __init__(self, path: Path):
        self.path = path
        self.total_rows: int | None = None

    def batches(self, columns: Sequence[str]) -> Iterator[Batch]:
        with open(self.path, "rb") as f:
            records = as_list(_PlainDataUnpickler(f).load(), self.path)
        self.total_rows = len(records)
        yield from record_batches(records, columns, str(self.path))
