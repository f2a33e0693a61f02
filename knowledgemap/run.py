"""build_map: embeddings.h5 -> map.h5 (+ reducer), map.html, map.png and map.svg. embeddings.h5 is only read.

The map never loads a model itself: the caller passes ``encode_questions`` (jobs.merging builds it
from the run's settings), so this package does not depend on embedder.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

import numpy as np

from kit import atomic
from kit.corpusfile import CorpusReader
from kit.errors import ConfigError, CorpusError
from kit.format import MAP_PAGE_FILE as PAGE_FILE, MAP_PNG_FILE as PNG_FILE, RunPaths, sidecar_digest  # noqa: F401 (make map names them)
from kit.h5files import open_h5
from knowledgemap.figure import PALETTE, Figure, write_figure
from knowledgemap.mapfile import write_map_h5
from knowledgemap.naming import NO_TOPIC
from knowledgemap.page import page_data, write_page
from knowledgemap.params import MapParams
from knowledgemap.project import fit
from knowledgemap.quality import map_quality
from knowledgemap.questions import Question, load_questions
from knowledgemap.regions import ANCHOR_BINS, Level, colour_regions, find_levels, neighbours, with_questions

log = logging.getLogger(__name__)

TEXT_CHARS = 400  # the start of each text is enough to name regions, and keeps 1M rows in memory
NO_TOPIC_COLOUR = "#c4c4c4"
EncodeQuestions = Callable[[list[str]], np.ndarray]  # texts -> float32 [n, dim], the run's model and prompt
# question vectors float32 [q, dim] -> (rows int64 [q, k], cosines float32 [q, k]): make search's exact search
NearestRows = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
NEAREST = 10  # articles listed under a question on the page


@dataclass
class Corpus:
    """What the map reads from a run folder."""

    embeddings: np.ndarray  # float32 [n, dim]
    ids: list[str]
    titles: list[str]
    topics: list[str] | None
    model: str
    docs: list[str]  # title and the start of the text per row, for region names


def read_run(run_dir: Path) -> Corpus:
    """embeddings.h5, and the texts from corpus.h5 where it is there and row-aligned (not after a fetch)."""
    paths = RunPaths.of(run_dir)
    with open_h5(paths.output) as h5:
        topics = h5["topics"].asstr()[:].tolist() if "topics" in h5 else None
        ids, titles = h5["ids"].asstr()[:].tolist(), h5["titles"].asstr()[:].tolist()
        corpus = Corpus(h5["embeddings"][:], ids, titles, topics, str(h5.attrs["model"]), titles)
    texts = _texts(paths.corpus, ids)
    if texts is not None:
        corpus.docs = [f"{t} {t} {x}" for t, x in zip(titles, texts)]  # the title counts twice
    return corpus


def _texts(path: Path, ids: list[str]) -> list[str] | None:
    """The corpus texts (from the one corpus layer), when the corpus and its source are at hand."""
    if not path.exists():
        return None
    try:
        with CorpusReader(path) as corpus:
            if corpus.rows != len(ids):
                return None
            rows = corpus.read(0, corpus.rows, ("ids", "texts"))
            return [t[:TEXT_CHARS] for t in rows["texts"]] if rows["ids"] == ids else None
    except CorpusError as err:  # e.g. a fetched run folder without the source parquet: names from titles
        log.info("Region names from titles only: %s", err)
        return None


def model_label(model: str) -> str:
    """The model's name as its model card gives it (a local folder's README.md: ``model_name:`` or
    its first heading), else the hub name ("org/name", also from a hub cache folder), else the folder's name."""
    path = Path(model)
    card = _card_name(path / "README.md")
    if card:
        return card
    hub = next(
        (
            p.name[len("models--") :].replace("--", "/")
            for p in (path, *path.parents)
            if p.name.startswith("models--")
        ),
        None,
    )
    if hub:
        return hub
    if not path.is_absolute() and len(path.parts) == 2 and not path.exists():
        return model  # a hub name as given
    return path.parent.name if path.name in ("model", "models") and path.parent.name else path.name


def _card_name(readme: Path) -> str | None:
    """``model_name:`` of a model card's front matter, else its first level-1 heading; None without a card."""
    try:
        lines = readme.read_text(encoding="utf-8", errors="replace").splitlines()[:400]
    except OSError:
        return None
    front = lines[1 : lines.index("---", 1)] if lines[:1] == ["---"] and "---" in lines[1:] else []
    named = [ln.split(":", 1)[1].strip().strip("'\"") for ln in front if ln.startswith("model_name:")]
    fence, heading = False, []
    for ln in lines[len(front) + 2 if front else 0 :]:
        fence ^= ln.startswith("```")  # a "# comment" inside a code block is no heading
        if not fence and ln.startswith("# "):
            heading.append(ln[2:].strip())
    found = named or heading
    name = found[0] if found else None
    return name if name and len(name) <= 80 else None


def colours_and_legend(
    topics: list[str] | None, coarse: Level, coords: np.ndarray
) -> tuple[np.ndarray, list[str], list[str], str]:
    """(palette index per point, legend names, palette, "topic" or "region"): by topic where the
    corpus has topics (articles without one in light grey, last; a legend names them), else by
    coarse region, touching regions in different colours (no legend: the names are on the map)."""
    if topics and len(set(topics)) > 1:
        names = sorted(set(topics), key=lambda t: (t.strip().lower() in NO_TOPIC, t))
        palette = [
            NO_TOPIC_COLOUR if t.strip().lower() in NO_TOPIC else PALETTE[k % len(PALETTE)]
            for k, t in enumerate(names)
        ]
        index = {t: k for k, t in enumerate(names)}
        return np.array([index[t] for t in topics], np.int64), names, palette, "topic"
    per_region = colour_regions(neighbours(coords, coarse.labels, coarse.count), len(PALETTE))
    return per_region[coarse.labels], [], PALETTE, "region"


