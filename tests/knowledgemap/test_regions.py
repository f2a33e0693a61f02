"""Regions, their names and label placement, on small data made here."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.map_synthetic import known_levels, landscape
from knowledgemap.naming import distinctive_terms, majority_topics, name_level
from knowledgemap.placement import MIN_POINTS, OWN_SHARE, Density, Members, on_ground, overlaps, place, wrap
from knowledgemap.regions import (
    ANCHOR_BINS,
    Level,
    anchors,
    cluster,
    label_order,
    region_order,
    regions_at,
    with_questions,
)
from knowledgemap.run import colours_and_legend


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
    docs = [
        "lava crater eruption",
        "volcano lava magma",
        "crater volcano lava",
        "sonata violin concerto",
        "violin orchestra sonata",
        "concerto violin orchestra",
    ]
    terms = distinctive_terms(np.array([0, 0, 0, 1, 1, 1]), 2, docs)
    assert terms[0][0] == "lava" and terms[1][0] == "violin"
    names = name_level(["Geography", "Geography"], terms, ["Etna", "Bach"])
    assert names == ["Geography: lava", "Geography: violin"]
    assert name_level([None, None], [[], ["violin", "sonata"]], ["Etna", "Bach"]) == [
        "Etna",
        "Violin, sonata",
    ]


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
    members = Members(coords, {"fine": fine})
    placed = place(wanted, density, members=members)
    for i, a in enumerate(placed):
        assert on_ground(a.box, density) and members.own(a)
        x0, y0, x1, y1 = a.box
        inside = (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
        assert inside.sum() >= MIN_POINTS
        assert all(not overlaps(a.box, b.box) for b in placed[i + 1 :])


def test_a_box_over_empty_space_is_refused():
    coords = np.random.default_rng(0).uniform(0, 0.3, (2000, 2))  # points only in the lower-left corner
    density = Density(coords, 32)
    assert on_ground((0.05, 0.05, 0.2, 0.1), density)
    assert not on_ground((0.6, 0.6, 0.8, 0.65), density)
    assert not on_ground(
        (0.25, 0.2, 0.55, 0.25), density
    )  # a corner of it over points, the rest over nothing


def _touching_on_a_grid(coords: np.ndarray, labels: np.ndarray, bins: int = 48) -> set[tuple[int, int]]:
    """Pairs of regions whose majority cells of a bins x bins grid share an edge (the eye's neighbours)."""
    cell = np.minimum((coords * bins).astype(int), bins - 1)
    counts = np.zeros((bins, bins, labels.max() + 1), int)
    np.add.at(counts, (cell[:, 0], cell[:, 1], labels), 1)
    grid = np.where(counts.sum(axis=2) > 0, counts.argmax(axis=2), -1)
    pairs = set()
    for a, b in ((grid[1:], grid[:-1]), (grid[:, 1:], grid[:, :-1])):
        both = (a >= 0) & (b >= 0) & (a != b)
        pairs |= {tuple(sorted(p)) for p in zip(a[both].tolist(), b[both].tolist())}
    return pairs


@pytest.mark.parametrize("per_coarse", [1, 5])  # 8 regions, and 40 on a 20-colour palette
def test_touching_regions_differ_in_colour(per_coarse):
    coords, _, fine, _ = landscape(4000, fine_per_coarse=per_coarse, seed=5)
    count = int(fine.max()) + 1
    level = Level("coarse", fine, [f"r{k}" for k in range(count)], anchors(coords, fine, count, 32))
    colours, legend, _, by = colours_and_legend(None, level, coords)
    pairs = _touching_on_a_grid(coords, fine)
    assert by == "region" and legend == [] and pairs
    for a, b in pairs:
        assert colours[fine == a][0] != colours[fine == b][0], (a, b)
    assert all(len(set(colours[fine == r])) == 1 for r in range(count))  # one colour per region


def test_question_regions_are_named_first():
    coords, _, fine, _ = landscape(3000, seed=2)
    count = int(fine.max()) + 1
    level = Level("fine", fine, [f"r{k}" for k in range(count)], anchors(coords, fine, count, 32))
    smallest = int(np.bincount(fine).argmin())
    inside = coords[fine == smallest].mean(axis=0, keepdims=True)
    asked = replace(level, questions=regions_at(coords, fine, inside))
    assert asked.questions == (smallest,) and region_order(asked)[0] == smallest
    assert sorted(region_order(asked).tolist()) == list(range(count))


def test_region_words_keep_the_case_the_texts_give_them():
    docs = [
        "Buddhism Buddhism The monk taught Buddhism in India.",
        "Buddhism spread to Tibet from India",
        "Sonata Sonata A sonata for violin.",
        "The violin sonata of Bach.",
        "Bach wrote a sonata in German style.",
    ]
    terms = distinctive_terms(np.array([0, 0, 1, 1, 1]), 2, docs)
    assert "Buddhism" in terms[0] and "buddhism" not in terms[0] and "sonata" in terms[1]
    assert name_level([None, None], terms, ["", ""])[1].startswith("Sonata")  # first word sentence-cased


def _own_share(coords: np.ndarray, labels: np.ndarray, region: int, box) -> float:
    """Share of the points inside ``box`` that are of ``region`` (1 where none is)."""
    x0, y0, x1, y1 = box
    inside = (coords[:, 0] >= x0) & (coords[:, 0] <= x1) & (coords[:, 1] >= y0) & (coords[:, 1] <= y1)
    return float((labels[inside] == region).mean()) if inside.any() else 1.0


LABEL_SIZE = {"coarse": (0.17, 0.022), "fine": (0.12, 0.015)}  # map units, as the figure's fonts


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_every_question_region_is_named_where_the_ground_is_crowded(seed):
    """Five questions on a landscape whose neighbourhoods overlap: each question's region at both
    levels gets its name, clear of the other names and of the markers."""
    rng = np.random.default_rng(seed)
    coords, coarse, fine, _ = landscape(2000, seed=seed)
    asked = coords[rng.choice(len(coords), 5)]
    levels = known_levels(coords, coarse, fine)
    levels = [with_questions(level, coords, asked, bins) for level, bins in zip(levels, ANCHOR_BINS)]
    order, lead = label_order(levels)
    wanted = [
        (levels[k].names[r], levels[k].name, r, levels[k].anchors[r], *LABEL_SIZE[levels[k].name])
        for k, r in order
    ]
    markers = [(x - 0.0125, y - 0.0125, x + 0.0125, y + 0.0125) for x, y in asked]
    members = Members(coords, {level.name: level.labels for level in levels})
    density = Density(coords, 22)
    narrow = [(wrap(text, limit=0), w * 0.6, h * 2) for text, _, _, _, w, h in wanted[:lead]]  # on two lines
    placed = place(wanted, density, 0.004, markers, members, narrow)
    named = {p.text.replace("\n", " ") for p in placed}
    assert {levels[k].names[r] for k, r in order[:lead]} <= named
    for i, a in enumerate(placed):
        assert not any(overlaps(a.box, b) for b in [*markers, *(p.box for p in placed[i + 1 :])])
        if not a.beside:
            level = levels[[lv.name for lv in levels].index(a.level)]
            assert on_ground(a.box, density)
            assert _own_share(coords, level.labels, a.region, a.box) >= OWN_SHARE, a.text


def test_questions_regions_lead_at_both_levels_smallest_first():
    coords, coarse, fine, _ = landscape(3000, seed=4)
    asked = coords[[10, 20]]
    levels = [
        with_questions(level, coords, asked, bins)
        for level, bins in zip(known_levels(coords, coarse, fine), ANCHOR_BINS)
    ]
    order, lead = label_order(levels)
    expected = {(k, r) for k, level in enumerate(levels) for r in level.questions}
    assert set(order[:lead]) == expected and sorted(order) == sorted(
        (k, r) for k, level in enumerate(levels) for r in range(level.count)
    )
    sizes = [int((levels[k].labels == r).sum()) for k, r in order[:lead]]
    assert sizes == sorted(sizes)


def test_a_level_of_one_region_names_nothing():
    coords = np.random.default_rng(0).uniform(0, 1, (40, 2)).astype(np.float32)
    one = np.zeros(40, np.int32)
    levels = [
        Level(name, one, ["Philosophy, East"], anchors(coords, one, 1, 32), (0,))
        for name in ("coarse", "fine")
    ]
    assert label_order(levels) == ([], 0)  # the whole map: its name would say nothing about a place
