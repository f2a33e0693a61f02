"""Exact search: the kit's top 10 is the brute-force cosine top 10 a test computes itself, whatever the
layout (memory-mapped or chunked and compressed), the block size or the threads; ties go to the lower row."""

from __future__ import annotations

import numpy as np
import pytest

from kit.h5files import open_h5
from search import exact
from search.exact import exact_search
from search.session import open_search
from search.vectors import VectorFile
from tests.search.conftest import QUESTIONS, brute_force_top, unit, write_merged_file


def test_a_fetched_run_answers_with_the_brute_force_top_10(fetched, st_model):
    with open_h5(fetched / "embeddings.h5") as h5:
        file_vectors, titles = h5["embeddings"][:], h5["titles"].asstr()[:]
    expected_rows, expected_scores = brute_force_top(file_vectors, st_model.encode(QUESTIONS), 10)
    with open_search(fetched) as searcher:
        assert searcher.method == "exact" and "exact search of 40 x 384" in searcher.describe()
        answers = searcher.search(QUESTIONS, k=10)
    for answer, rows, scores in zip(answers, expected_rows, expected_scores):
        assert [m.row for m in answer.matches] == rows.tolist()
        assert [m.rank for m in answer.matches] == list(range(1, 11))
        np.testing.assert_allclose([m.score for m in answer.matches], scores, atol=1e-5)
        assert [m.fields["title"] for m in answer.matches] == titles[rows].tolist()
    assert answers[0].matches[0].fields["url"].startswith("https://en.wikipedia.org/wiki/")


@pytest.fixture(scope="module")
def clustered():
    """2,000 rows in 40 tight clusters (near-ties), plus exact duplicates of row 7 at rows 1,500 and 1,999."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((40, 24))
    x = centres[rng.integers(0, 40, 2000)] + 0.05 * rng.standard_normal((2000, 24))
    x[1500] = x[1999] = x[7]
    return x.astype(np.float32)


@pytest.mark.parametrize("layout", ["contiguous", "chunked-gzip"])
def test_exact_top_k_is_the_brute_force_one_in_every_layout_block_size_and_thread_count(
    tmp_path, clustered, layout, monkeypatch
):
    path = tmp_path / "embeddings.h5"
    write_merged_file(path, unit(clustered))
    if layout == "chunked-gzip":
        with open_h5(path, "a") as h5:
            del h5["embeddings"]
            h5.create_dataset("embeddings", data=unit(clustered), chunks=(128, 24), compression="gzip")
    queries = np.concatenate([clustered[[7, 100]], np.random.default_rng(4).standard_normal((30, 24))])
    expected, _ = brute_force_top(unit(clustered), queries, 10)
    results = []
    for block_rows in (1024, 256):
        monkeypatch.setattr(exact, "MIN_BLOCK_ROWS", block_rows)
        monkeypatch.setattr(exact, "MAX_BLOCK_ROWS", block_rows)
        with VectorFile(path) as vectors:
            assert (vectors.mapped is not None) == (layout == "contiguous")
            results += [exact_search(vectors, queries, 10, threads=t) for t in (1, 2, 3)]
    for hits in results:
        assert hits.rows.tolist() == expected.tolist()
        assert hits.scores.dtype == np.float32 and (np.diff(hits.scores, axis=1) <= 0).all()
    assert expected[0][:3].tolist() == [7, 1500, 1999]  # equal scores: the lower row first


def test_rows_that_are_not_unit_length_are_ranked_by_cosine(tmp_path, clustered):
    scaled = clustered * np.random.default_rng(5).uniform(0.1, 10, (len(clustered), 1)).astype(np.float32)
    path = tmp_path / "embeddings.h5"
    write_merged_file(path, scaled, quality=False)
    queries = clustered[[3, 900]] + 0.01
    with VectorFile(path) as vectors:
        assert not vectors.unit_norm
        hits = exact_search(vectors, queries, 10)
    rows, scores = brute_force_top(scaled, queries, 10)
    assert hits.rows.tolist() == rows.tolist()
    np.testing.assert_allclose(hits.scores, scores, atol=1e-5)


def test_k_beyond_the_rows_returns_every_row_and_bad_queries_are_refused(tmp_path, clustered):
    path = tmp_path / "embeddings.h5"
    write_merged_file(path, unit(clustered[:5]))
    with VectorFile(path) as vectors:
        hits = exact_search(vectors, clustered[:2], k=10)
        assert hits.rows.shape == (2, 5) and sorted(hits.rows[0]) == [0, 1, 2, 3, 4]
        for bad in (np.zeros((1, 24)), np.ones((1, 23)), np.full((1, 24), np.nan)):
            with pytest.raises(exact.ConfigError) as refused:
                exact_search(vectors, bad, k=3)
            assert "\n" not in str(refused.value)