def place_questions(
    questions: list[Question], encode_questions: EncodeQuestions | None, projection, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 [q, dim], map coordinates [q, 2] in [0, 1]) of the questions."""
    if not questions:
        return np.zeros((0, dim), np.float32), np.zeros((0, 2), np.float32)
    if encode_questions is None:
        raise ConfigError(
            "Questions were given but no encoder for them; build the map through jobs (make map)."
        )
    q_emb = np.asarray(encode_questions([q.text for q in questions]), dtype=np.float32)
    if q_emb.shape != (len(questions), dim):
        raise ConfigError(
            f"The question encoder returned shape {q_emb.shape}; the run's embeddings have "
            f"{dim} dimensions. Build the map with the run's own model (make map RUN=...)."
        )
    # A question far from every article (on a map of a few dozen rows, UMAP's transform lands some
    # well outside the articles' bounds) is put on the map's edge, where its marker is seen.
    return q_emb, np.clip(projection.transform(q_emb), 0.0, 1.0)


def write_outputs(
    run_dir: Path,
    corpus: Corpus,
    coords: np.ndarray,
    levels: list[Level],
    questions: list[Question],
    q_xy: np.ndarray,
    nearest: tuple[np.ndarray, np.ndarray] | None = None,
) -> list:
    """map.html, map.png and map.svg; returns the figure's placed labels. ``nearest``: each question's
    nearest rows and their cosines, listed under it on the page."""
    colours, legend, palette, colour_by = colours_and_legend(corpus.topics, levels[0], coords)
    label = model_label(corpus.model)
    page_questions = [
        {
            "text": q.text,
            "options": list(q.options),
            "correct": q.correct,
            "x": float(x),
            "y": float(y),
            "nearest": nearest_of(i, nearest, corpus.titles),
        }
        for i, (q, (x, y)) in enumerate(zip(questions, q_xy, strict=True))
    ]
    paths = RunPaths.of(run_dir)
    write_page(
        paths.map_page,
        page_data(
            coords, corpus.titles, (colours, legend, palette, colour_by), levels, page_questions, label
        ),
    )
    figure = Figure(
        coords,
        colours,
        palette,
        legend if colour_by == "topic" else [],
        levels,
        [q.text for q in questions],
        q_xy,
        f"{len(coords):,} articles · {label}",
    )
    return write_figure(paths.map_png, paths.map_svg, figure)


def nearest_of(i: int, nearest: tuple[np.ndarray, np.ndarray] | None, titles: list[str]) -> list[dict]:
    """Question ``i``'s nearest articles for the page: row, title and cosine each, best first."""
    if nearest is None:
        return []
    rows, scores = nearest
    return [
        {"row": int(r), "title": titles[int(r)], "score": round(float(s), 4)}
        for r, s in zip(rows[i], scores[i], strict=True)
        if r >= 0
    ]


def build_map(
    run_dir: Path,
    params: MapParams,
    encode_questions: EncodeQuestions | None = None,
    questions_path: Path | None = None,
    nearest_rows: NearestRows | None = None,
) -> dict:
    """Fit the map of a merged run and write map.h5, the reducer, map.html, map.png and map.svg.

    Args:
        run_dir: a run folder with embeddings.h5 (only read).
        params: how the map is made.
        encode_questions: texts -> float32 [n, dim] with the run's model and prompt; needed only
            with questions.
        questions_path: a questions JSON file, or None.
        nearest_rows: question vectors -> their nearest rows (make search's exact search); the page
            lists them under each question. None: no list.

    Returns:
        The quality figures (also in map.h5's ``quality`` attribute).
    """
    import joblib

    t0 = time.monotonic()
    paths = RunPaths.of(run_dir)
    run_dir = paths.root
    questions = load_questions(questions_path) if questions_path else []  # a bad file fails before UMAP
    corpus = read_run(run_dir)
    log.info(
        "UMAP of %d x %d (%s)",
        *corpus.embeddings.shape,
        "seeded, single-threaded" if params.seed is not None else "parallel",
    )
    coords, projection = fit(corpus.embeddings, params)
    quality = map_quality(
        corpus.embeddings,
        coords,
        np.array(corpus.topics) if corpus.topics else None,
        params.quality_sample,
        params.quality_k,
        params.metric,
    )
    quality["fit_seconds"] = time.monotonic() - t0
    log.info("Regions and names of %d points", len(coords))
    levels = find_levels(
        coords, corpus.titles, corpus.docs, corpus.topics, (params.coarse_share, params.fine_share)
    )
    q_emb, q_xy = place_questions(questions, encode_questions, projection, corpus.embeddings.shape[1])
    levels = [with_questions(level, coords, q_xy, bins) for level, bins in zip(levels, ANCHOR_BINS)]
    nearest = nearest_rows(q_emb) if nearest_rows is not None and len(questions) else None
    labels = write_outputs(run_dir, corpus, coords, levels, questions, q_xy, nearest)
    write_map_h5(
        paths.map,
        corpus.ids,
        coords,
        projection,
        params,
        quality,
        levels,
        labels,
        (questions, q_emb, q_xy),
        sidecar_digest(paths.output) or "",
        nearest,
    )
    tmp = atomic.tmp_path(paths.map_reducer)
    joblib.dump(projection, tmp)  # a pickle: load it only from runs you made (project new texts with it)
    atomic.commit(tmp, paths.map_reducer)
    quality["seconds"] = time.monotonic() - t0
    return quality
