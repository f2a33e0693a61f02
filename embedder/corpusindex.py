"""The datasets of the corpus index (``corpus.h5``, embedkit-corpus/2), appended in whole chunks.

Rows are held until a chunk's worth (65,536) is there: a compressed chunk written in pieces
would be read, inflated and deflated again at every piece. Layout: docs/FORMAT.md.
"""

from __future__ import annotations

import h5py
import numpy as np

from embedder.rowcheck import Kept
from kit.format import CONTENT_HASH, CONTENT_HASH_BYTES, UTF8

CHUNK_ROWS = 1 << 16
NUMBERS = (("file", "<i4"), ("row", "<i8"), ("text_chars", "<i4"))
GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True}  # file and row numbers shrink ~10x


def create(h5: h5py.File) -> None:
    h5.create_dataset("ids", shape=(0,), maxshape=(None,), dtype=UTF8, chunks=(4096,))
    for name, dtype in NUMBERS:
        h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(CHUNK_ROWS,), **GZIP)
    h5.create_dataset(CONTENT_HASH, shape=(0, CONTENT_HASH_BYTES), maxshape=(None, CONTENT_HASH_BYTES), dtype="u1",
                      chunks=(CHUNK_ROWS // 4, CONTENT_HASH_BYTES))


class IndexWriter:
    """Append kept rows (id, place, cost, content hash) to an index opened by ``create``."""

    def __init__(self, h5: h5py.File):
        self.h5 = h5
        self.pending: dict[str, list] = {name: [] for name in ("ids", "file", "row", "text_chars", CONTENT_HASH)}
        self.rows = 0

    def append(self, kept: Kept, place: tuple[np.ndarray, np.ndarray]) -> None:
        n = len(kept.id_bytes)
        self.pending["ids"].append(np.array(kept.id_bytes, dtype=object))  # UTF-8 bytes: stored as they are
        self.pending["file"].append(place[0])
        self.pending["row"].append(place[1])
        self.pending["text_chars"].append(kept.chars.clip(0, 2**31 - 1))
        self.pending[CONTENT_HASH].append(np.frombuffer(b"".join(kept.hashes), dtype=np.uint8).reshape(n, -1))
        self.rows += n
        if self.rows >= CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        for name, parts in self.pending.items():
            values = np.concatenate(parts)
            ds = self.h5[name]
            ds.resize(ds.shape[0] + len(values), axis=0)
            ds[-len(values) :] = values
            parts.clear()
        self.rows = 0
