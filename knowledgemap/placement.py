"""Label placement: each region's name at one of its candidate anchors, never overlapping a label
already placed, never over empty space, and over points mostly of its own region. A question's
region that finds no such spot is named just beside it instead. Pure; the PNG uses it, and the
page runs the same rules in JavaScript each frame (page.js, placeLabels)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

WRAP_CHARS = 20  # a longer name goes on two lines, split between words (never cut)
MIN_POINTS = 5  # at least this many points under a label's box
COUNT_BINS = 1024  # grid on which points under a box are counted
MIN_FILL = 0.5  # and at least this share of the box's grid cells holding a point or touching one that does
OWN_SHARE = 0.5  # at least this share of the points under a label are of the region it names
MEMBER_CELLS = 64  # grid on which the points under a box are looked up (as the page's CELLS)
GAP = 0.006  # map units between a label set beside its region and the point it touches
Shape = tuple[str, float, float]  # a label's text (may hold one "\n") and its box's w and h, map units


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


class Members:
    """Which region each point is in, at each level, with the points sorted by grid cell so the
    points under a box are found by visiting the cells it covers (the page's spatial index)."""

    def __init__(self, coords: np.ndarray, labels: dict[str, np.ndarray], cells: int = MEMBER_CELLS):
        cell = np.clip((coords * cells).astype(np.int64), 0, cells - 1)
        flat = cell[:, 0] * cells + cell[:, 1]
        order = np.argsort(flat, kind="stable")
        self.cells = cells
        self.xy = coords[order]
        self.labels = {level: np.asarray(region)[order] for level, region in labels.items()}
        self.starts = np.searchsorted(flat[order], np.arange(cells * cells + 1))

    def under(self, box, level: str, region: int) -> tuple[int, int]:
        """(points of ``region`` at ``level``, all points) inside ``box`` (x0, y0, x1, y1, map units)."""
        x0, y0, x1, y1 = box
        low, high = self._cell(y0), self._cell(y1)
        spans = [
            slice(self.starts[c * self.cells + low], self.starts[c * self.cells + high + 1])
            for c in range(self._cell(x0), self._cell(x1) + 1)
        ]
        xy = np.concatenate([self.xy[s] for s in spans])
        ids = np.concatenate([self.labels[level][s] for s in spans])
        inside = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
        return int((ids[inside] == region).sum()), int(inside.sum())

    def _cell(self, v: float) -> int:
        return int(np.clip(np.floor(v * self.cells), 0, self.cells - 1))

    def own(self, label: Placed) -> bool:
        """Most of the points under the label (if any) are of the region it names."""
        mine, total = self.under(label.box, label.level, label.region)
        return mine >= OWN_SHARE * total


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
    inside = box[0] >= 0.0 and box[1] >= 0.0 and box[2] <= 1.0 and box[3] <= 1.0
    return inside and density.count(box) >= min_points and density.fill(box) >= min_fill


def place(
    wanted: list[tuple[str, str, int, np.ndarray, float, float]],
    density: Density,
    pad: float = 0.0,
    obstacles: Sequence[tuple[float, float, float, float]] = (),
    members: Members | None = None,
    lead: Sequence[Shape | None] = (),
) -> list[Placed]:
    """Greedy placement in priority order; a name already placed (a fine region named like its
    coarse region) is not placed twice.

    Args:
        wanted: (text, level, region, anchors float [a, 2], w, h) per label, most important first;
            w and h are the label's box size in map units.
        density: the map's points.
        pad: extra gap between boxes, map units.
        obstacles: boxes no label may cover (the question markers).
        members: each point's region; given, a label sits over points mostly of its own region.
        lead: one per question's region, the first ``len(lead)`` of ``wanted``: the name on two
            lines (a narrower box to try where the one given does not fit), or None
            (``_question_label``).
    """
    placed: list[Placed] = []
    taken = list(obstacles)
    for k, entry in enumerate(wanted):
        if any(_flat(p.text) == _flat(entry[0]) for p in placed):
            continue
        if k < len(lead):
            narrow = lead[k]
            shapes = [entry] if narrow is None else [entry, (narrow[0], *entry[1:4], narrow[1], narrow[2])]
            label = _question_label(shapes, placed, taken, density, members, pad)
        else:
            label = next((p for p in _spots(entry) if _fits(p, density, members, taken, pad)), None)
        if label is not None:
            taken.append(label.box)
            placed.append(label)
    return placed + _beside(wanted, placed, taken, pad, members)


def _flat(text: str) -> str:
    return text.replace("\n", " ")


def _question_label(
    shapes: list, placed: list[Placed], taken: list, density: Density, members: Members | None, pad: float
) -> Placed | None:
    """A question's region (``shapes``: its wanted entry, then the same on two lines): on its own
    points, centred on an anchor or beside one (nearest the question first) or under a name
    already placed; else beside them, over no other region's points; else, the last resort that
    keeps the promise that it is named, at the first of those spots clear of every label and marker."""
    spots = [p for entry in shapes for p in _spots(entry, near=True) + _stacked(entry, placed, pad)]
    found = next((p for p in spots if _fits(p, density, members, taken, pad)), None)
    for rules in (members, None):
        if found is None:
            found = next((replace(p, beside=True) for p in spots if _clear(p, rules, taken, pad)), None)
    return found


def _spots(entry, near: bool = False) -> list[Placed]:
    """The label centred on each anchor; with ``near`` (a question's region, its anchors nearest
    the question first), then also beside each anchor, its edge GAP from it on each of 8 sides:
    next to the marker rather than under it, and on a small island, over the sea around it."""
    text, level, region, candidates, w, h = entry
    centred = [Placed(text, level, region, float(x), float(y), w, h) for x, y in candidates]
    if not near:
        return centred
    dx, dy = w / 2 + GAP, h / 2 + GAP
    sides = ((0, dy), (0, -dy), (dx, 0), (-dx, 0), (dx, dy), (-dx, dy), (dx, -dy), (-dx, -dy))
    return centred + [replace(p, x=p.x + sx, y=p.y + sy) for p in centred for sx, sy in sides]


def _stacked(entry, placed: list[Placed], pad: float) -> list[Placed]:
    """Just above and below each label placed so far: a question's neighbourhood that fills most
    of its region reads under the region's name."""
    text, level, region, _, w, h = entry
    return [
        Placed(text, level, region, p.x, p.y + side * ((p.h + h) / 2 + pad + 1e-6), w, h)
        for p in placed
        for side in (-1, 1)
    ]


def _fits(label: Placed, density: Density, members: Members | None, taken: list, pad: float) -> bool:
    """On ground, clear of every box taken, and over its own region's points."""
    return on_ground(label.box, density) and _clear(label, members, taken, pad, inside=True)


def _clear(label: Placed, members: Members | None, taken: list, pad: float, inside: bool = False) -> bool:
    """Inside the map, overlapping no box taken, and with no other region's points as most of those under it."""
    x0, y0, x1, y1 = label.box
    return (
        (inside or (x0 >= 0 and y0 >= 0 and x1 <= 1 and y1 <= 1))
        and not any(overlaps(label.box, box, pad) for box in taken)
        and (members is None or members.own(label))
    )


def _beside(wanted, placed: list[Placed], taken: list, pad: float, members: Members | None) -> list[Placed]:
    """Coarse regions still unnamed (islands smaller than their names): the name just above the
    island's densest cell, touching it, where it overlaps nothing."""
    named = {(p.level, p.region) for p in placed} | {p.text for p in placed}
    out = []
    for text, level, region, candidates, w, h in wanted:
        if level != "coarse" or (level, region) in named or text in named or not len(candidates):
            continue
        x, y = candidates[0]
        label = Placed(text, level, region, float(x), float(y) + h / 2 + GAP, w, h, beside=True)
        if _clear(label, members, taken, pad):
            taken.append(label.box)
            out.append(label)
    return out
