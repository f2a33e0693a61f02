"""Reuse of an earlier run's vectors (REUSE=): which identities may share vectors, which rows match.

Pure functions; the files are read and written by ``embedder.reuse``. A row takes an earlier
vector only when everything that decides the vector is equal: the exact model input (its id and
content hash, the XXH3-128 of the text the model is given) and the embedding identity (weights,
revision, prompt, pooling, normalisation, max_seq_length, dimension, and the passage window and
overlap: with PASSAGES=1 a document takes all its passages from the earlier file, or none).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from kit.shardfile import ShardIdentity

# What decides a vector besides its text: compared between the earlier file and this run. The model's
# name (a hub name, or a folder that differs between machines) counts only where no weights
# fingerprint says which weights they are.
REUSE_IDENTITY_KEYS = (
    "model_fingerprint",
    "model_revision",
    "prompt",
    "pooling",
    "normalize_embeddings",
    "max_seq_length",
    "dim",
)
# PASSAGES=1 changes what a document's vector is (and adds its passages): compared both ways, so a plain run
# never takes a passage run's document vectors, nor the reverse.
PASSAGE_IDENTITY_KEYS = ("passage_window", "passage_overlap")
NOT_REUSED = -1  # source_row of a row that is computed
REUSED_ROW_COST = 0.01  # a copied vector in the plan's cost (tokens): about nothing beside computing one


def identity_differences(earlier: ShardIdentity, this: ShardIdentity) -> dict[str, tuple[Any, Any]]:
    """Field -> (earlier, this) for every part of the embedding identity this run has and the earlier
    file has otherwise (``ShardIdentity.differences`` over ``REUSE_IDENTITY_KEYS``)."""
    keys = list(REUSE_IDENTITY_KEYS)
    if not (earlier.model_fingerprint and this.model_fingerprint):
        keys.insert(0, "model")
    found = {key: (theirs, mine) for key, (mine, theirs) in this.differences(earlier, keys).items()}
    for key in PASSAGE_IDENTITY_KEYS:
        if getattr(earlier, key) != getattr(this, key):
            found[key] = (getattr(earlier, key), getattr(this, key))
    return found


def _key_table(ids: np.ndarray, hashes: np.ndarray, row_name: str) -> pa.Table:
    """(id, the hash as two uint64, row) for a hash join; ``hashes`` is uint8 [N, 16]."""
    halves = np.ascontiguousarray(hashes, dtype=np.uint8).view(np.uint64).reshape(len(ids), 2)
    return pa.table(
        {
            "id": pa.array(ids, type=pa.binary()),
            "h0": halves[:, 0],
            "h1": halves[:, 1],
            row_name: np.arange(len(ids), dtype=np.int64),
        }
    )


def match_rows(
    earlier_ids: np.ndarray, earlier_hashes: np.ndarray, ids: np.ndarray, hashes: np.ndarray
) -> np.ndarray:
    """For each row of this corpus, the earlier file's row with the same id and content hash, else -1.

    Args:
        earlier_ids, ids: arrays of bytes (UTF-8 ids, as HDF5 returns them).
        earlier_hashes, hashes: uint8 arrays [N, 16] of content hashes.

    Returns:
        int64 [len(ids)]: the earlier row, or ``NOT_REUSED``. One hash join (Arrow), no loop per row.
        A row whose hash is all zeros (no hash recorded) never matches.
    """
    if len(ids) == 0 or len(earlier_ids) == 0:
        return np.full(len(ids), NOT_REUSED, dtype=np.int64)
    joined = _key_table(ids, hashes, "row").join(
        _key_table(earlier_ids, earlier_hashes, "earlier_row"), keys=["id", "h0", "h1"], join_type="inner"
    )
    out = np.full(len(ids), NOT_REUSED, dtype=np.int64)
    out[joined["row"].to_numpy()] = joined["earlier_row"].to_numpy()
    unhashed = ~np.ascontiguousarray(hashes).any(axis=1)
    out[unhashed] = NOT_REUSED
    return out


def left_costs(costs: np.ndarray, source_rows: np.ndarray) -> np.ndarray:
    """Row costs with each reused row at ``REUSED_ROW_COST``: what the plan balances."""
    return np.where(source_rows >= 0, REUSED_ROW_COST, costs)


def describe_differences(differences: Mapping[str, tuple[Any, Any]]) -> list[str]:
    """One line per difference: ``prompt: '' (earlier) vs 'query: ' (this run)``."""

    def show(v: Any) -> str:
        text = repr(v) if isinstance(v, str) or v is None else str(v)
        return text if len(text) <= 100 else text[:97] + "..."

    return [f"{key}: {show(a)} (earlier) vs {show(b)} (this run)" for key, (a, b) in differences.items()]
