"""Synthetic data for the map at scale: a 2-D landscape with regions and titles (the page test at
250,000 points), and a merged run of clustered embeddings (bench/map_scale.py)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from kit.format import OUTPUT_FILE, UTF8
from knowledgemap.regions import Level, anchors

THEMES = [
    "Rivers",
    "Volcanoes",
    "Opera",
    "Chess",
    "Bacteria",
    "Bridges",
    "Poetry",
    "Comets",
    "Tango",
    "Glaciers",
    "Algebra",
    "Castles",
    "Orchids",
    "Sailing",
    "Jazz",
    "Deserts",
    "Enzymes",
    "Railways",
    "Pottery",
    "Satellites",
    "Coral",
    "Sculpture",
    "Monsoons",
    "Cheese",
    "Falcons",
    "Lighthouses",
    "Typhoons",
    "Violins",
    "Mosaics",
    "Lichens",
    "Tunnels",
    "Ballet",
    "Geysers",
    "Puppetry",
    "Fungi",
    "Canals",
    "Sonnets",
    "Quasars",
    "Tapestry",
    "Wetlands",
]
WORDS = [
    "history",
    "of",
    "northern",
    "southern",
    "ancient",
    "modern",
    "early",
    "great",
    "little",
    "royal",
    "lost",
    "hidden",
    "golden",
    "silver",
    "eastern",
    "western",
]


def landscape(n: int, fine_per_coarse: int = 5, coarse: int = 8, seed: int = 0):
    """(coords [n, 2] in [0, 1], coarse ids [n], fine ids [n], titles [n]): blobs of uneven size
    around ``coarse`` centres, ``fine_per_coarse`` neighbourhoods each, titles naming their theme."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0.15, 0.85, (coarse, 2))
    fine_centres = (centres[:, None, :] + rng.normal(0, 0.05, (coarse, fine_per_coarse, 2))).reshape(-1, 2)
    weights = rng.uniform(0.5, 2.0, len(fine_centres))
    fine = rng.choice(len(fine_centres), size=n, p=weights / weights.sum())
    spread = rng.uniform(0.008, 0.02, len(fine_centres))
    xy = fine_centres[fine] + rng.normal(0, 1, (n, 2)) * spread[fine, None]
    xy = (xy - xy.min(axis=0)) / (xy.max(axis=0) - xy.min(axis=0))
    words = rng.integers(0, len(WORDS), n)
    titles = [f"{THEMES[f % len(THEMES)]} {WORDS[w]} {i}" for i, (f, w) in enumerate(zip(fine, words))]
    return xy.astype(np.float32), (fine // fine_per_coarse).astype(np.int32), fine.astype(np.int32), titles


def known_levels(coords: np.ndarray, coarse: np.ndarray, fine: np.ndarray) -> list[Level]:
    """Levels from the generator's own regions (no clustering: the page test stays quick)."""
    out = []
    for name, labels, bins, names in (
        ("coarse", coarse, 32, [f"Region {chr(65 + k)}" for k in range(coarse.max() + 1)]),
        ("fine", fine, 64, [f"{THEMES[k % len(THEMES)]} and kin" for k in range(fine.max() + 1)]),
    ):
        out.append(Level(name, labels, names, anchors(coords, labels, len(names), bins)))
    return out


def clustered_embeddings(
    rows: int, dim: int, clusters: int = 60, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around ``clusters`` centres in a random 40-dimensional subspace, plus noise
    (as bench/umap_speed.py), and each row's cluster."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((dim, 40)))[0]
    centres = rng.standard_normal((clusters, 40)) * 3
    cluster = rng.integers(0, clusters, rows)
    x = np.empty((rows, dim), np.float32)
    for lo in range(0, rows, 100_000):  # in blocks: 1,000,000 x 768 stays at one copy
        hi = min(lo + 100_000, rows)
        low = centres[cluster[lo:hi]] + rng.standard_normal((hi - lo, 40))
        block = low @ basis.T + 0.05 * rng.standard_normal((hi - lo, dim))
        x[lo:hi] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return x, cluster


def merged_run(run_dir: Path, rows: int, dim: int) -> None:
    """A run folder holding only an embeddings.h5 as the merge writes it (what make map reads)."""
    x, cluster = clustered_embeddings(rows, dim)
    rng = np.random.default_rng(1)
    words = rng.integers(0, len(WORDS), rows)
    titles = [f"{THEMES[c % len(THEMES)]} {WORDS[w]} {i}" for i, (c, w) in enumerate(zip(cluster, words))]
    run_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(run_dir / OUTPUT_FILE, "w") as h5:
        h5.create_dataset("embeddings", data=x)
        h5.create_dataset("ids", data=np.array([f"doc-{i}" for i in range(rows)], dtype=object), dtype=UTF8)
        h5.create_dataset("titles", data=np.array(titles, dtype=object), dtype=UTF8)
        h5.attrs["model"] = "synthetic/clustered"
