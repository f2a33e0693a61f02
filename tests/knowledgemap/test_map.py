"""make map on the demo's Vital Articles: files, quality, regions and their labels."""

from __future__ import annotations

import json
import pickle
import re
from collections import Counter
from pathlib import Path

import h5py
import numpy as np

from kit.corpusfile import corpus_info, read_slice
from knowledgemap.naming import NO_TOPIC
from knowledgemap.placement import MIN_POINTS, OWN_SHARE, overlaps
from knowledgemap.regions import LEVELS
from tests.helpers import cli_args, jobs_cli
from tests.fixtures.chromium import set_viewport
from tests.knowledgemap.conftest import DEMO_ROWS


def test_map_files_and_topic_neighbours_kept(demo_map):
    run, out = demo_map
    embeddings_before = (run / "embeddings.h5.sha256").read_text()
    with h5py.File(run / "map.h5") as m, h5py.File(run / "embeddings.h5") as e:
        coords = m["coords"][:]
        assert coords.shape == (DEMO_ROWS, 2) and coords.min() >= 0 and coords.max() <= 1
        assert m["ids"].asstr()[:].tolist() == e["ids"].asstr()[:].tolist()
        assert m["questions/coords"].shape == (5, 2) and m["questions/embeddings"].shape == (5, 384)
        assert "questions" not in e  # never mixed into the article rows
        assert m["regions/coarse/region"].shape == m["regions/fine/region"].shape == (DEMO_ROWS,)
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
    # export-pkl still reads the run after the map wrote beside it: the seeds' dictionary holds the merged rows.
    assert "wikipedia_merged.pkl" in jobs_cli("export-pkl", "--run", str(run)).stdout
    with open(run / "wikipedia_merged.pkl", "rb") as f:
        seeds = pickle.load(f)
    with h5py.File(run / "embeddings.h5") as e:
        assert np.array_equal(seeds["embeddings"], e["embeddings"][:])
        assert [a["id"] for a in seeds["articles"]] == e["ids"].asstr()[:].tolist()
    assert seeds["total_articles"] == DEMO_ROWS and seeds["shape"] == (DEMO_ROWS, 384)


def _read_labels(run: Path):
    with h5py.File(run / "map.h5") as m:
        names = {level: m[f"regions/{level}/names"].asstr()[:].tolist() for level in ("coarse", "fine")}
        return (
            m["coords"][:],
            m["labels/text"].asstr()[:].tolist(),
            m["labels/level"].asstr()[:].tolist(),
            m["labels/box"][:],
            m["labels/beside"][:],
            names,
        )


