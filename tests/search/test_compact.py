"""make export FORMAT=int8|binary: the copies read back with h5py as their layout says (docs/FORMAT.md),
carry their sidecars and the recall measured at export, answer from a folder holding only them, and
are refused beside another embeddings.h5 than theirs."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from bench.search_data import write_embeddings
from kit.h5files import open_h5
from merge.export import describe
from merge.exporter import export_run
from search.compact import compact_search
from search.compactfile import StaleCompactError, open_binary, open_int8
from search.exact import exact_search
from search.heldout import held_out_queries, recall_at_k
from search.session import open_search
from search.vectors import VectorFile
from tests.search.conftest import QUESTIONS, rewrite_with_sidecar, unit


def test_int8_and_binary_copies_read_back_as_their_layout_says(fetched):
    reports = [describe(export_run(fetched, fmt)) for fmt in ("int8", "binary")]
    assert "recall@10 against float32 exact (40 held-out queries): int8 " in reports[0]
    assert "binary+int8" in reports[1] and "binary+float32" in reports[1]
    names = ["embeddings.int8.h5", "embeddings.binary.h5"]
    check = subprocess.run(
        ["sha256sum", "-c", *[n + ".sha256" for n in names]], cwd=fetched, capture_output=True
    )
    assert check.returncode == 0
    with open_h5(fetched / "embeddings.h5") as h5:
        rows = unit(h5["embeddings"][:])
        ids, digest = h5["ids"].asstr()[:], (fetched / "embeddings.h5.sha256").read_text().split()[0]
    with open_h5(fetched / names[0]) as h5:
        codes, low, high = h5["embeddings"][:], h5["low"][:], h5["high"][:]
        assert h5.attrs["format"] == "embedkit-int8/1" and h5.attrs["source_sha256"] == digest
        assert h5["ids"].asstr()[:].tolist() == ids.tolist() and h5.attrs["provenance_model_fingerprint"]
    assert codes.dtype == np.int8 and codes.shape == rows.shape and low.shape == high.shape == (384,)
    read_back = low + (codes.astype(np.float32) + 128) * (high - low) / 255
    assert (np.sum(unit(read_back) * rows, axis=1) > 0.999).all()
    with open_h5(fetched / names[1]) as h5:
        bits, thresholds = h5["embeddings"][:], h5["thresholds"][:]
        recall = json.loads(h5.attrs["recall"])
    assert bits.dtype == np.uint8 and bits.shape == (40, 48)  # 384 bits: six 64-bit words
    assert (np.unpackbits(bits, axis=1)[:, :384] == (rows > thresholds)).all()
    assert recall["binary+int8"] >= 0.95 and recall["binary+float32"] >= 0.95 and recall["queries"] == 40


def test_a_folder_with_only_the_small_copies_answers_questions(fetched, tmp_path, st_model):
    for fmt in ("int8", "binary"):
        export_run(fetched, fmt)
    laptop = tmp_path / "small"
    laptop.mkdir()
    for name in ("embeddings.int8.h5", "embeddings.binary.h5"):
        shutil.copy2(fetched / name, laptop / name)
    queries = st_model.encode(QUESTIONS)
    with open_search(fetched, method="exact") as searcher:
        exact = searcher.search_vectors(queries, 10)
    with open_search(laptop) as searcher:
        assert searcher.method == "binary" and "rescored with embeddings.int8.h5" in searcher.describe()
        answers = searcher.search(QUESTIONS, k=10)
        small = searcher.search_vectors(queries, 10)
    assert small.rows[:, 0].tolist() == exact.rows[:, 0].tolist() and recall_at_k(small, exact) >= 0.9
    assert answers[0].matches[0].fields["title"] and answers[0].matches[0].row == exact.rows[0, 0]


def test_a_copy_of_another_embeddings_h5_is_refused_naming_make_export(fetched):
    export_run(fetched, "binary")

    def remerged(h5):
        h5["embeddings"][0] = -h5["embeddings"][0]

    rewrite_with_sidecar(fetched / "embeddings.h5", remerged)
    with pytest.raises(StaleCompactError) as refused:
        open_search(fetched, method="binary")
    message = str(refused.value)
    assert "\n" not in message and message.endswith(f"make export RUN={fetched} FORMAT=binary")


def test_binary_candidates_rescored_keep_the_recall_at_scale(tmp_path):
    source = tmp_path / "embeddings.h5"
    write_embeddings(source, 30_000, 128)
    for fmt in ("int8", "binary"):
        export_run(tmp_path, fmt)
    codes, int8 = open_binary(source), open_int8(source)
    assert codes is not None and int8 is not None
    assert codes.recall["binary+int8"] >= 0.95
    with VectorFile(source) as vectors:
        queries = held_out_queries(vectors, 100, seed=8)
        truth = exact_search(vectors, queries, 10)
        for rescorer in (int8, vectors):
            assert recall_at_k(compact_search(codes, queries, 10, rescorer=rescorer), truth) >= 0.95
