"""The passages of a PASSAGES=1 shard or merged file: their datasets and the proof that they tile.

Shared by the embedder (a shard's datasets, its re-open check) and the merge (the same proof against the
corpus's text lengths). Two levels, one discipline: documents tile the corpus rows, and each document's
passages tile its text with half-open character spans, linked by the CSR pointer ``passage_ptr``.
Layout: docs/FORMAT.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import h5py
import numpy as np

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
from kit.shardfile import SCAN_BLOCK_BYTES, BlockSums, block_problems, read_rows, verify_rows

BLOCK_PASSAGES = 1 << 16  # passages whose metadata is checked at once (about 2 MiB of it)
PASSAGE_DTYPES = {
    PASSAGE_DOCUMENT: "int64",
    PASSAGE_INDEX: "int32",
    PASSAGE_SPAN: "int64",
    PASSAGE_TOKENS: "int32",
}


def has_passages(h5: h5py.File) -> bool:
    """True for a shard or merged file written with PASSAGES=1."""
    return PASSAGE_PTR in h5


def create_shard_datasets(h5: h5py.File, rows: int, dim: int, chunk_rows: int) -> None:
    """The growable passage datasets of a new shard of ``rows`` documents (no passage yet)."""
    group = h5.create_group(PASSAGES_GROUP)
    group.attrs["checksum_rows"] = chunk_rows
    h5.create_dataset(
        PASSAGE_EMBEDDINGS, shape=(0, dim), maxshape=(None, dim), dtype=STORED_DTYPE, chunks=(chunk_rows, dim)
    )
    for name, dtype in PASSAGE_DTYPES.items():
        shape = (0, 2) if name == PASSAGE_SPAN else (0,)
        h5.create_dataset(
            name, shape=shape, maxshape=(None, *shape[1:]), dtype=dtype, chunks=(4096, *shape[1:])
        )
    h5.create_dataset(PASSAGE_CHECKSUMS, shape=(0,), maxshape=(None,), dtype="uint64", chunks=(4096,))
    h5.create_dataset(
        PASSAGE_PTR, data=np.zeros(1, dtype=np.int64), maxshape=(rows + 1,), chunks=(min(rows + 1, 4096),)
    )


def passage_sums(h5: h5py.File) -> BlockSums:
    """The checksums of a shard's passage vectors (one xxh3_64 per block of ``checksum_rows``)."""
    return BlockSums(int(h5[PASSAGES_GROUP].attrs["checksum_rows"]), h5[PASSAGE_CHECKSUMS][:])


def resize_passages(h5: h5py.File, passages: int) -> None:
    """Every passage dataset of a shard cut (or grown) to ``passages`` rows."""
    for name in (PASSAGE_EMBEDDINGS, *PASSAGE_DTYPES):
        h5[name].resize(passages, axis=0)


@dataclass(frozen=True)
class Rules:
    """What the passages of a run must satisfy (its identity's window and overlap)."""

    window: int  # max_seq_length: a passage holds at most this many tokens
    overlap: int  # OVERLAP: 0 -> consecutive spans touch; > 0 -> they overlap


def document_blocks(ptr: np.ndarray, block: int = BLOCK_PASSAGES) -> Iterator[tuple[int, int]]:
    """Ranges ``[d0, d1)`` of documents whose passages number about ``block`` (at least one document)."""
    d0, docs = 0, len(ptr) - 1
    while d0 < docs:
        d1 = int(np.searchsorted(ptr, ptr[d0] + block, side="right")) - 1
        d1 = min(max(d1, d0 + 1), docs)
        yield d0, d1
        d0 = d1


def structure_problems(
    ptr: np.ndarray,
    first_doc: int,
    meta: dict[str, np.ndarray],
    rules: Rules,
    lengths: np.ndarray | None = None,
) -> list[tuple[int, int, str]]:
    """Problems of the passages of documents ``first_doc + i``: ``(document row, passage index, what)``.

    Args:
        ptr: int64 [docs + 1], the documents' passage pointer, ``ptr[0]`` the block's first passage.
        first_doc: the row of the block's first document (corpus row).
        meta: the block's passages, ``PASSAGE_DOCUMENT``, ``PASSAGE_INDEX``, ``PASSAGE_SPAN`` and
            ``PASSAGE_TOKENS`` (rows ``[ptr[0], ptr[-1])``).
        lengths: int64 [docs], the characters of each document's text; None: the ends are not checked.

    Every document has a passage; passages name their document and index; a span is non-empty, the
    first starts at 0, the last ends at the text's length, each starts after the previous one's start
    and at or before its end (no gap): touching it where OVERLAP is 0, inside it where OVERLAP > 0.
    """
    counts = np.diff(ptr)
    problems: list[tuple[int, int, str]] = []
    for d in np.flatnonzero(counts < 1)[:8]:
        problems.append((first_doc + int(d), 0, "has no passage"))
    if problems:
        return problems
    doc_of = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    k = np.arange(len(doc_of), dtype=np.int64) - np.repeat(ptr[:-1] - ptr[0], counts)
    span, tokens = meta[PASSAGE_SPAN], meta[PASSAGE_TOKENS]
    start, end = span[:, 0], span[:, 1]
    first, last = k == 0, np.r_[k[1:] == 0, True]
    prev_end, prev_start = np.r_[0, end[:-1]], np.r_[-1, start[:-1]]
    checks = [
        (
            meta[PASSAGE_DOCUMENT] != first_doc + doc_of,
            lambda i: f"is marked as document {meta[PASSAGE_DOCUMENT][i]}",
        ),
        (meta[PASSAGE_INDEX] != k, lambda i: f"is marked as passage {meta[PASSAGE_INDEX][i]}"),
        ((tokens < 0) | (tokens > rules.window), lambda i: f"has {tokens[i]} tokens (window {rules.window})"),
        (start >= end, lambda i: "is empty"),
        (first & (start != 0), lambda i: "does not start at character 0"),
        (
            ~first & (start > prev_end),
            lambda i: f"leaves characters [{prev_end[i]}, {start[i]}) in no passage",
        ),
        (
            ~first & (start <= prev_start),
            lambda i: f"does not start after the previous passage's start {prev_start[i]}",
        ),
    ]
    if rules.overlap == 0:
        checks.append((~first & (start < prev_end), lambda i: "overlaps the previous passage (OVERLAP=0)"))
    else:
        checks.append(
            (
                ~first & (start == prev_end),
                lambda i: f"does not overlap the previous one (OVERLAP={rules.overlap})",
            )
        )
    if lengths is not None:
        length = lengths[doc_of]
        checks.append(
            (last & (end != length), lambda i: f"ends at {end[i]}, not at the text's end {length[i]}")
        )
        checks.append(
            (~last & (end > length), lambda i: f"ends at {end[i]}, beyond the text's end {length[i]}")
        )
    for bad, what in checks:
        for i in np.flatnonzero(bad)[:8]:
            problems.append(
                (
                    first_doc + int(doc_of[i]),
                    int(k[i]),
                    f"passage {int(k[i])} [{start[i]}, {end[i]}) {what(i)}",
                )
            )
    return sorted(problems)[:8]


