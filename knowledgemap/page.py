"""The interactive page: one self-contained HTML file (no request leaves it at view time).

Points travel as uint16 coordinates sorted by a CELLS x CELLS grid (so the page draws and hovers
only the cells in view), titles as one newline-joined string (parsed ~10x faster than a JSON
list at 250,000 titles).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from kit import atomic
from knowledgemap.figure import density_bins
from knowledgemap.placement import COUNT_BINS, MIN_FILL, MIN_POINTS, OWN_SHARE, wrap
from knowledgemap.regions import Level, label_order

HERE = Path(__file__).parent
CELLS = 64  # spatial index of the page: points sorted by cell of a CELLS x CELLS grid
SIGMA = 0.08  # heatmap kernel width, map units (the map spans [0, 1])


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def spatial_order(coords: np.ndarray, cells: int = CELLS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(order [n], cell starts [cells * cells + 1]): rows sorted by cell (x-major), shuffled inside a cell."""
    cell = np.clip((coords * cells).astype(np.int64), 0, cells - 1)
    flat = cell[:, 0] * cells + cell[:, 1]
    order = np.lexsort((np.random.default_rng(seed).random(len(coords)), flat))
    return order, np.searchsorted(flat[order], np.arange(cells * cells + 1)).astype("<u4")


def _level(level: Level, order: np.ndarray, regions: list[int]) -> dict:
    return {
        "name": level.name,
        "names": level.names,
        "labels": [wrap(n) for n in level.names],
        "narrow": [
            wrap(n, limit=0) for n in level.names
        ],  # on two lines: a question's name where one does not fit
        "order": regions,  # the regions named after the questions' ones, in placement order
        "region": _b64(level.labels[order].astype("<u2")),
        "anchors": [np.round(a, 5).tolist() for a in level.anchors],
    }


def page_data(
    coords: np.ndarray,
    titles: list[str],
    colouring: tuple[np.ndarray, list[str], list[str], str],
    levels: list[Level],
    questions: list[dict],
    model: str,
) -> dict:
    """The page's payload.

    Args:
        coords: float [n, 2] in [0, 1]. titles: n strings.
        colouring: (int [n] palette index per point, legend name per index, palette, "topic" or "region").
        levels: coarse first. questions: {text, options, correct, x, y, nearest} each (``nearest``: the
            rows make search finds for it, {row, title, score}). model: shown in the panel.
    """
    colours, legend, palette, colour_by = colouring
    order, starts = spatial_order(coords)
    point = np.empty(len(order), dtype=np.int64)
    point[order] = np.arange(len(order))  # a row's position among the page's points
    questions = [
        {**q, "nearest": [{**near, "point": int(point[near["row"]])} for near in q.get("nearest", [])]}
        for q in questions
    ]
    named, lead = label_order(levels)
    q = np.clip(np.rint(coords[order] * 65535), 0, 65535).astype("<u2")
    return {
        "count": len(titles),
        "x": _b64(q[:, 0]),
        "y": _b64(q[:, 1]),
        "cells": CELLS,
        "cellStart": _b64(starts),
        "colour": _b64(colours[order].astype(np.uint8)),
        "legend": legend,
        "colourBy": colour_by,
        "titles": "\n".join(titles[i].replace("\n", " ") for i in order),
        "levels": [
            _level(level, order, [r for j, r in named[lead:] if j == k]) for k, level in enumerate(levels)
        ],
        "lead": [
            list(pair) for pair in named[:lead]
        ],  # (level, region) of the questions' regions, named first
        "ownShare": OWN_SHARE,
        "bins": density_bins(len(titles)),
        "countBins": COUNT_BINS,
        "minPoints": MIN_POINTS,
        "minFill": MIN_FILL,
        "questions": questions,
        "model": model,
        "sigma": SIGMA,
        "palette": palette,
    }


# Characters that could end or re-mode the data script (</script>, <!--<script>) or break a
# pre-ES2019 parser (U+2028, U+2029), as JSON escapes: JSON.parse gives the same strings back.
# https://html.spec.whatwg.org/multipage/scripting.html#restrictions-for-contents-of-script-elements
_INERT = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def inert_json(data) -> str:
    """JSON safe inside a <script> element: no corpus or quiz string can end it or change its parsing."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).translate(_INERT)


def write_page(path: Path, data: dict) -> None:
    """Write the page atomically; the page's script puts every string into the page only as text."""
    payload = inert_json(data)
    script = (HERE / "page.js").read_text(encoding="utf-8")
    html = (HERE / "page.html").read_text(encoding="utf-8")
    atomic.write_text(path, html.replace("/*__SCRIPT__*/", script).replace("/*__DATA__*/", payload))
