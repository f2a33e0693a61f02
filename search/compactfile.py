"""``embeddings.int8.h5`` and ``embeddings.binary.h5``: smaller copies of embeddings.h5 (docs/FORMAT.md).

Both hold the codes of the unit-normalised rows (``search.quantize``) as the ``embeddings``
dataset (contiguous, so it is memory-mapped), the calibration that defines them (``low`` and
``high`` for int8, ``thresholds`` for binary; float32 [D]), the row names (``ids``, ``titles``,
``urls``, ``topics``) and embeddings.h5's identity attributes, plus ``source_sha256``, and
``recall`` (JSON: recall@10 against float32 exact search, measured when the file was written).

``Int8File`` reads int8 rows back as float32 (a ``BlockRows``: exact search and rescoring take
it as they take embeddings.h5); ``BinaryFile`` reads codes as uint64 words for Hamming distances.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from kit.commands import make_command
from kit.errors import ConfigError
from kit.format import BINARY_FORMAT, INT8_FORMAT, compact_path
from kit.h5files import open_h5
from search.indexfile import source_digest
from search.quantize import from_int8, int8_step, to_binary, unit_rows

FORMATS = {"int8": INT8_FORMAT, "binary": BINARY_FORMAT}


class StaleCompactError(ConfigError):
    """An int8 or binary copy made from another embeddings.h5 than the one beside it."""


class _CompactFile:
    """The shared part: open, check the format, map the codes."""

    kind = ""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.h5 = open_h5(self.path)
        found = self.h5.attrs.get("format")
        if found != FORMATS[self.kind]:
            self.h5.close()
            fix = make_command("export", RUN=self.path.parent, FORMAT=self.kind)
            raise ConfigError(
                f"{self.path} is not an {self.kind} copy (format {found!r}). Write it again: {fix}"
            )
        codes = self.h5["embeddings"]
        self.rows, self.dim = int(codes.shape[0]), int(self.h5.attrs["embedding_dim"])
        self.codes = np.memmap(
            self.path, mode="r", dtype=codes.dtype, offset=codes.id.get_offset(), shape=codes.shape
        )

    @property
    def attrs(self) -> dict[str, Any]:
        """The file's root attributes."""
        return dict(self.h5.attrs)

    @property
    def recall(self) -> dict[str, Any]:
        """Recall@10 against float32 exact search, as measured when the file was written."""
        return json.loads(self.h5.attrs.get("recall", "{}"))

    @property
    def chunk_rows(self) -> int:
        return 1

    def close(self) -> None:
        """Close the file."""
        self.h5.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Int8File(_CompactFile):
    """``embeddings.int8.h5``: rows read back as float32 [n, D] (values the codes stand for)."""

    kind = "int8"
    unit_norm = False  # the codes round each value: rescoring divides by the read-back norm

    def __init__(self, path: str | Path):
        """Open ``path`` and map its codes."""
        super().__init__(path)
        self.low = self.h5["low"][:]
        self.step = int8_step(self.low, self.h5["high"][:])

    def block(self, start: int, stop: int) -> np.ndarray:
        """Float32 rows ``[start, stop)``, read back from their codes."""
        return from_int8(self.codes[start:stop], self.low, self.step)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Float32 rows ``rows`` (any order), read back from their codes."""
        unique, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        return from_int8(self.codes[unique], self.low, self.step)[inverse]


class BinaryFile(_CompactFile):
    """``embeddings.binary.h5``: codes as uint64 words [n, W], and the thresholds that make them."""

    kind = "binary"
    unit_norm = True

    def __init__(self, path: str | Path):
        """Open ``path`` and map its codes."""
        super().__init__(path)
        self.thresholds = self.h5["thresholds"][:]
        self.words = self.codes.view(np.uint64)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Uint64 [stop - start, W]: the codes of rows ``[start, stop)``."""
        return self.words[start:stop]

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Uint64 [len(rows), W]: the codes of ``rows``."""
        return self.words[np.asarray(rows, dtype=np.int64)]

    def query_words(self, queries: np.ndarray) -> np.ndarray:
        """Uint64 [Q, W]: the codes of float queries [Q, D], with this file's thresholds."""
        return to_binary(unit_rows(queries), self.thresholds).view(np.uint64)


def open_int8(source: Path) -> Int8File | None:
    """``embeddings.int8.h5`` beside ``source`` (embeddings.h5), checked as ``open_compact`` says; or None."""
    return (
        _checked(Int8File(compact_path(source, "int8")), source)
        if compact_path(source, "int8").exists()
        else None
    )


def open_binary(source: Path) -> BinaryFile | None:
    """``embeddings.binary.h5`` beside ``source`` (embeddings.h5), checked as ``open_compact`` says; or None."""
    path = compact_path(source, "binary")
    return _checked(BinaryFile(path), source) if path.exists() else None


def open_compact(source: Path, kind: str) -> Int8File | BinaryFile | None:
    """The ``kind`` copy beside ``source`` (embeddings.h5), or None; refused if made from another file.

    Where ``source`` itself is not here (a laptop that fetched only the copies) nothing is compared.

    Raises:
        StaleCompactError: its ``source_sha256`` is not what ``source``'s sidecar says.
    """
    return open_int8(source) if kind == "int8" else open_binary(source)


def _checked(opened: CompactT, source: Path) -> CompactT:
    """``opened``, unless it was made from another file than ``source`` (when ``source`` is here)."""
    if source.exists() and opened.attrs.get("source_sha256") != source_digest(source):
        opened.close()
        raise StaleCompactError(
            f"{opened.path} was made from another {source.name} than the one beside it. "
            f"Write it again: {make_command('export', RUN=source.parent, FORMAT=opened.kind)}"
        )
    return opened


CompactT = TypeVar("CompactT", Int8File, BinaryFile)
