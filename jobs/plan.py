"""Pure planning: rows -> contiguous shards, which shards are pending, which worker runs which."""

from __future__ import annotations

from embedder.config import ShardSpec
from kit.errors import ConfigError


def plan_shards(n_rows: int, n_shards: int) -> list[ShardSpec]:
    """Split ``[0, n_rows)`` into ``n_shards`` contiguous, non-empty ranges of near-equal size.

    More shards than rows gives one row per shard.
    """
    if n_rows < 1:
        raise ConfigError(f"Cannot plan shards over {n_rows} rows.")
    if n_shards < 1:
        raise ConfigError(f"SHARDS must be at least 1, got {n_shards}.")
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


def assign_workers(specs: list[ShardSpec], n_workers: int) -> list[list[ShardSpec]]:
    """Round-robin ``specs`` over at most ``n_workers`` workers (no empty worker)."""
    n = max(1, min(n_workers, len(specs)))
    return [specs[w::n] for w in range(n)] if specs else []
