"""A static PNG of the map: points by topic, region labels, question markers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kit import atomic

LABEL_CHARS = 16  # longer titles are cut so neighbouring cell labels do not run into each other

# Distinct hues first (tab10), then darker and lighter ones; the page uses the same list.
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#393b79", "#e7ba52", "#ad494a", "#637939", "#7b4173", "#3182bd", "#fd8d3c", "#74c476",
           "#9e9ac8", "#636363"]


def write_png(path: Path, coords: np.ndarray, topics: list[str] | None, labels: list, question_xy: np.ndarray,
              title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.patheffects as pe
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, ax = plt.subplots(figsize=(12, 12), dpi=120)
    fig.patch.set_facecolor("#f7f5f0")
    ax.set_facecolor("#f7f5f0")
    size = max(0.3, min(6.0, 20000 / max(len(coords), 1)))
    names = sorted(set(topics)) if topics else [""]
    for k, name in enumerate(names):
        mask = np.array([t == name for t in topics]) if topics else np.ones(len(coords), bool)
        ax.scatter(coords[mask, 0], coords[mask, 1], s=size, c=PALETTE[k % len(PALETTE)], alpha=0.75,
                   linewidths=0, rasterized=True)
    outline = [pe.withStroke(linewidth=3, foreground="white")]
    for x, y, text in labels:
        short = text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1].rstrip() + "…"
        ax.text(x, y, short, ha="center", va="center", fontsize=7.5, color="#2a2a2a", weight="bold", alpha=0.9,
                path_effects=outline, zorder=4)
    if len(question_xy):
        ax.scatter(question_xy[:, 0], question_xy[:, 1], marker="^", s=90, c="white", edgecolors="#111",
                   linewidths=1.2, zorder=5)
    handles = [Line2D([], [], ls="", marker="o", ms=6, color=PALETTE[k % len(PALETTE)], label=name)
               for k, name in enumerate(names) if name]
    if len(question_xy):
        handles.append(Line2D([], [], ls="", marker="^", ms=8, mfc="white", mec="#111", label="questions"))
    if handles:
        ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.01), ncol=min(5, len(handles)),
                  frameon=False, fontsize=9)
    everything = np.vstack([coords, question_xy.reshape(-1, 2)])
    low, high = everything.min(axis=0) - 0.02, everything.max(axis=0) + 0.02
    ax.set_xlim(low[0], high[0])
    ax.set_ylim(low[1], high[1])
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title, fontsize=13, loc="left")
    tmp = atomic.tmp_path(path)
    fig.savefig(tmp, format="png", bbox_inches="tight", facecolor=fig.get_facecolor())
    plt.close(fig)
    atomic.commit(tmp, path)
