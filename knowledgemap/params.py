"""MapParams: how the map is made (recorded in map.h5)."""

from __future__ import annotations

from dataclasses import dataclass

from kit.errors import ConfigError


@dataclass(frozen=True)
class MapParams:
    n_neighbors: int = 15  # the seeds' UMAP settings
    min_dist: float = 0.1
    metric: str = "cosine"
    seed: int | None = None  # a seed is reproducible but single-threaded in umap-learn; None: parallel
    pca_dims: int | None = 32  # PCA to this many dimensions first (about 2x faster at equal trustworthiness,
    # bench/umap_speed.py); None or 0 fits UMAP on the full embeddings
    coarse_share: float = 0.01  # coarse regions: HDBSCAN min_cluster_size as a share of the rows (n / 100)
    fine_share: float = 0.004  # finer neighbourhoods, shown when zooming in (n / 250)
    quality_sample: int = 3000  # points sampled for trustworthiness and neighbour agreement
    quality_k: int = 10  # neighbours compared

    def __post_init__(self) -> None:
        if (
            self.n_neighbors < 2
            or not 0.0 <= self.min_dist <= 1.0
            or not 0 < self.fine_share <= self.coarse_share < 1
        ):
            raise ConfigError(f"Invalid map parameters: {self}.")
        if self.pca_dims and self.pca_dims < 2:
            raise ConfigError(f"pca_dims must be at least 2, got {self.pca_dims}.")
