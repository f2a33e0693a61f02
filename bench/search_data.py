"""Synthetic embeddings with cluster structure, written as a merged embeddings.h5 (bench/search_scale.py).

Rows are unit vectors around 4,096 cluster centres, which themselves group under 64 topics (as
articles group under subjects): ``x = normalise(centre + local + noise)``, where ``local`` lies
in a shared 32-dimensional subspace (norm about 0.35) and ``noise`` is isotropic (norm about
0.15). Two rows of one cluster have a cosine of about 0.87, of one topic about 0.6, else about
0. The file has the merge's layout: contiguous float32 ``embeddings``, ``ids``/``titles``/
``urls``, ``quality_metrics``, ``provenance_*`` and a SHA-256 sidecar.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kit import atomic
from kit.format import OUTPUT_FORMAT, UTF8
from kit.h5files import open_h5
from kit.shardfile import ShardIdentity

TOPICS, CLUSTERS, LOCAL_DIMS = 64, 4096, 32
LOCAL_NORM, NOISE_NORM, TOPIC_SPREAD = 0.35, 0.15, 0.8
BLOCK_ROWS = 65536


def structure(dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(cluster centres float32 [CLUSTERS, dim], local basis float32 [LOCAL_DIMS, dim])."""
    rng = np.random.default_rng(seed)
    topics = _unit(rng.standard_normal((TOPICS, dim)))
    spread = _unit(rng.standard_normal((CLUSTERS, dim))) * TOPIC_SPREAD
    centres = _unit(topics[np.arange(CLUSTERS) % TOPICS] + spread)
    basis = rng.standard_normal((LOCAL_DIMS, dim)) * (LOCAL_NORM / np.sqrt(LOCAL_DIMS * dim))
    return centres.astype(np.float32), basis.astype(np.float32)


def clustered_block(start: int, stop: int, dim: int, seed: int = 0) -> np.ndarray:
    """Float32 unit rows [stop - start, dim]; row i depends only on (i's block, seed)."""
    centres, basis = structure(dim, seed)
    rng = np.random.default_rng((seed, start))
    n = stop - start
    x = centres[rng.integers(0, CLUSTERS, n)]
    x += rng.standard_normal((n, LOCAL_DIMS), dtype=np.float32) @ basis  # norm about LOCAL_NORM
    x += rng.standard_normal((n, dim), dtype=np.float32) * (NOISE_NORM / np.sqrt(dim))
    return _unit(x).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def identity(dim: int) -> ShardIdentity:
    """The synthetic file's embedding identity (no model: nothing encodes queries for it)."""
    return ShardIdentity(
        model="synthetic/clustered",
        model_revision="local",
        model_fingerprint="0" * 64,
        dim=dim,
        normalize_embeddings=True,
        prompt="",
        max_seq_length=256,
    )


def write_embeddings(path: Path, rows: int, dim: int, seed: int = 0) -> str:
    """Write a merged-layout embeddings.h5 of ``rows`` clustered vectors with its sidecar; its SHA-256."""
    tmp = atomic.tmp_path(path)
    with atomic.removed_on_error(tmp):
        with open_h5(tmp, "w") as h5:
            emb = h5.create_dataset("embeddings", shape=(rows, dim), dtype="float32")
            for lo in range(0, rows, BLOCK_ROWS):
                hi = min(lo + BLOCK_ROWS, rows)
                emb[lo:hi] = clustered_block(lo, hi, dim, seed)
            names = np.array([f"doc-{i}" for i in range(rows)], dtype=object)
            h5.create_dataset("ids", data=names, dtype=UTF8)
            h5.create_dataset(
                "titles", data=np.char.add("Title ", names.astype(str)).astype(object), dtype=UTF8
            )
            h5.create_dataset(
                "urls", data=np.char.add("https://example.org/", names.astype(str)).astype(object), dtype=UTF8
            )
            quality = {
                "mean_norm": 1.0,
                "std_norm": 0.0,
                "min_norm": 1.0,
                "max_norm": 1.0,
                "rows_checked": rows,
            }
            attrs = identity(dim).to_attrs("provenance_")
            h5.attrs.update(
                format=OUTPUT_FORMAT,
                model=attrs["provenance_model"],
                embedding_dim=dim,
                quality_metrics=json.dumps(quality),
                **attrs,
            )
        return atomic.commit_with_sidecar(tmp, path)
