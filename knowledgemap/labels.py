"""Region labels: for each cell of a grid over the unit square, the title nearest its centre. Pure."""

from __future__ import annotations

import numpy as np

MIN_POINTS = 3  # a cell with fewer points gets no label


def cell_labels(coords: np.ndarray, titles: list[str], grid: int) -> list[tuple[float, float, str]]:
    """(x, y, label) per populated cell, x and y the cell centre in [0, 1].

    Args:
        coords: float array [n, 2] in [0, 1].
        titles: n titles aligned with ``coords``.
        grid: cells per side.
    """
    cells = np.minimum((coords * grid).astype(np.int64), grid - 1)
    flat = cells[:, 1] * grid + cells[:, 0]
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(grid * grid + 1))
    labels = []
    for cell in range(grid * grid):
        members = order[bounds[cell] : bounds[cell + 1]]
        if len(members) < MIN_POINTS:
            continue
        cx, cy = (cell % grid + 0.5) / grid, (cell // grid + 0.5) / grid
        nearest = members[np.argmin(((coords[members] - (cx, cy)) ** 2).sum(axis=1))]
        labels.append((cx, cy, titles[nearest]))
    return labels
