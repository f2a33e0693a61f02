"""The files a corpus index reads: the run's own parquet recognised by content, a user's file by mtime too.

A copy of a run folder resets every modification time; the run's own converted parquet is still
the same file (issue 30). A missing one (a partial copy) or a user's source that changed is refused
in one line naming the file and the command that repairs it, and that command repairs it.
"""

from __future__ import annotations

import json
import os
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedder.corpus import CorpusOptions
from jobs import corpusrun
from kit.corpusfile import corpus_problem, read_slice, run_files
from kit.errors import CorpusError

ROWS = [{"id": f"d{i}", "title": f"T{i}", "text": f"text number {i}"} for i in range(8)]


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_error(index) -> str:
    with pytest.raises(CorpusError) as err:
        read_slice(index, 0, 2)
    return str(err.value)


def _converted_run(tmp_path):
    run = tmp_path / "run"
    record = corpusrun.first_corpus(run, _jsonl(tmp_path / "c.jsonl", ROWS), CorpusOptions(), None)
    return run, record, run_files(run / "corpus.h5")[0]


def test_the_runs_own_parquet_with_a_new_mtime_is_the_same_file(tmp_path):
    run, _, parquet = _converted_run(tmp_path)
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, copy_function=shutil.copy)  # cp -r: every mtime is now
    os.utime(copy / parquet.name, ns=(1, 1))
    assert corpus_problem(copy / "corpus.h5") is None
    assert read_slice(copy / "corpus.h5", 0, 2, ("ids", "titles")) == {
        "ids": ["d0", "d1"],
        "titles": ["T0", "T1"],
    }


def test_a_partial_copy_is_refused_in_one_line_and_the_printed_submit_repairs_it(tmp_path):
    run, record, parquet = _converted_run(tmp_path)
    parquet.unlink()
    message = _read_error(run / "corpus.h5")
    assert "\n" not in message and f"Run folder {run} is incomplete: {parquet.name}" in message
    assert message.endswith(f"make submit RUN={run} CORPUS={tmp_path / 'c.jsonl'}"), message
    assert corpus_problem(run / "corpus.h5") == f"{parquet.name}: it is missing"
    check = corpusrun.check_corpus(run, record, tmp_path / "c.jsonl", CorpusOptions(), None)
    assert not check.changes and check.candidate is not None  # the same rows: nothing to recompute
    corpusrun.install_candidate(run, check.candidate)
    assert corpus_problem(run / "corpus.h5") is None
    assert read_slice(run / "corpus.h5", 7, 8)["texts"] == ["text number 7"]


def test_the_runs_own_parquet_replaced_is_refused_naming_it(tmp_path):
    run, _, parquet = _converted_run(tmp_path)
    pq.write_table(pa.Table.from_pylist([{"id": "x", "text": "other"}]), parquet)
    message = _read_error(run / "corpus.h5")
    assert "\n" not in message and f"{parquet}, the run's own copy of the rows of corpus" in message
    assert "damaged or replaced" in message and f"make submit RUN={run} CORPUS=" in message


def test_a_changed_user_source_is_refused_and_a_touched_one_is_prepared_again(tmp_path):
    source = tmp_path / "wiki.parquet"
    pq.write_table(pa.Table.from_pylist(ROWS), source)
    run = tmp_path / "run"
    record = corpusrun.first_corpus(run, source, CorpusOptions(), None)
    os.utime(source, ns=(1, 1))  # touched: the same bytes
    message = _read_error(run / "corpus.h5")
    assert "\n" not in message and f"Source file {source} changed since the corpus was prepared" in message
    assert message.endswith(f"make submit RUN={run} CORPUS={source}")
    check = corpusrun.check_corpus(run, record, None, CorpusOptions(), None)  # make submit RUN=...
    assert not check.changes and check.candidate is not None
    corpusrun.install_candidate(run, check.candidate)
    assert read_slice(run / "corpus.h5", 0, 1)["texts"] == ["text number 0"]

    pq.write_table(pa.Table.from_pylist([dict(r, text=r["text"].upper()) for r in ROWS]), source)
    message = _read_error(run / "corpus.h5")
    assert "\n" not in message and f"Source file {source} changed" in message
    check = corpusrun.check_corpus(run, record, source, CorpusOptions(), None)
    assert "corpus" in check.changes  # other rows: a change of what the vectors are (REDO=all)
