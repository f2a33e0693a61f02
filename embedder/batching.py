"""Token-budget batches: pure functions over token lengths."""

from __future__ import annotations

import numpy as np


def token_budget_batches(lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Group row indices so that rows x longest row stays within ``max_tokens`` per batch.

    Rows are sorted by length, longest first, so each batch pads to nearly its own length and
    the first batch (the largest activations) fails fast if memory is short. A row longer than
    the budget gets a batch of its own.

    Args:
        lengths: int array of shape [n], tokens per row (after truncation).
        max_tokens: the budget of one forward pass.

    Returns:
        Index arrays into ``lengths``; together they hold every index exactly once.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, begin = [], 0
    while begin < len(order):
        longest = max(int(lengths[order[begin]]), 1)
        count = max(max_tokens // longest, 1)
        batches.append(order[begin : begin + count])
        begin += count
    return batches


def padded_tokens(lengths: np.ndarray, batches: list[np.ndarray]) -> int:
    """Tokens actually computed, padding included (the cost the batching minimises)."""
    return int(sum(len(b) * int(lengths[b].max()) for b in batches if len(b)))
