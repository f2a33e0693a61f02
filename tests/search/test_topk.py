"""The running top K: whatever the blocks and however many workers merge, the result is the first K of
(score descending, row ascending) over all rows, ties included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from search.topk import TopK, select


def reference(scores: np.ndarray, k: int) -> np.ndarray:
    rows = np.arange(scores.shape[1])
    return np.array([np.lexsort((rows, -s))[:k] for s in scores])


@settings(max_examples=200, deadline=None)
@given(
    queries=st.integers(1, 4),
    rows=st.integers(1, 300),
    k=st.integers(1, 40),
    levels=st.integers(1, 6),  # few distinct scores: many ties
    cuts=st.lists(st.integers(0, 300), max_size=6),
    workers=st.integers(1, 3),
    seed=st.integers(0, 2**16),
)
def test_blocks_and_workers_give_the_reference_order(queries, rows, k, levels, cuts, workers, seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, levels, (queries, rows)).astype(np.float32)
    bounds = sorted({0, rows, *(c for c in cuts if c < rows)})
    tops = [TopK(queries, k) for _ in range(workers)]
    for i, (lo, hi) in enumerate(zip(bounds, bounds[1:])):
        tops[i % workers].add_block(scores[:, lo:hi], lo)
    for other in tops[1:]:
        tops[0].merge(other)
    hits = tops[0].hits(min(k, rows))
    expected = reference(scores, min(k, rows))
    assert hits.rows.tolist() == expected.tolist()
    assert hits.scores.tolist() == np.take_along_axis(scores, expected, axis=1).tolist()


def test_select_skips_missing_candidates_and_orders_ties_by_row():
    rows = np.array([[5, -1, 2, 9], [-1, -1, 3, 1]])
    scores = np.array([[0.5, 9.0, 0.5, 0.7], [1.0, 1.0, 0.2, 0.2]], dtype=np.float32)
    hits = select(rows, scores, 3)
    assert hits.rows.tolist() == [[9, 2, 5], [1, 3, -1]]
    assert hits.scores[1, 2] == -np.inf