def read_meta(h5: h5py.File, lo: int, hi: int) -> dict[str, np.ndarray]:
    """Passages ``[lo, hi)``'s document, index, span and tokens."""
    return {name: h5[name][lo:hi] for name in PASSAGE_DTYPES}


def check_shard(h5: h5py.File, label: str, start: int, rows: int, dim: int, rules: Rules | None) -> int:
    """Prove a complete shard's passages: pointer, structure (without the texts' lengths), vectors finite,
    non-zero and matching their checksums. Returns the passages it holds.

    Raises:
        ShardError: naming the shard, the document and the passage.
    """
    ptr = h5[PASSAGE_PTR][:]
    emb = h5[PASSAGE_EMBEDDINGS]
    total = int(ptr[-1]) if len(ptr) else -1
    if len(ptr) != rows + 1 or ptr[0] != 0 or total != emb.shape[0] or emb.shape[1] != dim:
        raise ShardError(
            f"{label}: passage_ptr has {len(ptr)} entries ending at {total} for {rows} documents and "
            f"{emb.shape[0]} passages."
        )
    if any(h5[name].shape[0] != total for name in PASSAGE_DTYPES):
        raise ShardError(f"{label}: the passage datasets do not all hold {total} passages.")
    if rules is not None:
        for d0, d1 in document_blocks(ptr):
            lo, hi = int(ptr[d0]), int(ptr[d1])
            found = structure_problems(ptr[d0 : d1 + 1], start + d0, read_meta(h5, lo, hi), rules)
            if found:
                doc, _, what = found[0]
                raise ShardError(f"{label}: document row {doc}: {what}.")
    check_vectors(h5, label, start)
    return total


def check_vectors(h5: h5py.File, label: str, start: int) -> None:
    """Every passage vector finite, non-zero, and matching its block's checksum."""
    emb, sums = h5[PASSAGE_EMBEDDINGS], passage_sums(h5)
    step = sums.step(max(1, SCAN_BLOCK_BYTES // (4 * max(emb.shape[1], 1))))
    for lo in range(0, emb.shape[0], step):
        block = np.empty((min(step, emb.shape[0] - lo), emb.shape[1]), dtype=emb.dtype)
        read_rows(emb, block, lo, f"{label} passages", 0)
        nonfinite, zero = block_problems(block)
        for what, bad in (("non-finite values", nonfinite), ("all-zero vectors", zero)):
            if len(bad):
                raise ShardError(f"{label}: passages [{lo + bad[0]}, {lo + bad[-1] + 1}) have {what}.")
        verify_rows(block, lo, sums, f"{label} passages", 0)


def weighted_mean(emb: np.ndarray, ptr: np.ndarray, tokens: np.ndarray, normalize: bool) -> np.ndarray:
    """float32 [docs, dim]: each document's token-weighted mean of its passages' vectors.

    Args:
        emb: float32 [P, dim], the passages' vectors; document i's are rows ``[ptr[i] - ptr[0], ptr[i + 1] - ptr[0])``.
        ptr: int64 [docs + 1], every document with at least one passage.
        tokens: int [P], the weights: each passage's text tokens (a passage of none counts as 1).
        normalize: L2-normalise each mean, as the model's own vectors are (a Normalize module, NORMALIZE=1).
    """
    if len(ptr) < 2:
        return np.zeros((0, emb.shape[1]), dtype=np.float32)
    weights = np.maximum(tokens, 1).astype(np.float64)
    starts = ptr[:-1] - ptr[0]
    sums = np.add.reduceat(emb.astype(np.float64) * weights[:, None], starts, axis=0)
    means = sums / np.add.reduceat(weights, starts)[:, None]
    if normalize:
        means /= np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    return means.astype(np.float32)
