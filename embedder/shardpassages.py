"""A PASSAGES=1 shard's passages: appended with their documents, resumed at a document, checksummed.

``rows_done`` counts documents; a chunk's passages are written before its documents and counted with
them (``passage_ptr`` grows by the chunk's documents in the same flush as ``rows_done``). On resume the
passages of the counted documents are read back against their block checksums; rows written after the
last counted flush are dropped. Layout: docs/FORMAT.md; the datasets: ``kit.passagefile``.
"""

from __future__ import annotations

import logging

import h5py
import numpy as np

from embedder.passages import ChunkPassages
from kit.errors import ShardError
from kit.format import (
    PASSAGE_CHECKSUMS,
    PASSAGE_DOCUMENT,
    PASSAGE_EMBEDDINGS,
    PASSAGE_INDEX,
    PASSAGE_PTR,
    PASSAGE_SPAN,
    PASSAGE_TOKENS,
    PASSAGES_GROUP,
    STORED_DTYPE,
)
from kit.passagefile import passage_sums, resize_passages
from kit.shardfile import SCAN_BLOCK_BYTES, block_problems, digest, read_rows, verify_rows

log = logging.getLogger(__name__)


class PassageStore:
    """The passages of one shard being written: what is flushed, and the partly filled checksum block."""

    def __init__(self, label: str, dim: int):
        self.label = label  # the .tmp file's name, in errors
        self.tail = np.empty((0, dim), dtype=STORED_DTYPE)  # vectors of the block being filled

    def resume(self, h5: h5py.File, done: int) -> int:
        """Keep the passages of the first ``done`` documents that read back against their checksums.

        Returns the documents whose passages are all kept: ``done``, or fewer where the last block's
        digest does not match (a kill between the digest and ``rows_done``): those are recomputed.

        Raises:
            ShardError: the pointer or the vectors of counted documents cannot be trusted.
        """
        ptr = h5[PASSAGE_PTR][: done + 1]
        emb, sums = h5[PASSAGE_EMBEDDINGS], passage_sums(h5)
        if len(ptr) != done + 1 or emb.shape[0] < ptr[-1] or (np.diff(ptr) < 1).any():
            raise ShardError(f"{self.label}: passage_ptr does not hold the {done} counted documents")
        kept = int(ptr[-1])
        whole = kept - kept % sums.rows
        self._verify(emb, sums, whole)
        tail = np.empty((kept - whole, emb.shape[1]), dtype=emb.dtype)
        read_rows(emb, tail, whole, self.label, 0)
        c = whole // sums.rows
        if len(tail) and (
            c >= len(sums.digests)
            or digest(tail) != int(sums.digests[c])
            or any(map(len, block_problems(tail)))
        ):
            done = int(np.searchsorted(ptr, whole, side="right")) - 1  # documents whose passages are verified
            kept = int(ptr[done])
            log.warning(
                "%s: passages [%d, %d) do not match their checksum; recomputing", self.label, kept, whole
            )
            tail = np.empty((kept % sums.rows, emb.shape[1]), dtype=emb.dtype)
            read_rows(emb, tail, kept - len(tail), self.label, 0)
        resize_passages(h5, kept)
        h5[PASSAGE_PTR].resize(done + 1, axis=0)
        h5[PASSAGE_CHECKSUMS].resize(-(-kept // sums.rows), axis=0)
        self.tail = tail
        return done

    def _verify(self, emb: h5py.Dataset, sums, whole: int) -> None:
        """The whole blocks of counted passages: finite, non-zero, matching their digests."""
        step = sums.step(max(1, SCAN_BLOCK_BYTES // (4 * emb.shape[1])))
        for lo in range(0, whole, step):
            block = np.empty((min(step, whole - lo), emb.shape[1]), dtype=emb.dtype)
            read_rows(emb, block, lo, self.label, 0)
            if any(map(len, block_problems(block))):
                raise ShardError(f"{self.label}: counted passages from {lo} are zero or non-finite")
            verify_rows(block, lo, sums, f"{self.label} passages", 0)

    def write(self, h5: h5py.File, passages: ChunkPassages, first_doc: int) -> None:
        """Append a chunk's passages (not yet counted). ``first_doc``: the corpus row of its first document."""
        assert passages.embeddings is not None  # the chunk was encoded
        p0 = int(h5[PASSAGE_PTR][-1])
        values = {
            PASSAGE_EMBEDDINGS: passages.embeddings.astype(STORED_DTYPE, copy=False),
            PASSAGE_DOCUMENT: first_doc + passages.document(),
            PASSAGE_INDEX: passages.index(),
            PASSAGE_SPAN: passages.span,
            PASSAGE_TOKENS: passages.tokens,
        }
        for name, data in values.items():
            h5[name].resize(p0 + len(data), axis=0)
            h5[name][p0:] = data

    def count(self, h5: h5py.File, passages: ChunkPassages, done: int) -> None:
        """The checksums of the new vectors, and the pointer of the chunk's documents (flushed with rows_done)."""
        assert passages.embeddings is not None
        ptr = h5[PASSAGE_PTR]
        p0 = int(ptr[done])
        per = int(h5[PASSAGES_GROUP].attrs["checksum_rows"])
        first = p0 - len(self.tail)
        rows = np.concatenate([self.tail, passages.embeddings.astype(STORED_DTYPE, copy=False)])
        digests = [digest(rows[a : a + per]) for a in range(0, len(rows), per)]
        sums = h5[PASSAGE_CHECKSUMS]
        sums.resize(first // per + len(digests), axis=0)
        if digests:
            sums[first // per :] = np.array(digests, dtype=np.uint64)
        left = len(rows) % per
        self.tail = rows[len(rows) - left :].copy() if left else rows[:0].copy()
        ptr.resize(done + passages.docs + 1, axis=0)
        ptr[done + 1 :] = p0 + passages.ptr[1:]
