"""The interactive page: one self-contained HTML file (no network at view time)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

from kit import atomic
from knowledgemap.png import PALETTE

TEMPLATE = Path(__file__).with_name("page.html")
SIGMA = 0.15  # the seeds' heatmap kernel width, in map units


def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def page_data(coords: np.ndarray, titles: list[str], topics: list[str] | None, labels: list, questions: list[dict],
              model: str) -> dict:
    """The page's payload: coordinates quantised to uint16 (1/65535 of the map), topics as indices."""
    names = sorted(set(topics)) if topics else [""]
    index = {t: k for k, t in enumerate(names)}
    topic_ids = np.array([index[t] for t in topics], dtype=np.uint8) if topics else np.zeros(len(titles), np.uint8)
    q = np.clip(np.rint(coords * 65535), 0, 65535).astype("<u2")
    return {"count": len(titles), "x": _b64(q[:, 0]), "y": _b64(q[:, 1]), "topic": _b64(topic_ids),
            "topics": names, "titles": titles, "labels": [[float(x), float(y), t] for x, y, t in labels],
            "questions": questions, "model": model, "sigma": SIGMA, "palette": PALETTE}


def write_page(path: Path, data: dict) -> None:
    """Write the page atomically; ``</`` is escaped so no title can close the data script."""
    payload = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")
    atomic.write_text(path, TEMPLATE.read_text(encoding="utf-8").replace("/*__DATA__*/", payload))
