"""The merge's second level (PASSAGES=1): every shard's passages copied and proven against the corpus.

After the documents, each shard's passages are streamed into ``passages/*`` of embeddings.h5 and its
``passage_ptr`` offset into the file's own. The proof: every vector finite, non-zero and matching its
block checksum; every document has a passage; each passage names its document and index; the spans of a
document start at 0, end at its text's length (``text_chars`` of the corpus index) and leave no gap,
touching where OVERLAP is 0 and overlapping where it is not; no passage exceeds the window; and each
document vector is the token-weighted mean of its passages'. A refusal names the shard, the document (row
and id) and the span. Memory: one block of vectors and one of metadata, whatever the size.
"""

from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from kit.corpusfile import CorpusReader
from kit.errors import ShardDataError
from kit.format import PASSAGE_EMBEDDINGS, PASSAGE_PTR, PASSAGE_SPAN, PASSAGE_TOKENS
from kit.h5files import open_h5
from kit.passagefile import (
    PASSAGE_DTYPES,
    Rules,
    document_blocks,
    passage_sums,
    read_meta,
    structure_problems,
    weighted_mean,
)
from kit.shardfile import SCAN_BLOCK_BYTES, ShardHeader, block_problems, read_rows, verify_rows

log = logging.getLogger(__name__)
MEAN_MIN_COSINE = 0.9999  # a document vector against the weighted mean of its passages' (float32 sums)


def rules_of(header: ShardHeader) -> Rules | None:
    """The passage rules of a run whose shards are ``header``'s kind; None for a run without passages."""
    identity = header.identity
    if identity.passage_window is None:
        return None
    return Rules(identity.passage_window, int(identity.passage_overlap or 0))


class TextLengths:
    """Characters of each document's text: the corpus index's ``text_chars`` (read texts where it has none)."""

    def __init__(self, corpus_path: Path):
        self.path = corpus_path

    def __call__(self, lo: int, hi: int) -> np.ndarray:
        with open_h5(self.path) as h5:
            if "text_chars" in h5:
                return h5["text_chars"][lo:hi].astype(np.int64)
        with CorpusReader(self.path) as reader:
            texts = reader.read(lo, hi, ("texts",))["texts"]
        return np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))


def copy_passages(headers: list[ShardHeader], corpus_path: Path, out: h5py.File, normalize: bool) -> int:
    """Write the passages of ``headers`` (sorted, tiling the documents) into ``out``; returns their count.

    ``normalize``: the document vectors are unit length (their mean is compared by direction only anyway).

    Raises:
        ShardDataError: naming the shard, the document and the span.
    """
    rules = rules_of(headers[0])
    assert rules is not None  # called for a run with passages only
    counts = []
    for header in headers:
        with open_h5(header.path) as shard:
            counts.append(_count(shard, header))
    total, dim = sum(counts), out["embeddings"].shape[1]
    out.create_dataset(PASSAGE_EMBEDDINGS, shape=(total, dim), dtype="float32")
    for name, dtype in PASSAGE_DTYPES.items():
        out.create_dataset(name, shape=(total, 2) if name == PASSAGE_SPAN else (total,), dtype=dtype)
    ptr_out = out.create_dataset(PASSAGE_PTR, shape=(out["embeddings"].shape[0] + 1,), dtype="int64")
    lengths, offset = TextLengths(corpus_path), 0
    for header, count in zip(headers, counts):
        with open_h5(header.path) as shard:
            ptr = shard[PASSAGE_PTR][:]
            ptr_out[header.start : header.stop + 1] = offset + ptr
            _copy_vectors(shard, header, out, offset)
            _copy_meta(shard, header, out, offset, rules, lengths)
            _check_means(shard, header, out, normalize)
        log.info("merged %s passages [%d, %d)", header.path.name, offset, offset + count)
        offset += count
    return total


def _count(shard: h5py.File, header: ShardHeader) -> int:
    """The shard's passages, once its pointer is proven to cover its documents."""
    if PASSAGE_PTR not in shard:
        raise ShardDataError(
            f"{header.path.name} has no passages, unlike the run (PASSAGES=1).", shard=header.path
        )
    ptr = shard[PASSAGE_PTR][:]
    rows, held = header.stop - header.start, shard[PASSAGE_EMBEDDINGS].shape[0]
    if len(ptr) != rows + 1 or ptr[0] != 0 or ptr[-1] != held or (np.diff(ptr) < 0).any():
        raise ShardDataError(
            f"{header.path.name}: passage_ptr ({len(ptr)} entries, ending at {ptr[-1] if len(ptr) else None}) "
            f"does not point into its {held} passages for its {rows} documents.",
            shard=header.path,
        )
    return int(held)


