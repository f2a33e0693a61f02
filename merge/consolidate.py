"""Stream verified shards and the corpus metadata into one HDF5 file, in constant memory."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import h5py
import numpy as np

from kit.h5files import open_h5
from kit.shardfile import (
    SCAN_BLOCK_BYTES,
    ShardHeader,
    block_problems,
    block_sums,
    describe_rows,
    read_rows,
    verify_rows,
)
from kit.errors import ShardDataError
from kit.corpusfile import copy_meta
from kit.format import OUTPUT_FORMAT
from merge.passages import copy_passages, rules_of

log = logging.getLogger(__name__)


@dataclass
class NormStats:
    """Streaming norm statistics (the seeds' quality_metrics)."""

    count: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    low: float = math.inf
    high: float = 0.0

    def add(self, norms: np.ndarray) -> None:
        """Add the row norms ``norms`` to the statistics."""
        norms = norms.astype(np.float64)
        self.count += len(norms)
        self.total += float(norms.sum())
        self.total_sq += float(np.dot(norms, norms))
        self.low = min(self.low, float(norms.min()))
        self.high = max(self.high, float(norms.max()))

    def metrics(self) -> dict:
        """The quality metrics of the norms added: mean, std, min and max, and the rows checked."""
        mean = self.total / self.count
        return {
            "mean_norm": mean,
            "std_norm": math.sqrt(max(self.total_sq / self.count - mean**2, 0.0)),
            "min_norm": self.low,
            "max_norm": self.high,
            "has_nan": False,
            "has_inf": False,
            "zero_rows": 0,
            "rows_checked": self.count,
        }


def _block_rows(dim: int) -> int:
    return max(1, SCAN_BLOCK_BYTES // (4 * dim))


def _create_output(out: h5py.File, corpus_path: Path, rows: int, dim: int) -> None:
    # Contiguous (unchunked) embeddings: the fastest layout to write once and read in slices.
    out.create_dataset("embeddings", shape=(rows, dim), dtype="float32")
    # Output rows are exactly the corpus rows: ids, titles, urls, topics, content hashes, /rejected
    # come from the one corpus layer (the index, and the source parquet for the text fields).
    copy_meta(corpus_path, out)


def _check_block(block: np.ndarray, norms: np.ndarray, first_row: int, header: ShardHeader) -> None:
    """Refuse NaN/Inf and all-zero rows; the norms flag a bad block, the exact scan names its rows."""
    if np.isfinite(norms).all() and norms.all():
        return
    nonfinite, zero = block_problems(block)
    for what, bad in (("non-finite values", nonfinite), ("all-zero rows", zero)):
        if len(bad):
            raise ShardDataError(
                f"{header.path.name} has {what} at {describe_rows(first_row, bad)}.", shard=header.path
            )


def _copy_shard(
    shard: h5py.File,
    header: ShardHeader,
    out: h5py.File,
    corpus_ids: h5py.Dataset,
    buf: np.ndarray,
    stats: NormStats,
) -> None:
    """Copy one shard block by block: check values, accumulate norms, align ids with the corpus."""
    emb, rows, sums = shard["embeddings"], header.stop - header.start, block_sums(shard)
    error = partial(ShardDataError, shard=header.path)
    step = sums.step(buf.shape[0]) if sums else buf.shape[0]  # whole checksummed blocks; buf has room
    for lo in range(0, rows, step):
        n = min(step, rows - lo)
        block = buf[:n]
        read_rows(emb, block, lo, header.path.name, header.start, error)
        norms = np.sqrt(np.einsum("ij,ij->i", block, block))
        _check_block(block, norms, header.start + lo, header)
        verify_rows(block, lo, sums, header.path.name, header.start, error)
        stats.add(norms)
        dest = header.start + lo
        out["embeddings"].write_direct(block, dest_sel=np.s_[dest : dest + n])
        _check_ids(shard["ids"][lo : lo + n], corpus_ids[dest : dest + n], dest, header)


def _check_ids(shard_ids: np.ndarray, corpus_ids: np.ndarray, dest: int, header: ShardHeader) -> None:
    if not np.array_equal(shard_ids, corpus_ids):
        first = int(np.flatnonzero(shard_ids != corpus_ids)[0])
        raise ShardDataError(
            f"{header.path.name} row {dest + first}: shard id {shard_ids[first]!r} is not the "
            f"corpus id {corpus_ids[first]!r}; the shard was embedded from another corpus.",
            shard=header.path,
        )


def consolidate(
    headers: list[ShardHeader],
    corpus_path: Path,
    out_path: Path,
    attrs: dict,
    extra_quality: dict | None = None,
) -> dict:
    """Write ``out_path`` from shards sorted by start that tile [0, N). Returns quality_metrics (the norms'
    statistics, with ``extra_quality`` added: the canary check's).

    Memory is one block of about 16 MiB whatever N is.

    Raises:
        ShardDataError: a checksum mismatch, non-finite or all-zero rows, or ids that differ from the corpus;
            its ``shard`` is the file.
    """
    headers = sorted(headers, key=lambda h: h.start)
    rows, dim = headers[-1].stop, int(headers[0].identity.dim or 0)
    stats = NormStats()
    buf = np.empty((_block_rows(dim), dim), dtype=np.float32)
    with open_h5(out_path, "w") as out:
        _create_output(out, corpus_path, rows, dim)
        for header in headers:
            with open_h5(header.path) as shard:
                _copy_shard(shard, header, out, out["ids"], buf, stats)
            log.info("merged %s rows [%d, %d)", header.path.name, header.start, header.stop)
        if rules_of(headers[0]) is not None:  # PASSAGES=1: the second level, proven the same way
            identity = headers[0].identity
            normalize = identity.normalize_embeddings or "Normalize" in str(identity.pooling or "")
            out.attrs["total_passages"] = copy_passages(headers, corpus_path, out, normalize)
        quality = {**stats.metrics(), **(extra_quality or {})}
        out.attrs.update(
            format=OUTPUT_FORMAT,
            total_articles=rows,
            embedding_dim=dim,
            shape=(rows, dim),
            quality_metrics=json.dumps(quality),
            **attrs,
        )
    return quality
