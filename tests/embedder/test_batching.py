import itertools

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from embedder.batching import padded_tokens, token_budget_batches


def assert_every_row_once(batches: list[np.ndarray], n: int) -> None:
    flat = np.concatenate(batches) if batches else np.array([], dtype=np.int64)
    assert sorted(flat.tolist()) == list(range(n))


@given(st.lists(st.integers(1, 512), min_size=0, max_size=400), st.integers(1, 20000))
def test_batches_hold_every_row_once_within_budget(lengths, budget):
    lengths = np.array(lengths, dtype=np.int64)
    batches = token_budget_batches(lengths, budget)
    assert_every_row_once(batches, len(lengths))
    for b in batches:
        assert len(b) == 1 or len(b) * lengths[b].max() <= budget
    longest_first = [int(lengths[b].max()) for b in batches]
    assert longest_first == sorted(longest_first, reverse=True)


def test_sorting_by_tokens_removes_padding():
    rng = np.random.default_rng(0)
    lengths = rng.integers(8, 256, size=2000)
    sorted_cost = padded_tokens(lengths, token_budget_batches(lengths, 4096))
    fixed = [np.arange(i, min(i + 32, 2000)) for i in range(0, 2000, 32)]  # unsorted, 32 a batch
    assert sorted_cost < 0.7 * padded_tokens(lengths, fixed)
    assert sorted_cost >= lengths.sum()


@given(st.lists(st.integers(1, 512), min_size=0, max_size=400), st.integers(1, 20000))
def test_packed_batches_hold_every_row_once_within_budget(lengths, budget):
    from embedder.batching import packed_batches

    lengths = np.array(lengths, dtype=np.int64)
    batches = packed_batches(lengths, budget)
    assert_every_row_once(batches, len(lengths))
    assert all(len(b) == 1 or lengths[b].sum() <= budget for b in batches)
    assert all(lengths[a].sum() + lengths[b][0] > budget for a, b in itertools.pairwise(batches))  # filled
