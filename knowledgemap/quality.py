"""How faithful the map is: trustworthiness, and topic agreement of neighbours on the map vs in embedding space."""

from __future__ import annotations

import numpy as np


def sample_indices(n: int, size: int, seed: int = 0) -> np.ndarray:
    """``size`` distinct indices below ``n`` (all of them if fewer), drawn with ``seed``, sorted."""
    return np.sort(np.random.default_rng(seed).choice(n, size=min(size, n), replace=False))


def trustworthiness(embeddings: np.ndarray, coords: np.ndarray, k: int, metric: str) -> float:
    """scikit-learn's trustworthiness of the 2-D map (1.0: no false neighbours)."""
    from sklearn.manifold import trustworthiness as tw

    return float(tw(embeddings, coords, n_neighbors=k, metric=metric))


def topic_agreement(points: np.ndarray, topics: np.ndarray, k: int, metric: str) -> float:
    """Mean share of each point's k nearest neighbours (itself excluded) that have its topic."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric).fit(points)
    neighbours = nn.kneighbors(points, return_distance=False)[:, 1:]
    return float((topics[neighbours] == topics[:, None]).mean())


def map_quality(
    embeddings: np.ndarray, coords: np.ndarray, topics: np.ndarray | None, sample: int, k: int, metric: str
) -> dict:
    """Figures on a sample of points: trustworthiness and, with topics, neighbour agreement both ways."""
    idx = sample_indices(len(coords), sample)
    emb, xy = embeddings[idx], coords[idx]
    out = {"sample": int(len(idx)), "k": k, "trustworthiness": trustworthiness(emb, xy, k, metric)}
    if topics is not None and len(set(topics[idx])) > 1:
        out["topic_agreement_map"] = topic_agreement(xy, topics[idx], k, "euclidean")
        out["topic_agreement_embedding"] = topic_agreement(emb, topics[idx], k, metric)
        out["topic_agreement_ratio"] = out["topic_agreement_map"] / out["topic_agreement_embedding"]
    return out
