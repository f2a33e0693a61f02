import json
import os
import pickle

import h5py
import pytest

from embedder.corpus import CorpusOptions, prepare, prepare_source
from kit.corpusfile import corpus_info, read_slice
from kit.errors import CorpusError

GOOD = [{"id": i, "title": f"T{i}", "url": f"u{i}", "text": f"text number {i}"} for i in range(5)]


def _prepare(tmp_path, records, **options):
    return prepare(records, tmp_path / "corpus.h5", CorpusOptions(**options), "test")


def _prepare_file(tmp_path, path, **options):
    return prepare_source(path, tmp_path / "corpus.h5", CorpusOptions(**options))


def test_pickle_list_of_dicts_is_read(tmp_path):
    path = tmp_path / "wikipedia.pkl"
    path.write_bytes(pickle.dumps(GOOD))
    summary = _prepare_file(tmp_path, path)
    assert summary.rows == 5 and not summary.rejected
    rows = read_slice(tmp_path / "corpus.h5", 1, 3, ("ids", "texts", "titles", "urls"))
    assert rows == {
        "ids": ["1", "2"],
        "texts": ["text number 1", "text number 2"],
        "titles": ["T1", "T2"],
        "urls": ["u1", "u2"],
    }


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([{"id": 1, "text": "x", "payload": _RunsCode()}]))
    with pytest.raises(CorpusError, match="posix.system|os.system"):
        _prepare_file(tmp_path, path)
    assert not (tmp_path / "PWNED").exists()


def test_bad_rows_are_refused_with_counts_examples_and_next_step(tmp_path):
    records = GOOD + [
        {"id": 1, "text": "duplicate id"},
        {"id": 10, "title": "no text"},
        {"id": 11, "text": "   "},
        {"id": 12, "text": 3.5},
        {"id": 13, "text": "nul \x00 byte"},
        {"id": 14, "text": "lone \ud800 surrogate"},
        {"title": "no id", "text": "x"},
        "not a dict",
    ]
    with pytest.raises(CorpusError) as err:
        _prepare(tmp_path, records)
    msg = str(err.value)
    assert "8 of 13 rows cannot be embedded" in msg
    for reason in (
        "duplicate id",
        "missing text",
        "empty text",
        "text is not a string",
        "NUL byte in text",
        "lone surrogate",
        "missing id",
        "not a dict",
    ):
        assert reason in msg
    assert "row 5 id='1': duplicate id (first at row 1)" in msg
    assert "SKIP_BAD_ROWS=1" in msg
    assert not (tmp_path / "corpus.h5").exists() and not (tmp_path / "corpus.h5.tmp").exists()


def test_skip_bad_rows_accounts_for_every_input_row(tmp_path):
    records = [*GOOD[:2], {"id": 7, "text": ""}, GOOD[2], {"id": 0, "text": "dup"}]
    summary = _prepare(tmp_path, records, skip_bad_rows=True)
    assert summary.rows == 3 and summary.source_rows == 5
    assert read_slice(tmp_path / "corpus.h5", 0, 3, ("ids",))["ids"] == ["0", "1", "2"]
    with h5py.File(tmp_path / "corpus.h5") as h5:
        assert h5["rejected/row"][:].tolist() == [2, 4]
        assert h5["rejected/reason"].asstr()[:].tolist() == ["empty text", "duplicate id (first at row 0)"]
    assert corpus_info(tmp_path / "corpus.h5").rejected_rows == 2


def test_zero_rows_is_an_error(tmp_path):
    with pytest.raises(CorpusError, match="no rows to embed"):
        _prepare(tmp_path, [])
    with pytest.raises(CorpusError, match=r"no rows to embed \(1 rejected\)"):
        _prepare(tmp_path, [{"id": 1, "text": ""}], skip_bad_rows=True)


def test_jsonl_with_broken_line_and_text_fields(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n\n{not json\n" + json.dumps(GOOD[1]) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="line 3 is not valid JSON"):
        _prepare_file(tmp_path, path)
    _prepare_file(tmp_path, path, skip_bad_rows=True, text_fields=("title", "text"))
    assert read_slice(tmp_path / "corpus.h5", 0, 2)["texts"] == ["T0\n\ntext number 0", "T1\n\ntext number 1"]


def test_missing_corpus_file_names_it(tmp_path):
    with pytest.raises(CorpusError, match="nope.jsonl does not exist"):
        _prepare_file(tmp_path, tmp_path / "nope.jsonl")


def test_costs_are_recorded_at_prepare(tmp_path):
    from kit.corpusfile import row_costs, text_chars

    records = [{"id": i, "text": "x" * (10 + 40 * i)} for i in range(4)] + [{"id": 9, "text": "é" * 2000}]
    _prepare(tmp_path, records)
    path = tmp_path / "corpus.h5"
    assert text_chars(path).tolist() == [10, 50, 90, 130, 2000]
    costs = row_costs(path, max_seq_length=256)
    assert costs.shape == (5,) and (costs > 0).all() and (costs[1:4] > costs[:3]).all()
    assert costs[4] == 256 + 8.0  # cut at max_seq_length tokens, plus the row overhead
    with h5py.File(path, "a") as h5:  # a corpus prepared before costs were recorded: counted from the texts
        del h5["text_chars"]
    assert text_chars(path).tolist() == [10, 50, 90, 130, 2000]


def test_duplicates_are_found_across_spills_to_disk(tmp_path, monkeypatch):
    from embedder import duplicates

    monkeypatch.setattr(duplicates, "FLUSH_ROWS", 1000)  # spill to the bucket files many times
    records = [{"id": f"doc-{i}", "text": "t"} for i in range(20_000)] + [
        {"id": "doc-17", "text": "again"},
        {"id": "doc-19999", "text": "again"},
    ]
    with pytest.raises(CorpusError) as err:
        _prepare(tmp_path, records)
    assert "row 20000 id='doc-17': duplicate id (first at row 17)" in str(err.value)
    assert "row 20001 id='doc-19999': duplicate id (first at row 19999)" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # no corpus, no .tmp, no spill folder left


def test_fingerprint_is_a_function_of_the_prepared_rows(tmp_path):
    a = _prepare(tmp_path / "a", GOOD)
    b = _prepare(
        tmp_path / "b",
        [*GOOD[:2], {"id": 99, "text": ""}, *GOOD[2:], {"id": 0, "text": "dup"}],
        skip_bad_rows=True,
    )
    c = prepare(
        (dict(r, url="elsewhere") for r in GOOD), tmp_path / "c" / "corpus.h5", CorpusOptions(), "other"
    )
    assert a.fingerprint == b.fingerprint == c.fingerprint
