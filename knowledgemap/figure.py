"""The static figure: map.png (and map.svg, its points rasterised) with region names placed by
knowledgemap.placement, numbered question markers and the questions listed under the map.

datamapplot draws such figures too, but fetches its fonts from Google Fonts at draw time and
brings dask, datashader and pyarrow to a CPU node; matplotlib with our own placement keeps the
stage offline and makes the placement rules testable (no overlap, never over empty space).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kit import atomic
from knowledgemap.placement import Density, Members, Placed, Shape, place, wrap
from knowledgemap.regions import Level, label_order

# Distinct hues first (tab10), then darker and lighter ones; the page uses the same list.
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#e7ba52",
    "#ad494a",
    "#637939",
    "#7b4173",
    "#3182bd",
    "#fd8d3c",
    "#74c476",
    "#9e9ac8",
    "#636363",
]
BACKGROUND = "#f7f5f0"
# parse_math=False: a "$" in a name, title or question is a dollar sign, never the start of TeX
# (mathtext would typeset "$5 or $10" in italics, and fail the whole figure on "$\frac{").
FONTS: dict[str, dict[str, Any]] = {
    "coarse": dict(fontsize=11, weight="bold", color="#1d1d1d", parse_math=False),
    "fine": dict(fontsize=7.5, weight="normal", color="#333333", style="italic", parse_math=False),
}


@dataclass(frozen=True)
class Figure:
    """What the figure shows."""

    coords: np.ndarray  # float [n, 2] in [0, 1]
    colours: np.ndarray  # int [n]: palette index per point
    palette: list[str]  # colours ("#rrggbb")
    legend: list[str]  # name per palette index (empty: no legend)
    levels: list[Level]  # coarse first
    questions: list[str]
    question_xy: np.ndarray  # float [q, 2]
    title: str


def _scatter(ax, fig: Figure) -> None:
    n = len(fig.coords)
    size = float(np.clip(30000 / max(n, 1), 0.5, 8.0))  # marker area, points^2
    order = np.random.default_rng(0).permutation(n)  # no colour hides another by drawing order
    colours = np.array(fig.palette)[fig.colours[order] % len(fig.palette)]
    ax.scatter(
        fig.coords[order, 0],
        fig.coords[order, 1],
        s=size,
        c=colours,
        alpha=0.8 if n < 50000 else 0.6,
        linewidths=0,
        rasterized=True,
    )


def _box_size(ax, renderer, text: str, level: Level) -> tuple[float, float]:
    """A label's box in data units, measured by drawing it (with its 3-point white outline)."""
    artist = ax.text(0.5, 0.5, text, ha="center", va="center", linespacing=1.0, **FONTS[level.name])
    extent = artist.get_window_extent(renderer).expanded(1.0, 1.0)
    artist.remove()
    inverse = ax.transData.inverted()
    (x0, y0), (x1, y1) = inverse.transform([[extent.x0 - 3, extent.y0 - 2], [extent.x1 + 3, extent.y1 + 2]])
    return abs(x1 - x0), abs(y1 - y0)


def placed_labels(ax, renderer, fig: Figure) -> list[Placed]:
    """The questions' regions at both levels first, then coarse names (largest region first),
    then as many fine names as fit."""
    order, lead = label_order(fig.levels)
    wanted: list = []
    narrow: list[Shape | None] = []
    for k, region in order:
        level = fig.levels[k]
        text = wrap(level.names[region])
        wanted.append(
            (text, level.name, region, level.anchors[region], *_box_size(ax, renderer, text, level))
        )
        if len(narrow) < lead:  # a question's region: on two lines, where one line does not fit
            two = wrap(level.names[region], limit=0)
            narrow.append((two, *_box_size(ax, renderer, two, level)) if two != text else None)
    return place(
        wanted,
        Density(fig.coords, density_bins(len(fig.coords))),
        pad=0.004,
        obstacles=_marker_boxes(ax, fig.question_xy),
        members=Members(fig.coords, {level.name: level.labels for level in fig.levels}),
        lead=narrow,
    )


MARKER_PT = 18.0  # question marker diameter, points


def _marker_boxes(ax, xy: np.ndarray) -> list[tuple[float, float, float, float]]:
    """The question markers' boxes in data units (labels keep clear of them)."""
    radius_px = MARKER_PT / 2 * ax.figure.dpi / 72
    inverse = ax.transData.inverted()
    out = []
    for x, y in xy:
        px, py = ax.transData.transform((x, y))
        (x0, y0), (x1, y1) = inverse.transform(
            [[px - radius_px, py - radius_px], [px + radius_px, py + radius_px]]
        )
        out.append((x0, y0, x1, y1))
    return out


def density_bins(n: int) -> int:
    """Grid for 'over empty space' checks: about four points per cell where the map is dense."""
    return int(np.clip(np.sqrt(n) / 2, 16, 256))


def _questions(ax, fig: Figure) -> None:
    for k, (x, y) in enumerate(fig.question_xy, start=1):
        ax.scatter([x], [y], s=MARKER_PT**2, c="white", edgecolors="#111111", linewidths=1.4, zorder=6)
        ax.text(x, y, str(k), ha="center", va="center", fontsize=8.5, weight="bold", zorder=7)


def _footer(ax, fig: Figure) -> None:
    """The legend of colours, then the numbered questions."""
    from matplotlib.lines import Line2D

    handles = [
        Line2D(
            [],
            [],
            ls="",
            marker="o",
            ms=7,
            color=fig.palette[k % len(fig.palette)],
            label=name.replace("$", r"\$"),
        )
        for k, name in enumerate(fig.legend)
        if name
    ]
    if handles:
        ax.legend(
            handles=handles,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.0),
            ncol=min(4, len(handles)),
            frameon=False,
            fontsize=9.5,
        )
    lines = [textwrap.shorten(f"{k}. {q}", 110) for k, q in enumerate(fig.questions, start=1)]
    if lines:
        rows = -(-len(handles) // 4) if handles else 0
        ax.text(
            0.0,
            -0.03 - 0.028 * rows,
            "Questions\n" + "\n".join(lines),
            transform=ax.transAxes,
            va="top",
            ha="left",
            fontsize=9.5,
            linespacing=1.5,
            parse_math=False,
        )


def write_figure(png: Path, svg: Path | None, fig: Figure) -> list[Placed]:
    """Write map.png (and map.svg) atomically; returns the labels as placed (map units)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt

    figure, ax = plt.subplots(figsize=(12, 12), dpi=150)
    figure.patch.set_facecolor(BACKGROUND)
    ax.set_facecolor(BACKGROUND)
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(fig.title, fontsize=14, loc="left", parse_math=False)
    _scatter(ax, fig)
    # matplotlib's stubs type the canvas as FigureCanvasBase; the Agg canvas made here has get_renderer
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = placed_labels(ax, renderer, fig)
    outline = [pe.withStroke(linewidth=3, foreground="white")]
    for label in labels:
        ax.text(
            label.x,
            label.y,
            label.text,
            ha="center",
            va="center",
            linespacing=1.0,
            path_effects=outline,
            zorder=5,
            **FONTS[label.level],
        )
    _questions(ax, fig)
    _footer(ax, fig)
    for path, kind in ((png, "png"), (svg, "svg")):
        if path is not None:
            tmp = atomic.tmp_path(path)
            figure.savefig(tmp, format=kind, bbox_inches="tight", facecolor=BACKGROUND)
            atomic.commit(tmp, path)
    plt.close(figure)
    return labels