def _copy_vectors(shard: h5py.File, header: ShardHeader, out: h5py.File, offset: int) -> None:
    """The shard's passage vectors, block by block: finite, non-zero, matching their checksums."""
    emb, sums, name = shard[PASSAGE_EMBEDDINGS], passage_sums(shard), header.path.name
    step = sums.step(max(1, SCAN_BLOCK_BYTES // (4 * emb.shape[1])))
    for lo in range(0, emb.shape[0], step):
        block = np.empty((min(step, emb.shape[0] - lo), emb.shape[1]), dtype=np.float32)
        read_rows(emb, block, lo, f"{name} passages", 0, _error(header))
        nonfinite, zero = block_problems(block)
        for what, bad in (("non-finite values", nonfinite), ("all-zero vectors", zero)):
            if len(bad):
                raise ShardDataError(
                    f"{name}: passages [{lo + bad[0]}, {lo + bad[-1] + 1}) have {what}.", shard=header.path
                )
        verify_rows(block, lo, sums, f"{name} passages", 0, _error(header))
        out[PASSAGE_EMBEDDINGS].write_direct(block, dest_sel=np.s_[offset + lo : offset + lo + len(block)])


def _error(header: ShardHeader):
    return lambda message: ShardDataError(message, shard=header.path)


def _copy_meta(
    shard: h5py.File, header: ShardHeader, out: h5py.File, offset: int, rules: Rules, lengths: TextLengths
) -> None:
    """The passages' document, index, span and tokens, proven per block of documents against the texts."""
    ptr = shard[PASSAGE_PTR][:]
    for d0, d1 in document_blocks(ptr):
        lo, hi = int(ptr[d0]), int(ptr[d1])
        meta = read_meta(shard, lo, hi)
        found = structure_problems(
            ptr[d0 : d1 + 1], header.start + d0, meta, rules, lengths(header.start + d0, header.start + d1)
        )
        if found:
            raise _refusal(header, out, found)
        for name, values in meta.items():
            out[name][offset + lo : offset + hi] = values


def _refusal(header: ShardHeader, out: h5py.File, found: list[tuple[int, int, str]]) -> ShardDataError:
    """The problems of a shard's passages, each naming its document by row and id, and the span."""
    lines, named = [], None
    for row, _, what in found[:3]:
        lines.append(what if row == named else f"document row {row} (id {out['ids'].asstr()[row]!r}): {what}")
        named = row
    more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
    return ShardDataError(f"{header.path.name} passages: {'; '.join(lines)}{more}.", shard=header.path)


def _check_means(shard: h5py.File, header: ShardHeader, out: h5py.File, normalize: bool) -> None:
    """Each document vector is the token-weighted mean of its passages' (by direction, cosine >= 0.9999)."""
    ptr, emb = shard[PASSAGE_PTR][:], shard[PASSAGE_EMBEDDINGS]
    for d0, d1 in document_blocks(ptr, max(1, SCAN_BLOCK_BYTES // (4 * emb.shape[1]))):
        lo, hi = int(ptr[d0]), int(ptr[d1])
        means = weighted_mean(emb[lo:hi], ptr[d0 : d1 + 1], shard[PASSAGE_TOKENS][lo:hi], normalize)
        docs = out["embeddings"][header.start + d0 : header.start + d1]
        cos = np.einsum("ij,ij->i", means, docs) / np.maximum(
            np.linalg.norm(means, axis=1) * np.linalg.norm(docs, axis=1), 1e-30
        )
        bad = np.flatnonzero(cos < MEAN_MIN_COSINE)
        if len(bad):
            row = header.start + d0 + int(bad[0])
            first, last = int(ptr[d0 + bad[0]]), int(ptr[d0 + bad[0] + 1])
            raise ShardDataError(
                f"{header.path.name}: document row {row} (id {out['ids'].asstr()[row]!r}) is not the "
                f"token-weighted mean of its passages [{first}, {last}) (cosine {cos[bad[0]]:.6f}).",
                shard=header.path,
            )
