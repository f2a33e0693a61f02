"""Regions of the map at two levels of detail: coarse regions and the finer neighbourhoods shown
when zooming in. Found with HDBSCAN on the 2-D map (fast_hdbscan: numba, parallel; about 5 s at
250,000 points on 2 cores), then named (knowledgemap.naming)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

LEVELS = ("coarse", "fine")
ANCHOR_BINS = (32, 64)  # grid of label candidates, per level
NEAR_QUESTION = 24  # a question's region tries its name first on this many cells nearest the question


@dataclass(frozen=True)
class Level:
    """One level of regions."""

    name: str  # "coarse" or "fine"
    labels: (
        np.ndarray
    )  # int32 [n]: the region of each point; every point has one (noise joins its nearest region)
    names: list[str]  # one per region
    anchors: list[np.ndarray]  # per region, float32 [a, 2]: label positions to try, densest first (map units)
    questions: tuple[int, ...] = ()  # the region of each quiz question: named before any other region

    @property
    def count(self) -> int:
        return len(self.names)


def cluster(coords: np.ndarray, size: int) -> np.ndarray:
    """Int32 [n] region ids 0..k-1 for points [n, 2]; HDBSCAN's noise joins the nearest clustered point."""
    import fast_hdbscan
    from sklearn.neighbors import NearestNeighbors

    labels = fast_hdbscan.HDBSCAN(min_cluster_size=size, min_samples=min(size, 10)).fit_predict(
        coords.astype(np.float64)
    )
    labels = np.asarray(labels, dtype=np.int64)
    if labels.max() < 0:  # no structure at this size: one region
        return np.zeros(len(coords), np.int32)
    noise = labels < 0
    if noise.any():
        nn = NearestNeighbors(n_neighbors=1).fit(coords[~noise])
        labels[noise] = labels[~noise][nn.kneighbors(coords[noise], return_distance=False)[:, 0]]
    _, dense = np.unique(labels, return_inverse=True)  # ids 0..k-1 without gaps
    return dense.astype(np.int32)


