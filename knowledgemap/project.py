"""Fit UMAP (optionally after PCA) and project into the unit square; project new vectors later."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from kit.errors import ConfigError
from knowledgemap.params import MapParams


@dataclass
class Projection:
    """The fitted model: PCA (or None), the UMAP reducer, and the bounds used to normalise."""

    reducer: Any  # umap.UMAP (untyped)
    pca: Any | None  # sklearn PCA (untyped)
    low: np.ndarray  # float64 [2]: raw UMAP minimum per axis
    high: np.ndarray  # float64 [2]: raw UMAP maximum per axis

    def normalise(self, raw: np.ndarray) -> np.ndarray:
        """``raw`` points scaled into [0, 1] per axis by the projection's range, as float32."""
        return ((raw - self.low) / np.maximum(self.high - self.low, 1e-12)).astype(np.float32)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        """New vectors [m, dim] -> map coordinates [m, 2] (may fall slightly outside [0, 1])."""
        x = self.pca.transform(vectors) if self.pca is not None else vectors
        return self.normalise(self.reducer.transform(x))


def fit(embeddings: np.ndarray, params: MapParams) -> tuple[np.ndarray, Projection]:
    """Coordinates [n, 2] in [0, 1] for ``embeddings`` [n, dim], and the fitted projection."""
    import umap

    if len(embeddings) < 4:
        raise ConfigError(f"A map needs at least 4 rows; this run has {len(embeddings)}.")
    pca = None
    x = embeddings
    if params.pca_dims and params.pca_dims < min(embeddings.shape):  # PCA only where it reduces
        from sklearn.decomposition import PCA

        pca = PCA(n_components=params.pca_dims, random_state=params.seed if params.seed is not None else 0)
        x = pca.fit_transform(embeddings)
    neighbours = min(params.n_neighbors, len(x) - 1)  # tiny corpora: UMAP needs fewer neighbours than rows
    reducer = umap.UMAP(
        n_components=2,
        n_neighbors=neighbours,
        min_dist=params.min_dist,
        metric=params.metric,
        random_state=params.seed,
        low_memory=True,
        n_jobs=1 if params.seed is not None else -1,
    )
    raw = reducer.fit_transform(x).astype(np.float64)
    projection = Projection(reducer, pca, raw.min(axis=0), raw.max(axis=0))
    return projection.normalise(raw), projection
