"""Held-out queries and recall@k: how an index or a smaller copy is measured against exact search.

A held-out query is a row of the file with noise added (then normalised): near its row but not
equal to it, so its nearest neighbours are a real ranking problem, and it needs no text or model.
"""

from __future__ import annotations

import numpy as np

from search.topk import Hits
from search.vectors import VectorFile

NOISE = 0.5  # norm of the noise added to a unit row: the query's cosine to its own row is about 0.9


def held_out_queries(vectors: VectorFile, count: int, seed: int = 0, noise: float = NOISE) -> np.ndarray:
    """Float32 [count, D]: ``count`` distinct random rows (fewer if N is smaller), perturbed, unit norm."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(vectors.rows, size=min(count, vectors.rows), replace=False))
    base = vectors.take(rows)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    jitter = rng.standard_normal(base.shape).astype(np.float32)
    jitter *= noise / np.linalg.norm(jitter, axis=1, keepdims=True)
    queries = base + jitter
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


def recall_at_k(found: Hits, truth: Hits, k: int = 10) -> float:
    """Mean share of each query's true top ``k`` rows that ``found``'s top ``k`` holds (0..1)."""
    k = min(k, truth.k, found.k)
    if k == 0:
        return 1.0
    hit = [len(np.intersect1d(f[:k], t[:k])) for f, t in zip(found.rows, truth.rows)]
    return float(np.mean(hit)) / k
