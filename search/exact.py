"""Exact cosine search over a ``VectorFile``: blockwise, threaded, float32, memory flat in N.

Each of ``threads`` workers takes the next block of rows (a view of the memory map, or one read
of whole HDF5 chunks), scores it against every query with one float32 matrix product (numpy
releases the GIL; BLAS itself is held to one thread per worker so the two do not fight for the
cores), and keeps its own running top K (``search.topk``). The workers' top K are merged at the
end. Memory: one [Q, block] score matrix per worker, whatever N is. Scores are never computed
in float16 or bfloat16: their rounding makes ties that reorder results.

>>> with VectorFile("runs/demo/embeddings.h5") as vectors:
...     hits = exact_search(vectors, query_vectors, k=10)   # hits.rows, hits.scores: [Q, 10]
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from collections.abc import Callable

import numpy as np

from kit.errors import ConfigError
from search.topk import Hits, TopK
from search.vectors import BlockRows

SCORE_BYTES = 8 << 20  # one worker's [Q, block] float32 score matrix
MIN_BLOCK_ROWS, MAX_BLOCK_ROWS = 1024, 65536
MAX_QUERIES = 1024  # queries scored in one pass over the rows; more take several passes
ROWS_PER_RESULT = 16  # a block holds at least 16 x k rows (block_rows_for)


def available_cores() -> int:
    """CPU cores this process may run on (Slurm's cgroup and taskset included)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def prepare_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    """Queries as C-contiguous float32 [Q, dim], L2-normalised (the score is the cosine).

    Raises:
        ConfigError: wrong dimension, or a query that is zero or not finite.
    """
    q = np.ascontiguousarray(np.atleast_2d(np.asarray(queries, dtype=np.float32)))
    if q.ndim != 2 or q.shape[1] != dim:
        raise ConfigError(f"Query vectors have shape {q.shape}; the vectors searched have dimension {dim}.")
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    if not (np.isfinite(norms).all() and norms.all()):
        raise ConfigError("A query vector is zero or not finite: nothing can be compared with it.")
    return q / norms


def block_rows_for(queries: int, chunk_rows: int = 1, k: int = 10) -> int:
    """Rows per block: the [queries, block] scores fit SCORE_BYTES; a whole number of HDF5 chunks.

    At least ``ROWS_PER_RESULT * k`` rows, so merging a block into the running top k (a sort of
    Q x k entries) stays small beside scoring it (Q x block), also for hundreds of candidates.
    """
    rows = min(MAX_BLOCK_ROWS, max(MIN_BLOCK_ROWS, SCORE_BYTES // (4 * queries), ROWS_PER_RESULT * k))
    return max(chunk_rows, rows - rows % chunk_rows)


def queries_per_pass(block_rows: int) -> int:
    """Queries scored in one pass over the rows: their [Q, block] scores fit SCORE_BYTES."""
    return max(1, min(MAX_QUERIES, SCORE_BYTES // (4 * block_rows)))


def block_scores(queries: np.ndarray, block: np.ndarray, unit_norm: bool) -> np.ndarray:
    """Float32 [Q, B] cosines of ``queries`` [Q, D] (unit) with the rows of ``block`` [B, D]."""
    scores = (block @ queries[0])[None, :] if len(queries) == 1 else queries @ block.T
    if not unit_norm:
        scores /= np.sqrt(np.einsum("ij,ij->i", block, block))[None, :]
    return scores


def exact_search(vectors: BlockRows, queries: np.ndarray, k: int = 10, threads: int | None = None) -> Hits:
    """The ``k`` rows of ``vectors`` with the highest cosine to each query, exactly.

    Args:
        vectors: the rows to search: a ``VectorFile`` (float32 [N, D]), or any ``BlockRows``.
        queries: float [Q, D] query vectors (any norm; normalised here).
        k: rows per query (N where the dataset has fewer rows).
        threads: workers; None uses every core this process may run on.

    Returns:
        Hits with rows int64 [Q, min(k, N)] and scores float32 (the same shape), best first, ties by
        ascending row.
    """
    q = prepare_queries(queries, vectors.dim)

    def cosines(part: np.ndarray, block: np.ndarray) -> np.ndarray:
        return block_scores(part, block, vectors.unit_norm)

    return scan(vectors, q, k, cosines, threads)


def scan(
    source: BlockRows,
    queries: np.ndarray,
    k: int,
    score: Callable[[np.ndarray, np.ndarray], np.ndarray],
    threads: int | None = None,
) -> Hits:
    """The ``k`` best rows of ``source`` by ``score(queries, block) -> float32 [Q, B]`` (exact cosine,
    Hamming distance negated, ...), in passes over the rows of as many queries as SCORE_BYTES allows."""
    per_pass = queries_per_pass(block_rows_for(min(len(queries), MAX_QUERIES), source.chunk_rows, k))
    parts = [
        _scan(source, queries[a : a + per_pass], k, score, threads) for a in range(0, len(queries), per_pass)
    ]
    return Hits(
        rows=np.concatenate([p.rows for p in parts]), scores=np.concatenate([p.scores for p in parts])
    )


def _scan(source: BlockRows, q: np.ndarray, k: int, score: Callable, threads: int | None) -> Hits:
    """One pass over the rows for the queries ``q``: workers take blocks in turn, then merge."""
    step = block_rows_for(len(q), source.chunk_rows, k)
    starts = range(0, source.rows, step)
    workers = max(1, min(threads or available_cores(), len(starts)))
    claim = itertools.count().__next__  # thread-safe: each worker takes the next block

    def worker() -> TopK:
        top = TopK(len(q), k)
        while (i := claim()) < len(starts):
            lo = starts[i]
            top.add_block(score(q, source.block(lo, min(lo + step, source.rows))), lo)
        return top

    with _one_blas_thread(workers), ThreadPoolExecutor(workers) as pool:
        tops = [f.result() for f in [pool.submit(worker) for _ in range(workers)]]
    for other in tops[1:]:
        tops[0].merge(other)
    return tops[0].hits(min(k, source.rows))


def _one_blas_thread(workers: int):
    """BLAS held to one thread while several workers each run it (a no-op for one worker)."""
    if workers == 1:
        return nullcontext()
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # comes with scikit-learn

    return threadpool_limits(1, user_api="blas")
