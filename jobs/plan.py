"""Pure planning: rows -> contiguous shards of near-equal cost, and which shards are pending."""

from __future__ import annotations

import numpy as np

from kit.errors import ConfigError
from kit.shardfile import ShardSpec


def plan_shards(costs: np.ndarray | int, n_shards: int) -> list[ShardSpec]:
    """Split ``[0, N)`` into ``n_shards`` contiguous, non-empty ranges of near-equal estimated cost.

    Args:
        costs: float array of shape [N], the estimated cost of each row (``kit.corpusfile.row_costs``:
            tokens), all >= 0; or an int N for rows of equal cost (ranges then differ by at most one row).
        n_shards: shards wanted; more shards than rows gives one row per shard.

    Returns:
        ShardSpecs tiling ``[0, N)`` in order. Each cut is placed at the row boundary nearest its
        target ``k * total / n``, so a shard's cost is within one row's cost of the mean:
        ``max(shard cost) <= total / n + max(costs)``.
    """
    if n_shards < 1:
        raise ConfigError(f"SHARDS must be at least 1, got {n_shards}.")
    if isinstance(costs, (int, np.integer)):
        return _equal_rows(int(costs), n_shards)
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1 or len(costs) < 1:
        raise ConfigError(f"Cannot plan shards over {costs.shape} row costs.")
    if not np.isfinite(costs).all() or (costs < 0).any():
        raise ConfigError("Row costs must be finite and >= 0.")
    n = min(n_shards, len(costs))
    return _specs(_cuts(np.concatenate(([0.0], np.cumsum(costs))), n))


def _cuts(prefix: np.ndarray, n: int) -> np.ndarray:
    """Boundaries 0 = b_0 < b_1 < ... < b_n = N, b_k the prefix nearest ``k * total / n``."""
    rows = len(prefix) - 1
    targets = prefix[-1] * np.arange(1, n) / n
    right = np.searchsorted(prefix, targets, side="left").clip(1, rows)
    left = right - 1
    nearer_left = (targets - prefix[left]) <= (prefix[right] - targets)
    inner = np.where(nearer_left, left, right)
    cuts = np.concatenate(([0], inner, [rows])).astype(np.int64)
    # Keep every range non-empty: cut k no later than leaves one row to each later shard
    # (cumulative min from the end), then at least one row after cut k - 1 (cumulative max).
    k = np.arange(n + 1)
    cuts = k + np.minimum.accumulate((cuts - k)[::-1])[::-1]
    cuts[0] = 0
    return k + np.maximum.accumulate(cuts - k)


def _specs(cuts: np.ndarray) -> list[ShardSpec]:
    return [ShardSpec(i, int(a), int(b)) for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:]))]


def _equal_rows(n_rows: int, n_shards: int) -> list[ShardSpec]:
    if n_rows < 1:
        raise ConfigError(f"Cannot plan shards over {n_rows} rows.")
    n_shards = min(n_shards, n_rows)
    base, extra = divmod(n_rows, n_shards)
    specs, start = [], 0
    for index in range(n_shards):
        stop = start + base + (1 if index < extra else 0)
        specs.append(ShardSpec(index, start, stop))
        start = stop
    return specs


def pending_shards(plan: list[ShardSpec], complete: set[int]) -> list[ShardSpec]:
    """Planned shards whose final file does not exist yet."""
    return [spec for spec in plan if spec.index not in complete]
