"""Exact float32 scores for the candidate rows an index or a smaller copy proposes.

Any object with ``take(rows) -> float32 [n, D]`` and ``unit_norm`` serves as the rows: the
float32 file (``VectorFile``) or the int8 copy (``search.compact.Int8File``). The final order is
``search.topk``'s (score descending, row ascending), and the scores are float32 cosines as
``exact_search`` computes them (up to the last bit: another BLAS kernel sums in another order).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from search.topk import Hits, select

QUERY_GROUP = 32  # queries whose candidates are gathered at once: QUERY_GROUP x C x D floats


class Rows(Protocol):
    """Rows that can be gathered by number."""

    unit_norm: bool

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Float32 [n, D]: rows ``rows`` (int [n], any order)."""
        ...


def rescore(rows_source: Rows, queries: np.ndarray, candidates: np.ndarray, k: int) -> Hits:
    """The ``k`` best of ``candidates`` (int [Q, C], -1 for none) by cosine with ``queries`` (unit [Q, D])."""
    scores = np.full(candidates.shape, -np.inf, dtype=np.float32)
    for a in range(0, len(queries), QUERY_GROUP):
        part = candidates[a : a + QUERY_GROUP]
        scores[a : a + QUERY_GROUP] = _scores(rows_source, queries[a : a + QUERY_GROUP], part)
    return select(candidates, scores, k)


def _scores(rows_source: Rows, queries: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """Float32 [q, C] cosines; -inf where a candidate is -1."""
    valid = candidates >= 0
    gathered = rows_source.take(np.where(valid, candidates, 0).ravel())  # row 0 stands in for none
    gathered = gathered.reshape(*candidates.shape, queries.shape[1])
    scores = np.matmul(gathered, queries[:, :, None])[:, :, 0]
    if not rows_source.unit_norm:
        norms = np.sqrt(np.einsum("qcd,qcd->qc", gathered, gathered))
        scores = np.divide(scores, norms, out=np.zeros_like(scores), where=norms > 0)
    scores[~valid] = -np.inf
    return scores.astype(np.float32, copy=False)
