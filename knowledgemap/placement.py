"""Label placement: each region's name at one of its candidate anchors, never overlapping a label
already placed, never over empty space. Pure; the PNG uses it, and the page runs the same rule
in JavaScript each frame (page.html, placeLabels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

WRAP_CHARS = 20  # a longer name goes on two lines, split between words (never cut)
MIN_POINTS = 5  # at least this many points under a label's box
COUNT_BINS = 1024  # grid on which points under a box are counted
MIN_FILL = 0.5  # and at least this share of the box's grid cells holding a point or touching one that does


@dataclass(frozen=True)
class Placed:
    text: str  # may hold one "\n"
    level: str
    region: int
    x: float  # box centre, map units
    y: float
    w: float  # box size, map units
    h: float
    beside: bool = False  # set just above its region (an island smaller than its name), not over it

    @property
    def box(self) -> tuple[float, float, float, float]:
        return self.x - self.w / 2, self.y - self.h / 2, self.x + self.w / 2, self.y + self.h / 2


def wrap(name: str, limit: int = WRAP_CHARS) -> str:
    """The name on one line, or on two split at the space nearest its middle; words are never cut."""
    if len(name) <= limit or " " not in name:
        return name
    spaces = [i for i, c in enumerate(name) if c == " "]
    cut = min(spaces, key=lambda i: abs(i - len(name) / 2))
    return name[:cut] + "\n" + name[cut + 1 :]


class Density:
    """Where the points are, with summed-area tables so a box is checked in O(1).

    Points are counted on a fine COUNT_BINS grid, only in cells wholly inside the box (never more
    than the points truly under it); occupancy is judged on a coarser ``bins`` grid that has about
    four points per cell where the map is dense.
    """

    def __init__(self, coords: np.ndarray, bins: int = 256):
        self.bins = bins
        self.points = _summed(_histogram(coords, COUNT_BINS))
        self.filled = _summed(_dilated(_histogram(coords, bins) > 0).astype(np.int64))

    def count(self, box) -> int:
        """Points in the fine cells wholly under ``box`` (x0, y0, x1, y1 in map units)."""
        x0, y0 = (int(np.clip(np.ceil(v * COUNT_BINS), 0, COUNT_BINS)) for v in box[:2])
        x1, y1 = (int(np.clip(np.floor(v * COUNT_BINS), 0, COUNT_BINS)) for v in box[2:])
        return _box_sum(self.points, x0, y0, x1, y1) if x1 > x0 and y1 > y0 else 0

    def fill(self, box) -> float:
        """Share of the coarse cells touching ``box`` that hold a point or touch a cell that does."""
        x0, y0 = (int(np.clip(np.floor(v * self.bins), 0, self.bins - 1)) for v in box[:2])
        x1, y1 = (int(np.clip(np.ceil(v * self.bins), x + 1, self.bins)) for v, x in zip(box[2:], (x0, y0)))
        return _box_sum(self.filled, x0, y0, x1, y1) / ((x1 - x0) * (y1 - y0))


def _histogram(coords: np.ndarray, bins: int) -> np.ndarray:
    cell = np.clip((coords * bins).astype(np.int64), 0, bins - 1)
    grid = np.zeros((bins, bins), np.int64)
    np.add.at(grid, (cell[:, 0], cell[:, 1]), 1)
    return grid


def _dilated(occupied: np.ndarray) -> np.ndarray:
    """Occupied cells and their 8 neighbours: a label on a small island counts its shore as ground."""
    padded = np.pad(occupied, 1)
    out = np.zeros_like(occupied)
    for dx in (0, 1, 2):
        for dy in (0, 1, 2):
            out |= padded[dx : dx + occupied.shape[0], dy : dy + occupied.shape[1]]
    return out


def _summed(grid: np.ndarray) -> np.ndarray:
    out = np.zeros((grid.shape[0] + 1, grid.shape[1] + 1), np.int64)
    out[1:, 1:] = grid.cumsum(axis=0).cumsum(axis=1)
    return out


def _box_sum(table: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> int:
    """Sum of cells [x0, x1) x [y0, y1) from a summed-area table."""
    return int(table[x1, y1] - table[x0, y1] - table[x1, y0] + table[x0, y0])


def overlaps(a, b, pad: float = 0.0) -> bool:
    """Whether boxes ``a`` and ``b`` (x0, y0, x1, y1) overlap once each is grown by ``pad``."""
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] + pad and b[1] < a[3] + pad


def on_ground(box, density: Density, min_points: int = MIN_POINTS, min_fill: float = MIN_FILL) -> bool:
    """A box is over the map, not empty space: enough points under it, and most of its cells occupied."""
    inside = 0.0 <= box[0] and 0.0 <= box[1] and box[2] <= 1.0 and box[3] <= 1.0
    return inside and density.count(box) >= min_points and density.fill(box) >= min_fill


def place(
    wanted: list[tuple[str, str, int, np.ndarray, float, float]],
    density: Density,
    pad: float = 0.0,
    obstacles: Sequence[tuple[float, float, float, float]] = (),
) -> list[Placed]:
    """Greedy placement in priority order; a name already placed (a fine region named like its
    coarse region) is not placed twice.

    Args:
        wanted: (text, level, region, anchors float [a, 2], w, h) per label, most important first;
            w and h are the label's box size in map units.
        density: the map's points.
        pad: extra gap between boxes, map units.
        obstacles: boxes no label may cover (the question markers).
    """
    placed: list[Placed] = []
    taken = list(obstacles)
    for text, level, region, candidates, w, h in wanted:
        if any(p.text == text for p in placed):
            continue
        for x, y in candidates:
            label = Placed(text, level, region, float(x), float(y), w, h)
            if on_ground(label.box, density) and not any(overlaps(label.box, box, pad) for box in taken):
                taken.append(label.box)
                placed.append(label)
                break
    return placed + _beside(wanted, placed, taken, pad)


def _beside(wanted, placed: list[Placed], taken: list, pad: float) -> list[Placed]:
    """Coarse regions still unnamed (islands smaller than their names): the name just above the
    island's densest cell, touching it, where it overlaps nothing."""
    named = {(p.level, p.region) for p in placed} | {p.text for p in placed}
    out = []
    for text, level, region, candidates, w, h in wanted:
        if level != "coarse" or (level, region) in named or text in named or not len(candidates):
            continue
        x, y = candidates[0]
        label = Placed(text, level, region, float(x), float(y) + h / 2 + 0.006, w, h, beside=True)
        x0, y0, x1, y1 = label.box
        if 0 <= x0 and x1 <= 1 and y1 <= 1 and not any(overlaps(label.box, box, pad) for box in taken):
            taken.append(label.box)
            out.append(label)
    return out
