"""A float32 [N, D] HDF5 dataset read block by block, and a way to name row i.

Everything in ``search`` reads vectors through ``VectorFile``: memory-mapped where the dataset
is contiguous and uncompressed (embeddings.h5 is), else read in whole HDF5 chunks. Nothing here
knows that a row is an article: ``RowNamer`` says what row i is called (``TextFields`` reads
the ``ids``/``titles``/``urls`` datasets of embeddings.h5; a passage run can name a row by its
document and character span), so documents and passages are searched alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import h5py
import numpy as np

from kit.commands import make_command
from kit.errors import ConfigError
from kit.shardfile import ShardIdentity
from kit.format import META_FIELDS, OPTIONAL_META_FIELDS, PROVENANCE_PREFIX
from kit.h5files import open_h5

EMBEDDINGS = "embeddings"
SINGULAR = {"ids": "id", "titles": "title", "urls": "url", "topics": "topic"}  # as make export names them
UNIT_NORM_TOLERANCE = 1e-3  # quality_metrics min/max norm within this of 1: rows are L2-normalised


class BlockRows(Protocol):
    """Rows searched block by block: ``VectorFile``, and the int8 and binary copies (``search.compact``)."""

    rows: int
    dim: int
    unit_norm: bool  # rows have norm 1: a dot product is the cosine

    @property
    def chunk_rows(self) -> int: ...

    def block(self, start: int, stop: int) -> np.ndarray:
        """Rows ``[start, stop)`` as the scoring function takes them (float32 [n, D], or codes)."""
        ...

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Rows ``rows`` (int [n], any order) as float32 [n, D] (codes: as stored)."""
        ...


class VectorFile:
    """Rows of one float [N, D] dataset of an HDF5 file, opened read-only.

    Use as a context manager, or call ``close``. ``unit_norm`` says whether rows are
    L2-normalised (then a dot product is the cosine); None reads it from the file's
    ``quality_metrics`` where ``dataset`` is ``embeddings``, else assumes not.
    """

    def __init__(self, path: str | Path, dataset: str = EMBEDDINGS, unit_norm: bool | None = None):
        """Open ``path`` and its ``dataset``; memory-map it where its layout allows."""
        self.path = Path(path)
        try:
            self.h5 = open_h5(self.path)
        except OSError as err:
            raise ConfigError(
                f"Cannot open {self.path} ({str(err).splitlines()[0]}). Merge it again "
                f"({make_command('merge', RUN=self.path.parent)}) or fetch it again (make fetch)."
            ) from err
        if dataset not in self.h5 or len(self.h5[dataset].shape) != 2:
            self.h5.close()
            raise ConfigError(f"{self.path} has no [N, D] dataset {dataset!r} to search.")
        self.dataset: h5py.Dataset = self.h5[dataset]
        self.rows, self.dim = (int(n) for n in self.dataset.shape)
        self.mapped = _memory_map(self.path, self.dataset)
        self.unit_norm = _unit_norm(self.h5, dataset) if unit_norm is None else unit_norm

    @property
    def chunk_rows(self) -> int:
        """Rows per HDF5 chunk (1 for a contiguous dataset): reads are aligned to it."""
        return int(self.dataset.chunks[0]) if self.dataset.chunks else 1

    @property
    def attrs(self) -> dict[str, Any]:
        """The file's root attributes."""
        return dict(self.h5.attrs)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Float32 rows ``[start, stop)`` of shape [stop - start, D]: a view of the mapping where possible."""
        source = self.mapped if self.mapped is not None else self.dataset
        return np.asarray(source[start:stop], dtype=np.float32)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Float32 rows ``rows`` (any order, repeats allowed) of shape [len(rows), D]."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.mapped is not None:  # one gather from the page cache
            return np.asarray(self.mapped[rows], dtype=np.float32)
        unique, inverse = np.unique(rows, return_inverse=True)  # h5py reads increasing rows only
        return np.asarray(self.dataset[unique], dtype=np.float32)[inverse]

    def close(self) -> None:
        """Close the file (the mapping goes with the last view of it)."""
        self.mapped = None
        self.h5.close()

    def __enter__(self) -> VectorFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _memory_map(path: Path, ds: h5py.Dataset) -> np.ndarray | None:
    """The dataset as a read-only memory map, or None (chunked, compressed, or not yet written)."""
    offset = ds.id.get_offset()
    if ds.chunks is not None or ds.compression is not None or offset is None or ds.external:
        return None
    if ds.dtype.kind != "f" or ds.dtype.byteorder == ">":
        return None
    return np.memmap(path, mode="r", dtype=ds.dtype, offset=offset, shape=ds.shape)


def _unit_norm(h5: h5py.File, dataset: str) -> bool:
    """Whether the merge's quality metrics say every row has norm 1 (only known for ``embeddings``)."""
    raw = h5.attrs.get("quality_metrics")
    if dataset != EMBEDDINGS or raw is None:
        return False
    metrics = json.loads(raw)
    low, high = metrics.get("min_norm"), metrics.get("max_norm")
    return low is not None and abs(low - 1) < UNIT_NORM_TOLERANCE and abs(high - 1) < UNIT_NORM_TOLERANCE


class RowNamer(Protocol):
    """Says what rows are called: ``namer(rows)`` -> one dict of text fields per row, in order."""

    def __call__(self, rows: np.ndarray) -> list[dict[str, str]]: ...


class TextFields:
    """Names rows by the text datasets of an HDF5 file (``ids``, ``titles``, ``urls``, ``topics``).

    Keys are the singular names (``id``, ``title``, ``url``, ``topic``), as ``make export`` writes them.
    """

    def __init__(self, path: str | Path, fields: tuple[str, ...] = (*META_FIELDS, *OPTIONAL_META_FIELDS)):
        """Name rows of ``path`` by those of ``fields`` it holds."""
        self.path = Path(path)
        with open_h5(self.path) as h5:
            self.fields = tuple(f for f in fields if f in h5)

    def __call__(self, rows: np.ndarray) -> list[dict[str, str]]:
        """One ``{field: text}`` per row of ``rows`` (int [n], any order)."""
        rows = np.asarray(rows, dtype=np.int64)
        if rows.size == 0:
            return []
        unique, inverse = np.unique(rows, return_inverse=True)
        with open_h5(self.path) as h5:
            columns = {SINGULAR.get(f, f): h5[f].asstr()[unique][inverse] for f in self.fields}
        return [{name: str(values[i]) for name, values in columns.items()} for i in range(len(rows))]


def file_identity(path: str | Path) -> ShardIdentity:
    """The embedding identity an embeddings.h5 (or a copy made from it) records in ``provenance_*``."""
    with open_h5(path) as h5:
        return ShardIdentity.from_attrs(h5.attrs, prefix=PROVENANCE_PREFIX)