def anchors(
    coords: np.ndarray, labels: np.ndarray, count: int, bins: int, per_region: int = 8
) -> list[np.ndarray]:
    """Candidate label centres per region: the centres of the grid cells holding most of its points.

    A label placed there sits on its own region's densest ground, never on empty space; several
    candidates let the placement move a label aside when a bigger one took its first choice.
    """
    cell = np.minimum((coords * bins).astype(np.int64), bins - 1)
    flat = labels.astype(np.int64) * bins * bins + cell[:, 0] * bins + cell[:, 1]
    keys, counts = np.unique(flat, return_counts=True)
    region, rest = keys // (bins * bins), keys % (bins * bins)
    out = []
    for r in range(count):
        mine = np.flatnonzero(region == r)
        top = mine[np.argsort(-counts[mine], kind="stable")[:per_region]]
        xy = np.stack([rest[top] // bins, rest[top] % bins], axis=1).astype(np.float32)
        out.append((xy + 0.5) / bins)
    return out


def region_order(level: Level) -> np.ndarray:
    """Region ids in the placement's priority: the regions holding a question (a reader must see
    where each question sits, even at the cost of a lesser name), then the rest, largest first."""
    sizes = np.bincount(level.labels, minlength=level.count)
    by_size = np.argsort(-sizes, kind="stable")
    lead = list(dict.fromkeys(level.questions))
    return np.array(lead + [int(r) for r in by_size if int(r) not in lead], dtype=np.int64)


def label_order(levels: list[Level]) -> tuple[list[tuple[int, int]], int]:
    """((level index, region) in the placement's priority, how many lead): each question's region
    at every level, smallest first (the least ground, so the first pick of the spots next to the
    marker), then each level's other regions in ``region_order``. A level with a single region
    (the whole map: too few points, or no structure, to split it) names nothing: its one name
    would say nothing about any place."""
    named = [k for k, level in enumerate(levels) if level.count > 1]
    asked = dict.fromkeys((k, int(r)) for k in named for r in levels[k].questions)
    sizes = {(k, r): int((levels[k].labels == r).sum()) for k, r in asked}
    lead = sorted(asked, key=lambda kr: sizes[kr])  # stable: a tie keeps the questions' order
    rest = [(k, int(r)) for k in named for r in region_order(levels[k]) if (k, int(r)) not in lead]
    return lead + rest, len(lead)


def regions_at(coords: np.ndarray, labels: np.ndarray, xy: np.ndarray, k: int = 5) -> tuple[int, ...]:
    """The region of each position in ``xy`` (float [q, 2]): the most common one among its k nearest points."""
    if not len(xy):
        return ()
    from sklearn.neighbors import NearestNeighbors

    near = NearestNeighbors(n_neighbors=min(k, len(coords))).fit(coords).kneighbors(xy, return_distance=False)
    return tuple(int(np.bincount(labels[row]).argmax()) for row in near)


def with_questions(level: Level, coords: np.ndarray, xy: np.ndarray, bins: int) -> Level:
    """``level`` with each question's region, and that region's label candidates re-ordered nearest
    the question first (its name then sits next to its marker, where the reader looks)."""
    asked = regions_at(coords, level.labels, xy)
    spots = list(level.anchors)
    for r, (x, y) in reversed(list(zip(asked, xy))):  # the first question of a region wins
        cells = anchors(
            coords[level.labels == r],
            np.zeros((level.labels == r).sum(), np.int32),
            1,
            bins,
            per_region=bins * bins,
        )[0]
        near = cells[np.argsort(((cells - [x, y]) ** 2).sum(axis=1), kind="stable")][:NEAR_QUESTION]
        spots[r] = np.concatenate([near, level.anchors[r]])  # then its densest ground, as any region
    return replace(level, questions=asked, anchors=spots)


def neighbours(
    coords: np.ndarray, labels: np.ndarray, count: int, bins: int = 64, reach: int = 3
) -> list[set[int]]:
    """Per region, the regions near it on the map: some point of each within ``reach`` cells of a
    bins x bins grid (about 5 % of the map's width: what the eye sees as next to each other)."""
    from scipy.ndimage import maximum_filter

    cell = np.minimum((coords * bins).astype(np.int64), bins - 1)
    present = np.zeros((count, bins, bins), bool)
    present[labels, cell[:, 0], cell[:, 1]] = True
    near = maximum_filter(present, size=(1, 2 * reach + 1, 2 * reach + 1), mode="constant")
    touching = present.reshape(count, -1).astype(np.int32) @ near.reshape(count, -1).T.astype(np.int32)
    return [set(np.flatnonzero(row).tolist()) - {r} for r, row in enumerate(touching)]


def colour_regions(touching: list[set[int]], colours: int) -> np.ndarray:
    """Int [count] colour per region, touching regions different (greedy, most-connected first, as
    Welsh and Powell 1967, each taking the least used colour its neighbours leave); a colour repeats
    only between regions apart, unless one touches ``colours`` or more others."""
    out = np.full(len(touching), -1, np.int64)
    uses = np.zeros(colours, np.int64)
    for r in sorted(range(len(touching)), key=lambda r: (-len(touching[r]), r)):
        used = {int(out[n]) for n in touching[r]}
        free = [c for c in range(colours) if c not in used] or list(range(colours))
        out[r] = min(free, key=lambda c: (uses[c], c))  # the least used: the whole palette, not four colours
        uses[out[r]] += 1
    return out


def find_levels(
    coords: np.ndarray,
    titles: list[str],
    docs: list[str],
    topics: list[str] | None,
    shares: tuple[float, float],
) -> list[Level]:
    """Coarse regions and fine neighbourhoods of the map, each named (knowledgemap.naming).

    Args:
        coords: float [n, 2] in [0, 1]. titles, docs: n strings (docs: title and text, for the words).
        topics: n topics or None. shares: HDBSCAN min_cluster_size as a share of n, coarse and fine.
    """
    from knowledgemap import naming

    levels = []
    for name, share, bins in zip(LEVELS, shares, ANCHOR_BINS):
        labels = cluster(coords, max(5, int(len(coords) * share)))
        count = int(labels.max()) + 1
        topic_names: list[str | None] = (
            naming.majority_topics(labels, count, topics) if topics and name == "coarse" else [None] * count
        )
        names = naming.name_level(
            topic_names,
            naming.distinctive_terms(labels, count, docs),
            naming.central_titles(coords, labels, count, titles),
        )
        levels.append(Level(name, labels, names, anchors(coords, labels, count, bins)))
    return levels
