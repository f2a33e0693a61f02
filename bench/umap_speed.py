"""UMAP wall time: the kit's map projection vs umap-learn with default settings, same data, same run.

    python bench/umap_speed.py [--rows 250000] [--dim 768] [--pca-dims 32]

Data: unit vectors around 60 random cluster centres in a random 40-dimensional subspace of
R^dim, plus isotropic noise (embedding-like: clustered, low intrinsic dimension). Baseline:
``umap.UMAP()`` with its defaults. Kit: ``knowledgemap.project.fit`` with the seeds' settings
(cosine, 15 neighbours, min_dist 0.1), parallel, after PCA to --pca-dims (the default of make map). Trustworthiness of
both maps on the same 3,000-point sample of the original vectors (k = 10).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from knowledgemap.params import MapParams  # noqa: E402
from knowledgemap.project import fit  # noqa: E402
from knowledgemap.quality import sample_indices, trustworthiness  # noqa: E402


def clustered(rows: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, 40)))[0]  # [dim, 40] orthonormal
    centres = rng.standard_normal((60, 40)) * 3
    low = centres[rng.integers(0, 60, rows)] + rng.standard_normal((rows, 40))
    x = (low @ basis.T + 0.05 * rng.standard_normal((rows, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=250_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--pca-dims", type=int, default=MapParams().pca_dims)
    args = parser.parse_args()
    import umap

    x = clustered(args.rows, args.dim)
    umap.UMAP(n_epochs=5).fit_transform(x[:2000])  # compile numba kernels outside the timings
    idx = sample_indices(len(x), 3000)
    t0 = time.perf_counter()
    base = umap.UMAP().fit_transform(x)
    base_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    kit, _ = fit(x, MapParams(pca_dims=args.pca_dims))
    kit_s = time.perf_counter() - t0
    tw_base = trustworthiness(x[idx], base[idx], 10, "cosine")
    tw_kit = trustworthiness(x[idx], kit[idx], 10, "cosine")
    print(f"{args.rows:,} x {args.dim} (clustered synthetic), 2-D UMAP:")
    print(f"  umap-learn defaults : {base_s:8.1f} s  trustworthiness {tw_base:.4f}")
    print(f"  kit (PCA {args.pca_dims}, cosine) : {kit_s:8.1f} s  trustworthiness {tw_kit:.4f}")
    print(
        f"  time ratio {kit_s / base_s:.2f}x (target <= 0.6x); trustworthiness difference "
        f"{tw_kit - tw_base:+.4f} (target within 0.01)"
    )


if __name__ == "__main__":
    main()
