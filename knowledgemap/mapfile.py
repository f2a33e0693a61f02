"""map.h5 (format embedkit-map/2): coordinates, regions, placed labels and questions (docs/FORMAT.md)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import h5py
import numpy as np

from kit import atomic
from kit.format import MAP_FORMAT, UTF8
from kit.h5files import open_h5
from knowledgemap.params import MapParams
from knowledgemap.placement import Placed
from knowledgemap.project import Projection
from knowledgemap.questions import Question
from knowledgemap.regions import Level


def _strings(group: h5py.Group, name: str, values: list[str]) -> None:
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=UTF8)


def _regions(h5: h5py.File, levels: list[Level]) -> None:
    for level in levels:
        g = h5.create_group(f"regions/{level.name}")
        g.create_dataset("region", data=level.labels.astype(np.int32))
        _strings(g, "names", level.names)
        g.create_dataset("question_region", data=np.array(level.questions, dtype=np.int32))


def _labels(h5: h5py.File, labels: list[Placed]) -> None:
    g = h5.create_group("labels")
    g.create_dataset("xy", data=np.array([[p.x, p.y] for p in labels], np.float32).reshape(-1, 2))
    g.create_dataset("box", data=np.array([p.box for p in labels], np.float32).reshape(-1, 4))
    _strings(g, "text", [p.text.replace("\n", " ") for p in labels])
    _strings(g, "level", [p.level for p in labels])
    g.create_dataset("beside", data=np.array([p.beside for p in labels], dtype=bool))


def _questions(h5: h5py.File, questions: list[Question], q_emb: np.ndarray, q_xy: np.ndarray) -> None:
    q = h5.create_group("questions")
    _strings(q, "text", [x.text for x in questions])
    _strings(q, "options", [json.dumps(x.options) for x in questions])
    q.create_dataset("correct", data=np.array([x.correct for x in questions], dtype=np.int64))
    _strings(q, "topic", [x.topic for x in questions])
    q.create_dataset("coords", data=q_xy.reshape(-1, 2).astype(np.float32))
    q.create_dataset("embeddings", data=q_emb.astype(np.float32))


def write_map_h5(
    path: Path,
    ids: list[str],
    coords: np.ndarray,
    projection: Projection,
    params: MapParams,
    quality: dict,
    levels: list[Level],
    labels: list[Placed],
    questions: tuple[list[Question], np.ndarray, np.ndarray],
    source_sha256: str = "",
    nearest: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Write map.h5 atomically; ``questions`` is (questions, embeddings [q, dim], coordinates [q, 2]);
    ``source_sha256``: the embeddings.h5 it was drawn from (a later merge makes the map due again)."""
    tmp = atomic.tmp_path(path)
    with atomic.removed_on_error(tmp):
        with open_h5(tmp, "w") as h5:
            h5.create_dataset("coords", data=coords.astype(np.float32))
            _strings(h5, "ids", ids)
            _regions(h5, levels)
            _labels(h5, labels)
            _questions(h5, *questions)
            if nearest is not None:  # each question's nearest rows and their cosines (make search's)
                h5["questions"].create_dataset("nearest_rows", data=nearest[0].astype(np.int64))
                h5["questions"].create_dataset("nearest_scores", data=nearest[1].astype(np.float32))
            h5.attrs.update(
                format=MAP_FORMAT,
                bounds_low=projection.low,
                bounds_high=projection.high,
                params=json.dumps(asdict(params)),
                quality=json.dumps(quality),
                source_sha256=source_sha256,
            )
        atomic.commit(tmp, path)


@dataclass(frozen=True)
class MapQuestion:
    """A quiz question as map.h5 places it."""

    text: str
    region: str  # the name of the fine region it lies in
    nearest_row: int | None  # the row of embeddings.h5 nearest to it; None where the map did not record it


def read_questions(path: Path) -> list[MapQuestion]:
    """The quiz questions of the map at ``path``, in order ([] for a map without questions)."""
    with open_h5(path) as h5:
        if "questions" not in h5:
            return []
        q, fine = h5["questions"], h5["regions/fine"]
        names = fine["names"].asstr()[:]
        nearest = q["nearest_rows"][:, 0] if "nearest_rows" in q else None
        return [
            MapQuestion(str(text), str(names[int(region)]), int(nearest[i]) if nearest is not None else None)
            for i, (text, region) in enumerate(
                zip(q["text"].asstr()[:], fine["question_region"][:], strict=True)
            )
        ]
