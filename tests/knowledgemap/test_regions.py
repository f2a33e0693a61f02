"""Regions, their names and label placement, on small data made here."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from bench.map_synthetic import landscape
from knowledgemap.naming import distinctive_terms, majority_topics, name_level
from knowledgemap.placement import MIN_POINTS, Density, on_ground, overlaps, place, wrap
from knowledgemap.regions import anchors, cluster


def test_clusters_follow_the_landscape_and_every_point_has_a_region():
    coords, coarse, _, _ = landscape(4000, seed=3)
    labels = cluster(coords, 40)
    assert labels.min() == 0 and labels.shape == (4000,)
    # each found region is mostly one generated region
    purity = sum(np.bincount(coarse[labels == r]).max() for r in range(labels.max() + 1)) / len(coords)
    assert purity > 0.9 and labels.max() + 1 >= 5


def test_majority_topic_ignores_articles_without_one():
    labels = np.array([0, 0, 0, 0, 1, 1, 1])
    topics = ["Uncategorized", "Uncategorized", "Uncategorized", "Arts", "History", "Arts", "Geography"]
    assert majority_topics(labels, 2, topics) == ["Arts", None]  # region 1: no topic holds 40 %


def test_words_that_set_a_region_apart_name_it():
    docs = ["lava crater eruption", "volcano lava magma", "crater volcano lava", "sonata violin concerto",
            "violin orchestra sonata", "concerto violin orchestra"]
    terms = distinctive_terms(np.array([0, 0, 0, 1, 1, 1]), 2, docs)
    assert terms[0][0] == "lava" and terms[1][0] == "violin"
    names = name_level(["Geography", "Geography"], terms, ["Etna", "Bach"])
    assert names == ["Geography: lava", "Geography: violin"]
    assert name_level([None, None], [[], ["violin", "sonata"]], ["Etna", "Bach"]) == ["Etna", "Violin, sonata"]


@given(st.text(alphabet="ab cdefgh", min_size=1, max_size=60))
def test_wrap_splits_between_words_and_never_cuts(name):
    lines = wrap(name).split("\n")
    assert len(lines) <= 2 and " ".join(lines) == name


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.02, 0.3), st.floats(0.01, 0.08))
def test_placed_labels_never_overlap_and_sit_on_points(seed, width, height):
    rng = np.random.default_rng(seed)
    coords, _, fine, _ = landscape(3000, seed=seed)
    density = Density(coords, 32)
    count = fine.max() + 1
    spots = anchors(coords, fine, count, 32)
    wanted = [(f"region {r}", "fine", r, spots[r], width * rng.uniform(0.5, 1), height) for r in range(count)]
    placed = place(wanted, density)
    for i, a in enumerate(placed):
        assert on_ground(a.box, density)
        x0, y0, x1, y1 = a.box
        inside = (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
        assert inside.sum() >= MIN_POINTS
        assert all(not overlaps(a.box, b.box) for b in placed[i + 1:])


def test_a_box_over_empty_space_is_refused():
    coords = np.random.default_rng(0).uniform(0, 0.3, (2000, 2))  # points only in the lower-left corner
    density = Density(coords, 32)
    assert on_ground((0.05, 0.05, 0.2, 0.1), density)
    assert not on_ground((0.6, 0.6, 0.8, 0.65), density)
    assert not on_ground((0.25, 0.2, 0.55, 0.25), density)  # a corner of it over points, the rest over nothing
