"""make map on the demo's Vital Articles: files, quality, regions and their labels."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py

from knowledgemap.naming import NO_TOPIC
from knowledgemap.placement import MIN_POINTS, overlaps
from tests.helpers import jobs_cli


def test_map_files_and_topic_neighbours_kept(demo_map):
    run, out = demo_map
    embeddings_before = (run / "embeddings.h5.sha256").read_text()
    with h5py.File(run / "map.h5") as m, h5py.File(run / "embeddings.h5") as e:
        coords = m["coords"][:]
        assert coords.shape == (1000, 2) and coords.min() >= 0 and coords.max() <= 1
        assert m["ids"].asstr()[:].tolist() == e["ids"].asstr()[:].tolist()
        assert m["questions/coords"].shape == (5, 2) and m["questions/embeddings"].shape == (5, 384)
        assert "questions" not in e  # never mixed into the article rows
        assert m["regions/coarse/region"].shape == m["regions/fine/region"].shape == (1000,)
        quality = json.loads(m.attrs["quality"])
        params = json.loads(m.attrs["params"])
        assert len(m["labels/text"]) >= 8
    assert params["n_neighbors"] == 15 and params["min_dist"] == 0.1 and params["metric"] == "cosine"
    assert quality["trustworthiness"] > 0.8
    assert quality["topic_agreement_map"] >= 0.8 * quality["topic_agreement_embedding"]
    assert "Topic agreement of 10 nearest neighbours: map" in out and "vs embedding" in out
    assert (run / "map.png").stat().st_size > 50_000 and (run / "map_reducer.joblib").exists()
    assert (run / "map.svg").read_text(encoding="utf-8").lstrip().startswith("<?xml")
    assert (run / "embeddings.h5.sha256").read_text() == embeddings_before
    assert jobs_cli("export-pkl", "--run", str(run)).returncode == 0
    assert (run / "wikipedia_merged.pkl").stat().st_size > 1000 * 384 * 4


def _read_labels(run: Path):
    with h5py.File(run / "map.h5") as m:
        names = {level: m[f"regions/{level}/names"].asstr()[:].tolist() for level in ("coarse", "fine")}
        return (m["coords"][:], m["labels/text"].asstr()[:].tolist(), m["labels/level"].asstr()[:].tolist(),
                m["labels/box"][:], m["labels/beside"][:], names)


def test_figure_labels_are_full_names_apart_and_over_the_map(demo_map):
    coords, texts, levels, boxes, beside, names = _read_labels(demo_map[0])
    assert beside.sum() <= 0.2 * len(texts)  # on the demo's landscape nearly every name sits on its region
    for text, level in zip(texts, levels):
        assert text in names[level] and "…" not in text  # the region's whole name, never cut
    assert Counter(levels)["coarse"] >= 0.8 * len(names["coarse"])  # most regions got their name on the figure
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not overlaps(boxes[i], boxes[j]), (texts[i], texts[j])
    for text, (x0, y0, x1, y1) in zip([t for t, b in zip(texts, beside) if not b], boxes[~beside]):
        under = ((coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)).sum()
        assert under >= MIN_POINTS, (text, under)


def test_coarse_regions_are_named_after_their_majority_topic(demo_map):
    run, _ = demo_map
    with h5py.File(run / "map.h5") as m, h5py.File(run / "embeddings.h5") as e:
        region = m["regions/coarse/region"][:]
        names = m["regions/coarse/names"].asstr()[:].tolist()
        topics = e["topics"].asstr()[:].tolist()
    named = 0
    for r, name in enumerate(names):
        members = Counter(t for t, g in zip(topics, region) if g == r and t.lower() not in NO_TOPIC)
        named += bool(members) and name.startswith(members.most_common(1)[0][0])
    assert len(names) >= 5 and named >= 0.8 * len(names), names