def test_figure_labels_are_full_names_apart_and_over_the_map(demo_map):
    coords, texts, levels, boxes, beside, names = _read_labels(demo_map[0])
    assert beside.sum() <= 0.2 * len(texts)  # on the demo's landscape nearly every name sits on its region
    for text, level in zip(texts, levels):
        assert text in names[level] and "…" not in text  # the region's whole name, never cut
    assert Counter(levels)["coarse"] >= 0.8 * len(
        names["coarse"]
    )  # most regions got their name on the figure
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert not overlaps(boxes[i], boxes[j]), (texts[i], texts[j])
    for text, (x0, y0, x1, y1) in zip([t for t, b in zip(texts, beside) if not b], boxes[~beside]):
        under = (
            (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
        ).sum()
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


def _regions(run: Path) -> tuple[np.ndarray, dict, dict, np.ndarray]:
    """(coords, each level's region per point, each level's names, question coords) of map.h5."""
    with h5py.File(run / "map.h5") as m:
        region = {level: m[f"regions/{level}/region"][:] for level in LEVELS}
        names = {level: m[f"regions/{level}/names"].asstr()[:].tolist() for level in LEVELS}
        return m["coords"][:], region, names, m["questions/coords"][:]


def _first_view_labels(browser, run: Path) -> list[dict]:
    set_viewport(browser)
    browser.get((run / "map.html").as_uri())
    return browser.execute_script("return kmap.placedLabels")


def test_every_question_region_is_named_on_the_figure_and_the_page(demo_map, browser):
    """Each question's region and its nearest neighbourhood (the most common among its 5 nearest
    articles) are named on map.png/map.svg, on the page at its first view, and in make map's printout."""
    run, out = demo_map
    coords, region, names, q_xy = _regions(run)
    with h5py.File(run / "map.h5") as m:
        recorded = {level: m[f"regions/{level}/question_region"][:].tolist() for level in LEVELS}
        on_figure = set(m["labels/text"].asstr()[:].tolist())
    assert len(q_xy) == 5
    wanted = {}
    for k, (x, y) in enumerate(q_xy, start=1):
        nearest = np.argsort(((coords - [x, y]) ** 2).sum(axis=1))[:5]
        for level in LEVELS:
            r = int(np.bincount(region[level][nearest]).argmax())
            assert recorded[level][k - 1] == r
            wanted[(k, level)] = names[level][r]
    missing = {key: name for key, name in wanted.items() if name not in on_figure}
    assert not missing, f"not on map.png: {missing}"
    on_page = {label["text"] for label in _first_view_labels(browser, run)}
    missing = {key: name for key, name in wanted.items() if name not in on_page}
    assert not missing, f"not on map.html at its first view: {missing}"
    printed = re.findall(r"^  Q(\d) .* -> region: (.*?)(?:; nearest article: .*)?$", out, re.MULTILINE)
    assert printed == [(str(k), wanted[(k, "fine")]) for k in range(1, 6)], out


def test_every_label_sits_over_points_of_its_own_region(demo_map, browser):
    """On the figure and the page, most of the points under a name (if any) are of the region it
    names; every name but one set beside its island has points under it."""
    run, _ = demo_map
    coords, region, names, _ = _regions(run)
    with h5py.File(run / "map.h5") as m:
        figure = [
            {"text": t, "level": lv, "mapBox": box, "beside": bool(b)}
            for t, lv, box, b in zip(
                m["labels/text"].asstr()[:],
                m["labels/level"].asstr()[:],
                m["labels/box"][:],
                m["labels/beside"][:],
            )
        ]
    page = np.rint(coords.astype(np.float64) * 65535) / 65535  # as the page holds them (uint16)
    for where, labels, xy in (
        ("map.png", figure, coords),
        ("map.html", _first_view_labels(browser, run), page),
    ):
        assert labels, where
        for label in labels:
            level, (x0, y0, x1, y1) = label["level"], label["mapBox"]
            under = (xy[:, 0] >= x0) & (xy[:, 0] <= x1) & (xy[:, 1] >= y0) & (xy[:, 1] <= y1)
            own = region[level][under] == names[level].index(label["text"])
            assert under.any() or label["beside"], (where, label["text"])
            assert own.sum() >= OWN_SHARE * under.sum(), (
                where,
                label["text"],
                int(own.sum()),
                int(under.sum()),
            )


def test_region_names_keep_the_case_of_the_texts_and_the_model_its_name(demo_map, browser):
    run, _ = demo_map
    with h5py.File(run / "map.h5") as m:
        by_level = [m[f"regions/{level}/names"].asstr()[:].tolist() for level in ("coarse", "fine")]
    names = [n for level in by_level for n in level]
    texts = " ".join(
        read_slice(run / "corpus.h5", 0, corpus_info(run / "corpus.h5").rows, ("texts",))["texts"]
    )
    for name in names:
        for word in re.findall(r"[^\W\d_]{3,}", name)[1:]:  # the first word is sentence-cased
            mid = re.findall(rf"(?<=[a-z,] ){word}\b", texts, flags=re.IGNORECASE)
            assert not (word.islower() and mid and Counter(mid).most_common(1)[0][0][0].isupper()), (
                name,
                word,
            )
        parts = name.split(", ")
        # Two words at most; a third only tells apart two regions of one level that got the same name.
        base = ", ".join(parts[:2])
        twin = any(
            n != name and (n == base or n.startswith(base + ", ")) for level in by_level for n in level
        )
        assert len(parts) <= 2 or (len(parts) == 3 and twin), name
    assert "all-MiniLM-L6-v2" in (run / "map.svg").read_text(encoding="utf-8")  # the figure's title
    set_viewport(browser)
    browser.get((run / "map.html").as_uri())
    assert browser.execute_script("return document.getElementById('meta').textContent").endswith(
        "all-MiniLM-L6-v2"
    )


def test_topic_colours_are_distinct_and_named_in_a_legend(demo_map, browser):
    run, _ = demo_map
    set_viewport(browser)
    browser.get((run / "map.html").as_uri())
    legend, palette, by = browser.execute_script("return [D.legend, D.palette, D.colourBy]")
    shown = browser.execute_script(
        "return [...document.querySelectorAll('#legend span')].map(s => s.textContent)"
    )
    assert by == "topic" and shown == legend and len(legend) >= 5
    assert len(set(palette)) == len(palette) == len(legend)  # every topic its own colour


def test_a_questions_file_with_a_wrong_key_names_it(demo_map, tmp_path):
    bad = tmp_path / "quiz.json"
    bad.write_text(json.dumps([{"question": "Who?", "options": ["A", "B"], "answer": 1}]), encoding="utf-8")
    proc = jobs_cli(*cli_args("map", run=demo_map[0], questions=bad), check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert (
        f"{bad}: question 0 has no 'correctIndex' key (it has 'question', 'options', 'answer')" in proc.stderr
    )


def test_submit_with_a_map_refuses_a_bad_questions_file_before_any_work(tmp_path, vital_jsonl, model_path):
    corpus, _ = vital_jsonl(5)
    bad = tmp_path / "quiz.json"
    bad.write_text(
        json.dumps(
            [
                {"question": "Who?", "options": ["A", "B"], "correctIndex": 0},
                {"question": "Which?", "choices": ["A", "B"], "correctIndex": 1},
            ]
        ),
        encoding="utf-8",
    )
    run = tmp_path / "run"
    proc = jobs_cli(
        *cli_args(
            "submit", run=run, profile="local", corpus=corpus, model=model_path, map=True, questions=bad
        ),
        check=False,
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and not run.exists()
    assert "question 1 has no 'options' key (it has 'question', 'choices', 'correctIndex')" in proc.stderr
