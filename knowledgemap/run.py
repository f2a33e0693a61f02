"""build_map: embeddings.h5 -> map.h5 (+ reducer), map.html and map.png. embeddings.h5 is only read."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import h5py
import numpy as np

from embedder.config import EmbedConfig
from kit import atomic
from kit.format import OUTPUT_FILE, UTF8
from knowledgemap.labels import cell_labels
from knowledgemap.page import page_data, write_page
from knowledgemap.params import MapParams
from knowledgemap.png import write_png
from knowledgemap.project import Projection, fit
from knowledgemap.quality import map_quality
from knowledgemap.questions import Question, embed_questions, load_questions

log = logging.getLogger(__name__)

MAP_FILE, REDUCER_FILE, PAGE_FILE, PNG_FILE = "map.h5", "map_reducer.joblib", "map.html", "map.png"


def _read_run(run_dir: Path) -> tuple[np.ndarray, list[str], list[str], list[str] | None, str]:
    with h5py.File(run_dir / OUTPUT_FILE, "r") as h5:
        topics = h5["topics"].asstr()[:].tolist() if "topics" in h5 else None
        return (h5["embeddings"][:], h5["ids"].asstr()[:].tolist(), h5["titles"].asstr()[:].tolist(), topics,
                str(h5.attrs["model"]))


def _write_map_h5(path: Path, ids: list[str], coords: np.ndarray, projection: Projection, params: MapParams,
                  quality: dict, labels: list, questions: list[Question], q_emb: np.ndarray, q_xy: np.ndarray) -> None:
    tmp = atomic.tmp_path(path)
    with atomic.removed_on_error(tmp):
        with h5py.File(tmp, "w") as h5:
            h5.create_dataset("coords", data=coords)
            h5.create_dataset("ids", data=np.array(ids, dtype=object), dtype=UTF8)
            g = h5.create_group("labels")
            g.create_dataset("xy", data=np.array([[x, y] for x, y, _ in labels], dtype=np.float32).reshape(-1, 2))
            g.create_dataset("text", data=np.array([t for _, _, t in labels], dtype=object), dtype=UTF8)
            q = h5.create_group("questions")
            q.create_dataset("text", data=np.array([x.text for x in questions], dtype=object), dtype=UTF8)
            q.create_dataset("options", data=np.array([json.dumps(x.options) for x in questions], dtype=object),
                             dtype=UTF8)
            q.create_dataset("correct", data=np.array([x.correct for x in questions], dtype=np.int64))
            q.create_dataset("topic", data=np.array([x.topic for x in questions], dtype=object), dtype=UTF8)
            q.create_dataset("coords", data=q_xy.reshape(-1, 2).astype(np.float32))
            q.create_dataset("embeddings", data=q_emb.astype(np.float32))
            h5.attrs.update(format="embedkit-map/1", bounds_low=projection.low, bounds_high=projection.high,
                            params=json.dumps(asdict(params)), quality=json.dumps(quality))
        atomic.commit(tmp, path)


def model_label(model: str) -> str:
    """A short model name: the hub name, or a local folder's name (its parent's for ".../model")."""
    path = Path(model)
    return path.parent.name if path.name in ("model", "models") and path.parent.name else path.name


def build_map(run_dir: Path, params: MapParams, embed: EmbedConfig, questions_path: Path | None = None) -> dict:
    """Fit the map of a merged run and write map.h5, the reducer, map.html and map.png. Returns quality."""
    import joblib

    t0 = time.monotonic()
    run_dir = Path(run_dir)
    emb, ids, titles, topics, model = _read_run(run_dir)
    log.info("UMAP of %d x %d (%s)", *emb.shape, "seeded, single-threaded" if params.seed is not None else "parallel")
    coords, projection = fit(emb, params)
    quality = map_quality(emb, coords, np.array(topics) if topics else None, params.quality_sample,
                          params.quality_k, params.metric)
    quality["fit_seconds"] = time.monotonic() - t0
    labels = cell_labels(coords, titles, params.grid)
    questions = load_questions(questions_path) if questions_path else []
    q_emb = embed_questions(questions, embed) if questions else np.zeros((0, emb.shape[1]), np.float32)
    q_xy = projection.transform(q_emb) if questions else np.zeros((0, 2), np.float32)
    _write_map_h5(run_dir / MAP_FILE, ids, coords, projection, params, quality, labels, questions, q_emb, q_xy)
    tmp = atomic.tmp_path(run_dir / REDUCER_FILE)
    joblib.dump(projection, tmp)  # a pickle: load it only from runs you made (project new texts with it)
    atomic.commit(tmp, run_dir / REDUCER_FILE)
    page_questions = [{"text": q.text, "options": list(q.options), "correct": q.correct, "x": float(x), "y": float(y)}
                      for q, (x, y) in zip(questions, q_xy, strict=True)]
    write_page(run_dir / PAGE_FILE, page_data(coords, titles, topics, labels, page_questions, model_label(model)))
    write_png(run_dir / PNG_FILE, coords, topics, labels, q_xy, f"{len(ids):,} articles · {model_label(model)}")
    return quality
