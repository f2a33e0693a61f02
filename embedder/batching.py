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


def packed_batches(lengths: np.ndarray, max_tokens: int) -> list[np.ndarray]:
    """Group row indices so that the tokens of a batch (no padding) stay within ``max_tokens``.

    For padding-free (packed) batches, where a batch is one flat sequence of its rows. Rows go
    longest first, as in ``token_budget_batches``; a row longer than the budget is alone.
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    batches, begin, total = [], 0, 0
    for pos, row in enumerate(order):
        size = max(int(lengths[row]), 1)
        if pos > begin and total + size > max_tokens:
            batches.append(order[begin:pos])
            begin, total = pos, 0
        total += size
    if begin < len(order):
        batches.append(order[begin:])
    return batches


def computed_tokens(lengths: np.ndarray, packed: bool) -> int:
    """Tokens one batch of rows with these lengths costs: their sum packed, rows x longest padded."""
    if not len(lengths):
        return 0
    return int(np.sum(lengths)) if packed else len(lengths) * int(np.max(lengths))
