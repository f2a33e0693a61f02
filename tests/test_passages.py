"""PASSAGES=1 through the real CLI (issue 27): local jobs, the real all-MiniLM-L6-v2, the merge.

One corpus of long and short documents (up to 50,000 characters, non-ASCII text, a document of only
numbers, one of one very long word) is embedded once in passage mode and read by every test; the tests
that change a run work on a copy or make their own.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import signal
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest

from jobs.demo import vital_articles
from kit.process import pid_alive
from tests.conftest import copy_run, cosine_rows, write_jsonl
from tests.helpers import children, cli_args, jobs_cli, jobs_here, make_cli, resumed_row, task_log, wait_for

SETTINGS = {"profile": "local", "device": "cpu", "shards": 2, "flush_rows": 2, "passages": True}


def passage_records() -> list[dict]:
    rng = random.Random(27)
    leads = list(vital_articles(200))
    joined = "\n\n".join(r["text"] for r in leads[40:])
    special = [
        ("long", "A long document", joined[:50_000]),
        (
            "mixed",
            "Ça et là",
            ("Ça marche très bien — naïve café, 東京都 😀; Короткий текст. " * 160).strip(),
        ),
        ("numbers", "Numbers", " ".join(str(rng.randint(0, 10**7)) for _ in range(2000))),
        ("word", "One word", "Pneumonoultramicroscopicsilicovolcanoconiosis" * 250),
        ("short", "Short", "A short document."),
        ("long-2", "Another long one", joined[50_000:62_000]),
    ]
    docs = [{"id": i, "title": t, "url": f"https://example.org/{i}", "text": x} for i, t, x in special]
    return docs[:3] + leads[:20] + docs[3:] + leads[20:40]


@pytest.fixture(scope="module")
def passage_run(tmp_path_factory, model_path) -> Path:
    root = tmp_path_factory.mktemp("passages")
    corpus = write_jsonl(root / "long.jsonl", passage_records())
    out = jobs_cli(
        *cli_args("submit", run=root / "run", corpus=corpus, model=model_path, wait=True, **SETTINGS)
    ).stdout
    assert "Merged 46 rows x 384" in out, out
    return root / "run"


def read_all(path: Path) -> dict[str, np.ndarray]:
    """Every dataset of an HDF5 file by name."""
    out: dict[str, np.ndarray] = {}
    with h5py.File(path) as h5:
        h5.visititems(
            lambda name, item: out.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
        )
    return out


def test_every_passage_is_encode_of_its_span_the_spans_tile_and_documents_are_their_mean(
    passage_run, st_model
):
    records = passage_records()
    texts = [r["text"] for r in records]
    assert max(map(len, texts)) == 50_000
    data = read_all(passage_run / "embeddings.h5")
    ptr, span, tokens = data["passage_ptr"], data["passages/span"], data["passages/tokens"]
    doc, index, emb = data["passages/document"], data["passages/index"], data["passages/embeddings"]
    assert [i.decode() for i in data["ids"]] == [r["id"] for r in records]
    counts = dict(zip((r["id"] for r in records), np.diff(ptr).tolist()))
    assert min(counts.values()) >= 1 and counts["long"] > 40 and counts["numbers"] > 10
    assert counts["word"] == counts["short"] == 1  # a word of 11,250 letters: the tokenizer's one [UNK]
    counts = np.diff(ptr)
    assert (doc == np.repeat(np.arange(len(texts)), counts)).all()
    assert (index == np.arange(len(doc)) - np.repeat(ptr[:-1], counts)).all()
    for i, text in enumerate(texts):  # the spans tile each text: from 0 to its end, no gap, overlapping
        s = span[ptr[i] : ptr[i + 1]]
        assert s[0, 0] == 0 and s[-1, 1] == len(text)
        assert (s[1:, 0] < s[:-1, 1]).all() and (s[1:, 0] > s[:-1, 0]).all()
    span_texts = [texts[d][a:b] for d, (a, b) in zip(doc, span)]
    assert cosine_rows(emb, st_model.encode(span_texts)).min() >= 0.9999
    assert (tokens <= 254).all() and tokens.sum() > 30_000
    weights = np.maximum(tokens, 1)[:, None].astype(np.float64)
    means = np.add.reduceat(emb * weights, ptr[:-1]) / np.add.reduceat(weights, ptr[:-1])
    assert cosine_rows(means, data["embeddings"]).min() >= 0.99999
    np.testing.assert_allclose(np.linalg.norm(data["embeddings"], axis=1), 1, rtol=1e-5)
    with h5py.File(passage_run / "embeddings.h5") as h5:
        assert h5.attrs["provenance_passage_window"] == 256 and h5.attrs["provenance_passage_overlap"] == 32
        assert h5.attrs["total_passages"] == len(emb)
    plan = json.loads((passage_run / "run.json").read_text())["plan"]
    assert plan[0]["stop"] < len(texts) / 2  # balanced by passage cost: the long documents share a shard


def test_a_shard_killed_mid_flush_resumes_to_the_same_file(passage_run, tmp_path, model_path):
    corpus = write_jsonl(tmp_path / "long.jsonl", passage_records())
    run = tmp_path / "killed"
    jobs_cli(*cli_args("submit", run=run, corpus=corpus, model=model_path, **SETTINGS))
    embed_id, merge_id = (j["job_id"] for j in json.loads((run / "run.json").read_text())["jobs"][:2])
    log = task_log(run, embed_id)
    flushing = lambda: log.exists() and log.read_text().count("flushed rows") >= 4  # noqa: E731
    wait_for(lambda: flushing() and any((run / "shards").glob("*.tmp")), 300, "a shard mid-way", poll_s=0.2)
    for pid in children(int(embed_id)) + [int(embed_id)]:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(int(merge_id)), 120, "the merge job to give up")
    assert not (run / "embeddings.h5").exists() and list((run / "shards").glob("*.tmp"))

    jobs_cli("submit", "--run", str(run), "--wait")
    new_embed = json.loads((run / "run.json").read_text())["jobs"][2]["job_id"]
    assert resumed_row(task_log(run, new_embed).read_text()) > 0
    killed, whole = read_all(run / "embeddings.h5"), read_all(passage_run / "embeddings.h5")
    assert killed.keys() == whole.keys()
    for name in whole:
        assert np.array_equal(killed[name], whole[name]), name


def test_the_merge_refuses_a_gap_or_a_missing_passage_naming_shard_document_and_span(passage_run, tmp_path):
    run = copy_run(passage_run, tmp_path / "run")
    shard = run / "shards" / "shard-00001.h5"
    with h5py.File(shard, "a") as h5:
        first = int(h5.attrs["start"])
        ptr = h5["passage_ptr"][:]
        doc = int(np.flatnonzero(np.diff(ptr) > 2)[0])  # a document of several passages
        p = int(ptr[doc]) + 1
        start, end = (int(v) for v in h5["passages/span"][p])
        h5["passages/span"][p] = [h5["passages/span"][p - 1][1] + 3, end]
    refused = jobs_cli("merge", "--run", str(run), check=False)
    doc_id = passage_records()[first + doc]["id"]
    assert refused.returncode == 2, refused.stdout
    assert f"shard-00001.h5 passages: document row {first + doc} (id '{doc_id}'): passage 1" in refused.stderr
    assert "in no passage" in refused.stderr and f"make resubmit RUN={run} REDO=1" in refused.stderr

    with h5py.File(shard, "a") as h5:
        h5["passages/span"][p] = [start, end]
        h5["passage_ptr"][doc + 1] = h5["passage_ptr"][doc]  # the document's passages go to the next one
    refused = jobs_cli("merge", "--run", str(run), check=False)
    assert (
        refused.returncode == 2
        and f"document row {first + doc} (id '{doc_id}'): has no passage" in refused.stderr
    )
    assert not (run / "embeddings.h5.tmp").exists()


def test_make_export_writes_a_documents_and_a_passages_table_and_the_float16_and_pkl_copies_keep_both(
    passage_run, tmp_path
):
    run = copy_run(passage_run, tmp_path / "run")
    out = make_cli("export", RUN=run, TEXT=1).stdout
    assert "Exported 46 rows x 384" in out and "passages x 384 (float32) to" in out
    documents, passages = pq.read_table(run / "embeddings.parquet"), pq.read_table(run / "passages.parquet")
    data = read_all(run / "embeddings.h5")
    records = passage_records()
    assert documents.column("id").to_pylist() == [r["id"] for r in records]
    np.testing.assert_array_equal(np.array(documents.column("embedding").to_pylist()), data["embeddings"])
    assert passages.num_rows == len(data["passages/span"])
    texts = {r["id"]: r["text"] for r in records}
    rows = passages.to_pylist()
    assert [r["passage"] for r in rows[:3]] == [0, 1, 2] and rows[0]["start"] == 0
    assert [[r["start"], r["end"]] for r in rows] == data["passages/span"].tolist()
    assert [r["tokens"] for r in rows] == data["passages/tokens"].tolist()
    assert all(r["text"] == texts[r["id"]][r["start"] : r["end"]] for r in rows)
    np.testing.assert_array_equal(np.array([r["embedding"] for r in rows]), data["passages/embeddings"])
    make_cli("export", RUN=run, FORMAT="npy")
    npy = np.load(run / "passages-npy-float32" / "embeddings.npy")
    np.testing.assert_array_equal(npy, data["passages/embeddings"])
    assert pq.read_table(run / "passages-npy-float32" / "metadata.parquet").column_names[:2] == [
        "id",
        "passage",
    ]
    make_cli("export-float16", RUN=run)
    with h5py.File(run / "embeddings.float16.h5") as h5:
        assert h5["embeddings"].dtype == h5["passages/embeddings"].dtype == np.float16
        assert (h5["passage_ptr"][:] == data["passage_ptr"]).all()
        np.testing.assert_allclose(h5["embeddings"][:], data["embeddings"], atol=1e-3)
    make_cli("export-pkl", RUN=run)
    with open(run / "wikipedia_merged.pkl", "rb") as f:
        pkl = pickle.load(f)
    np.testing.assert_array_equal(pkl["embeddings"], data["embeddings"])  # the document vectors
    assert pkl["total_articles"] == 46


def test_make_map_draws_the_documents_from_their_document_vectors(passage_run, tmp_path):
    run = copy_run(passage_run, tmp_path / "run")
    out = jobs_here("map", "--run", str(run)).stdout  # make map itself: tests/knowledgemap
    assert f"Map of {run}" in out, out
    data = read_all(run / "embeddings.h5")
    with h5py.File(run / "map.h5") as h5:
        assert h5["coords"].shape == (46, 2)  # one point a document, not a passage
        assert h5["ids"].asstr()[:].tolist() == [i.decode() for i in data["ids"]]
        assert h5.attrs["source_sha256"] == (run / "embeddings.h5.sha256").read_text().split()[0]
    assert (run / "map.html").is_file() and (run / "map.png").is_file()


def test_reuse_takes_every_passage_of_an_unchanged_document_and_recomputes_a_changed_one(
    passage_run, tmp_path, model_path, st_model
):
    records = passage_records()
    records[1] = {**records[1], "text": "Revised. " + records[1]["text"]}
    corpus = write_jsonl(tmp_path / "month2.jsonl", records)
    out = jobs_cli(
        *cli_args(
            "submit",
            run=tmp_path / "m2",
            corpus=corpus,
            model=model_path,
            reuse=passage_run,
            wait=True,
            **SETTINGS,
        )
    ).stdout
    assert "REUSE: 45 rows match" in out
    before, after = read_all(passage_run / "embeddings.h5"), read_all(tmp_path / "m2" / "embeddings.h5")
    p0, p1 = after["passage_ptr"], before["passage_ptr"]
    for i in (0, 2, 30):  # unchanged: the same passages, bit for bit
        assert np.array_equal(
            after["passages/embeddings"][p0[i] : p0[i + 1]], before["passages/embeddings"][p1[i] : p1[i + 1]]
        )
    assert after["reused"].tolist() == [1] + [0] + [1] * 44
    text = records[1]["text"]
    spans = after["passages/span"][p0[1] : p0[2]]
    encoded = st_model.encode([text[a:b] for a, b in spans])
    assert cosine_rows(after["passages/embeddings"][p0[1] : p0[2]], encoded).min() >= 0.9999

    plain = jobs_cli(
        *cli_args(
            "plan",
            run=tmp_path / "plain",
            corpus=corpus,
            model=model_path,
            reuse=passage_run,
            profile="local",
        ),
        check=False,
    )
    assert plain.returncode == 2 and "passage_window: 256 (earlier) vs None (this run)" in plain.stderr
