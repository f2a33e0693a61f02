"""The K best rows per query, merged block by block, in one deterministic order.

Order: score descending, then row ascending, so equal scores never reorder between runs, block
sizes or thread counts. A block's candidates are the rows scoring at least the running K-th
score (found with ``np.partition`` the first time, a comparison after): every row of the true
top K passes, and the selection among candidates is a sort, so the result is exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Hits:
    """The K best rows of each query: row i of both arrays answers query i, best first."""

    rows: np.ndarray  # int64 [Q, K]: rows of the searched dataset; -1 where it has fewer than K rows
    scores: np.ndarray  # float32 [Q, K]: cosine similarity; -inf where ``rows`` is -1

    @property
    def k(self) -> int:
        return int(self.rows.shape[1])


class TopK:
    """The running K best (score, row) pairs of Q queries."""

    def __init__(self, queries: int, k: int):
        """Empty: every slot holds row -1 with score -inf."""
        self.k = k
        self.scores = np.full((queries, k), -np.inf, dtype=np.float32)
        self.rows = np.full((queries, k), -1, dtype=np.int64)

    def add_block(self, scores: np.ndarray, first_row: int) -> None:
        """Offer ``scores`` (float32 [Q, B]) of rows ``[first_row, first_row + B)``."""
        threshold = self.scores[:, -1]
        width = scores.shape[1]
        if width > 2 * self.k and not np.isfinite(threshold).any():
            kth = np.partition(scores, width - self.k, axis=1)[:, width - self.k]
            threshold = np.maximum(threshold, kth)
        query, column = np.nonzero(scores >= threshold[:, None])
        self.add(query, column + first_row, scores[query, column])

    def add(self, query: np.ndarray, rows: np.ndarray, scores: np.ndarray) -> None:
        """Offer candidates: ``scores[j]`` of row ``rows[j]`` for query ``query[j]`` (1-D, same length)."""
        if len(query) == 0:
            return
        n_queries = self.scores.shape[0]
        all_query = np.concatenate([np.repeat(np.arange(n_queries), self.k), query])
        all_scores = np.concatenate([self.scores.ravel(), scores.astype(np.float32, copy=False)])
        all_rows = np.concatenate([self.rows.ravel(), rows.astype(np.int64, copy=False)])
        order = np.lexsort((all_rows, _query_then_score(all_query, all_scores)))  # two stable sorts
        starts = np.searchsorted(all_query[order], np.arange(n_queries))
        keep = order[starts[:, None] + np.arange(self.k)]
        self.scores, self.rows = all_scores[keep], all_rows[keep]

    def merge(self, other: TopK) -> None:
        """Add the pairs ``other`` holds (the top K of another part of the rows)."""
        filled = other.rows >= 0
        query = np.nonzero(filled)[0]
        self.add(query, other.rows[filled], other.scores[filled])

    def hits(self, k: int | None = None) -> Hits:
        """The result: the first ``k`` (default all K) columns."""
        k = self.k if k is None else k
        return Hits(rows=self.rows[:, :k].copy(), scores=self.scores[:, :k].copy())


def _query_then_score(query: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Uint64 keys ordering by query ascending, then score descending (-0.0 as 0.0).

    A float32's bits, sign bit flipped (all bits for a negative), order as the floats do; inverted,
    the highest score sorts first.
    """
    bits = (scores + np.float32(0)).view(np.uint32)
    ordered = np.where(bits >> 31, ~bits, bits | np.uint32(1 << 31))
    return (query.astype(np.uint64) << np.uint64(32)) | (~ordered).astype(np.uint64)


def select(rows: np.ndarray, scores: np.ndarray, k: int) -> Hits:
    """The ``k`` best of candidate ``rows`` (int [Q, C], -1 for none) by ``scores`` (float [Q, C])."""
    top = TopK(rows.shape[0], k)
    query, column = np.nonzero(rows >= 0)
    top.add(query, rows[query, column], scores[query, column])
    return top.hits()
