"""A run's corpus and its candidates: the run-folder parquet of a converted source goes with its index."""

import json

from embedder.corpus import CorpusOptions
from jobs import corpusrun
from kit.corpusfile import read_slice

ROWS = [{"id": i, "text": f"text {i}"} for i in range(6)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _parquets(run):
    return sorted(p.name for p in run.glob("*.parquet"))


def test_candidates_keep_only_the_parquet_their_index_reads(tmp_path):
    run = tmp_path / "run"
    old = corpusrun.first_corpus(run, _jsonl(tmp_path / "a.jsonl", ROWS), CorpusOptions(), None)
    first = _parquets(run)
    assert len(first) == 1
    same = corpusrun.check_corpus(run, old, _jsonl(tmp_path / "b.jsonl", ROWS), CorpusOptions(), None)
    assert (
        same.candidate is None and _parquets(run) == first
    )  # same content: the candidate and its parquet go
    other = [dict(r, text="changed") if r["id"] == 2 else r for r in ROWS]
    changed = corpusrun.check_corpus(run, old, _jsonl(tmp_path / "c.jsonl", other), CorpusOptions(), None)
    assert changed.candidate is not None and "corpus" in changed.changes and len(_parquets(run)) == 2
    corpusrun.discard_candidate(run)
    assert _parquets(run) == first and not changed.candidate.exists()
    changed = corpusrun.check_corpus(run, old, _jsonl(tmp_path / "c.jsonl", other), CorpusOptions(), None)
    corpusrun.install_candidate(run, changed.candidate)  # REDO=all: the new corpus, and only its parquet
    assert len(_parquets(run)) == 1 and _parquets(run) != first
    assert read_slice(run / "corpus.h5", 2, 3)["texts"] == ["changed"]
