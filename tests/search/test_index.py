"""The index: built beside embeddings.h5 with its sidecar and record, read back by faiss itself, used when
it matches, and refused in one line naming make index when it is missing (if asked for), damaged or stale."""

from __future__ import annotations

import json
import subprocess

import faiss
import numpy as np
import pytest

from bench.search_data import write_embeddings
from search.exact import exact_search
from search.heldout import held_out_queries, recall_at_k
from search.index import build_index, open_index
from search.indexfile import IndexMismatchError, index_files
from search.indexplan import HNSW_MAX_ROWS, ivf_pq_plan, plan_index
from search.session import open_search
from search.vectors import VectorFile
from tests.search.conftest import QUESTIONS, rewrite_with_sidecar


def test_an_index_of_a_fetched_run_is_built_read_by_faiss_and_answers_as_exact(fetched, st_model):
    source = fetched / "embeddings.h5"
    record = build_index(source)
    index_file, sidecar, record_file = index_files(source)
    assert [p.name for p in index_files(source)] == [
        "embeddings.faiss",
        "embeddings.faiss.sha256",
        "embeddings.faiss.json",
    ]
    check = subprocess.run(["sha256sum", "-c", sidecar.name], cwd=fetched, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    saved = json.loads(record_file.read_text())
    assert saved["source"]["sha256"] == (fetched / "embeddings.h5.sha256").read_text().split()[0]
    assert saved["source"]["identity"]["model_fingerprint"] and saved["kind"] == "hnsw"
    assert record.recall_at_10 >= 0.95 and record.recall_queries == 40
    assert faiss.read_index(str(index_file)).ntotal == 40
    queries = st_model.encode(QUESTIONS)
    with open_search(fetched) as searcher:
        assert searcher.method == "index" and searcher.describe().startswith("index hnsw (HNSW32,Flat)")
        by_index = searcher.search_vectors(queries, 10)
    with open_search(fetched, method="exact") as searcher:
        exact = searcher.search_vectors(queries, 10)
    assert by_index.rows.tolist() == exact.rows.tolist()
    np.testing.assert_allclose(by_index.scores, exact.scores, atol=1e-6)


def _refusal(fetched, **options) -> str:
    with pytest.raises(IndexMismatchError) as refused:
        open_search(fetched, **options)
    message = str(refused.value)
    assert "\n" not in message and message.endswith(f"make index RUN={fetched}"), message
    return message


def test_a_missing_index_asked_for_is_refused_naming_make_index(fetched):
    assert "has no index" in _refusal(fetched, method="index")
    with open_search(fetched) as searcher:
        assert searcher.method == "exact"  # none asked for: exact search


def test_an_index_of_another_embeddings_h5_is_refused_as_stale(fetched):
    build_index(fetched / "embeddings.h5")

    def remerged(h5):
        h5["embeddings"][0] = -h5["embeddings"][0]

    rewrite_with_sidecar(fetched / "embeddings.h5", remerged)
    assert "embeddings.faiss is stale: it indexes an embeddings.h5 with SHA-256" in _refusal(fetched)


def test_a_damaged_or_half_written_index_is_refused(fetched):
    source = fetched / "embeddings.h5"
    build_index(source)
    index_file, _, record_file = index_files(source)
    with open(index_file, "ab") as f:
        f.write(b"\0")
    assert "is damaged or was replaced" in _refusal(fetched)
    record_file.unlink()
    assert "is incomplete: embeddings.faiss.json is missing" in _refusal(fetched)


@pytest.fixture(scope="module")
def synthetic_source(tmp_path_factory):
    """20,000 x 64 clustered unit vectors (bench/search_data.py) in the merged layout."""
    source = tmp_path_factory.mktemp("ivfpq") / "embeddings.h5"
    write_embeddings(source, 20_000, 64)
    return source


def test_an_ivf_pq_index_reaches_its_recall_and_is_an_ivf_pq_index_for_faiss(synthetic_source):
    plan = ivf_pq_plan(20_000, 64)
    assert plan.factory == "IVF256,PQ8x8np" and plan.train_rows == 20_000
    record = build_index(synthetic_source, plan)
    assert record.kind == "ivf-pq" and record.recall_at_10 >= 0.95
    loaded = faiss.read_index(str(index_files(synthetic_source)[0]))
    assert isinstance(loaded, faiss.IndexIVFPQ) and loaded.nlist == 256 and loaded.ntotal == 20_000
    assert loaded.pq.M == 8 and loaded.pq.nbits == 8
    index = open_index(synthetic_source, required=True)
    assert index is not None
    with VectorFile(synthetic_source) as vectors:
        queries = held_out_queries(vectors, 200, seed=9)
        found = index.search(vectors, queries, 10)
        assert recall_at_k(found, exact_search(vectors, queries, 10)) >= 0.95


@pytest.mark.parametrize("rows", [1, 999, 40_000, HNSW_MAX_ROWS - 1, HNSW_MAX_ROWS, 10**7, 10**9])
@pytest.mark.parametrize("dim", [8, 384, 768, 1000, 1024])
def test_the_plan_is_sized_from_n(rows, dim):
    plan = plan_index(rows, dim)
    assert plan.kind == ("hnsw" if rows < HNSW_MAX_ROWS else "ivf-pq")
    if plan.kind == "ivf-pq":
        nlist = int(plan.factory.split(",")[0][3:])
        m = int(plan.factory.split(",PQ")[1].split("x")[0])
        assert nlist & (nlist - 1) == 0 and 50 * nlist <= rows
        assert dim % m == 0 and dim // m >= 8 and plan.train_rows <= rows
        assert plan.parameter_values[-1] <= nlist
