"""The datasets of the corpus index (``corpus.h5``, embedkit-corpus/3), appended in whole chunks.

Per row the index holds only what the source cannot give back cheaply: the text's cost
(characters) and its content hash. Ids and texts are read from the source; a row's place there
follows from the rows left out (``skipped``). Rows are held until a chunk's worth (65,536) is
there: a compressed chunk written in pieces would be read, inflated and deflated again at every
piece. Layout: docs/FORMAT.md.
"""

from __future__ import annotations

import h5py
import numpy as np

from kit.format import CONTENT_HASH, CONTENT_HASH_BYTES

CHUNK_ROWS = 1 << 16
GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True}  # text lengths shrink ~2-3x
MAX_CHARS = 2**32 - 1


def create(h5: h5py.File) -> None:
    """Create the empty, growable datasets of the corpus index in ``h5``."""
    h5.create_dataset("text_chars", shape=(0,), maxshape=(None,), dtype="<u4", chunks=(CHUNK_ROWS,), **GZIP)
    h5.create_dataset(
        CONTENT_HASH,
        shape=(0, CONTENT_HASH_BYTES),
        maxshape=(None, CONTENT_HASH_BYTES),
        dtype="u1",
        chunks=(CHUNK_ROWS // 4, CONTENT_HASH_BYTES),
    )


def write_skipped(h5: h5py.File, skipped: np.ndarray) -> None:
    """The rows of the source files (numbered across them) that are not in the corpus, sorted."""
    skipped = np.asarray(skipped, dtype=np.int64)
    h5.create_dataset("skipped", data=skipped, dtype="<i8", **(GZIP if len(skipped) else {}))


class IndexWriter:
    """Append kept rows (cost, content hash) to an index opened by ``create``."""

    def __init__(self, h5: h5py.File):
        self.h5 = h5
        self.pending: dict[str, list[np.ndarray]] = {"text_chars": [], CONTENT_HASH: []}
        self.rows = 0

    def append(self, chars: np.ndarray, hashes: np.ndarray) -> None:
        """``chars`` int [n] and ``hashes`` uint8 [n, 16] of n kept rows."""
        self.pending["text_chars"].append(np.clip(chars, 0, MAX_CHARS).astype(np.uint32))
        self.pending[CONTENT_HASH].append(hashes)
        self.rows += len(chars)
        if self.rows >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        """Append the rows held so far to the index's datasets (a no-op with none held)."""
        if not self.rows:
            return
        for name, parts in self.pending.items():
            values = np.concatenate(parts)
            ds = self.h5[name]
            ds.resize(ds.shape[0] + len(values), axis=0)
            ds[-len(values) :] = values
            parts.clear()
        self.rows = 0
