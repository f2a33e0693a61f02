"""The corpus index (embedkit-corpus/2): parquet read in place, checks in Arrow equal to the Python
checks, a changed source refused, a task's read of only its row groups, old corpora still read."""

import json
import os

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embedder.arrowcheck import arrow_check
from embedder.corpus import CorpusOptions, prepare, prepare_source
from embedder.readers.detect import open_reader
from embedder.rowcheck import check_batch, encode_rows, kept_rows
from kit.corpusfile import (
    CorpusReader,
    copy_meta,
    corpus_info,
    read_chunks,
    read_slice,
    row_costs,
)
from kit.errors import CorpusError
from kit.format import CORPUS_FORMAT_V1, CORPUS_FORMAT_V2, UTF8, content_hash

# Values the bulk checks must treat exactly as the Python checks: whitespace Python knows
# (\x1c, \u2003, \x85), texts that start with a byte a space could start (€, \xa0...), blank parts.
AWKWARD = [
    "plain",
    " lead",
    "\x1c\u2003 ",
    "\u2003",
    "€ euro",
    "\xa0nbsp",
    "trail \x85",
    "é",
    "\x85",
    "x" * 300,
]


def _rows(n=40):
    return [
        {
            "id": f"d{i}",
            "title": AWKWARD[(i + 3) % len(AWKWARD)] if i % 4 else None,
            "url": f"u{i}",
            "text": AWKWARD[i % len(AWKWARD)] + f" {i}",
        }
        for i in range(n)
    ]


def _write(path, rows, row_group_size=7, schema=None):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path, row_group_size=row_group_size)
    return path


def _kept_values(kept):
    return (kept.ids.cast(pa.binary()).to_pylist(), kept.hashes.tolist(), kept.rows.tolist(), kept.has_topics)


def _python_kept(batch, options, row0):
    checked = check_batch(batch, options, row0, check_utf8=True)
    return kept_rows(checked, encode_rows(checked))


@pytest.mark.parametrize("text_fields", [("text",), ("title", "text")])
def test_bulk_checks_keep_what_the_python_checks_keep(tmp_path, text_fields):
    rows = [dict(r, title=r["title"] or "t") for r in _rows()] if "title" in text_fields else _rows()
    rows[5]["title"], rows[6]["title"] = "\u2003", ""  # blank titles: left out of the joined text
    options = CorpusOptions(text_fields=text_fields)
    path = _write(tmp_path / "w.parquet", rows, row_group_size=100)
    batch = next(open_reader(path).batches(options.columns()))
    fast = arrow_check(batch, options, 0)
    slow = _python_kept(batch, options, 0)
    assert fast is not None and not slow.bad
    assert _kept_values(fast) == _kept_values(slow)
    assert fast.chars.tolist() == slow.chars.tolist()


@pytest.mark.parametrize(
    "bad",
    [
        {"text": "\u2003\x1c"},
        {"text": ""},
        {"text": None},
        {"text": "a\x00b"},
        {"id": " "},
        {"id": None},
        {"title": "t\x00"},
    ],
)
def test_a_batch_with_a_bad_row_goes_to_the_row_by_row_check(tmp_path, bad):
    rows = _rows(10)
    rows[4].update(bad)
    path = _write(tmp_path / "w.parquet", rows, row_group_size=100)
    batch = next(open_reader(path).batches(CorpusOptions().columns()))
    assert arrow_check(batch, CorpusOptions(), 0) is None
    assert [b.row for b in _python_kept(batch, CorpusOptions(), 0).bad] == [4]


def test_integer_ids_and_row_ids_match_the_python_check(tmp_path):
    rows = [{"id": 10**12 + i, "text": f"t{i}"} for i in range(9)]
    batch = next(open_reader(_write(tmp_path / "w.parquet", rows, 100)).batches(CorpusOptions().columns()))
    for options in (CorpusOptions(), CorpusOptions(id_field="@row")):
        fast, slow = arrow_check(batch, options, 5), _python_kept(batch, options, 5)
        assert _kept_values(fast) == _kept_values(slow)


def test_parquet_is_read_in_place_and_the_index_holds_no_text(tmp_path):
    rows = _rows(200)
    source = _write(tmp_path / "src" / "w.parquet", rows, 16) if (tmp_path / "src").mkdir() is None else None
    run = tmp_path / "run"
    summary = prepare_source(source, run / "corpus.h5", CorpusOptions())
    assert sorted(p.name for p in run.iterdir()) == ["corpus.h5"]  # no copy of the texts
    with h5py.File(run / "corpus.h5") as h5:
        assert not {"texts", "ids", "file", "row"} & set(h5) and h5["skipped"].shape == (0,)  # all implied
        files = json.loads(h5.attrs["files"])
        assert files[0]["path"] == str(source.resolve()) and files[0]["rows"] == 200
        assert bytes(h5["content_hash"][3]) == content_hash(rows[3]["text"].encode())
    got = read_slice(run / "corpus.h5", 20, 40, ("ids", "texts", "titles", "urls", "topics"))
    assert got["texts"] == [r["text"] for r in rows[20:40]] and got["ids"] == [r["id"] for r in rows[20:40]]
    assert got["titles"] == [r["title"] or "" for r in rows[20:40]] and got["topics"] == [""] * 20
    assert summary.rows == corpus_info(run / "corpus.h5").rows == 200


def test_jsonl_is_converted_once_into_the_runs_own_parquet(tmp_path):
    rows = _rows(30)
    run = tmp_path / "run"
    prepare(iter(rows), run / "corpus.h5", CorpusOptions(), "records")
    parquet = [p for p in run.iterdir() if p.suffix == ".parquet"]
    assert (
        len(parquet) == 1 and pq.ParquetFile(parquet[0]).metadata.row_group(0).column(1).compression == "ZSTD"
    )
    assert read_slice(run / "corpus.h5", 0, 30)["texts"] == [r["text"] for r in rows]


def test_a_source_changed_after_prepare_is_refused_naming_it_and_what_to_do(tmp_path):
    source = _write(tmp_path / "w.parquet", _rows(50), 10)
    run = tmp_path / "my run"
    prepare_source(source, run / "corpus.h5", CorpusOptions())
    rows = _rows(50)
    rows[3]["text"] = "edited"
    _write(source, rows, 10)
    os.utime(source, ns=(1, 1))
    with pytest.raises(CorpusError) as err:
        read_slice(run / "corpus.h5", 0, 5)
    msg = str(err.value)
    assert f"Source file {source.resolve()} changed since the corpus was prepared" in msg
    assert "make submit RUN='" in msg and "my run" in msg and "REDO=all" in msg
    prepare_source(source, run / "corpus.h5", CorpusOptions())  # prepared again from the file as it is
    assert read_slice(run / "corpus.h5", 3, 4)["texts"] == ["edited"]
    rows[3]["text"] = "edite!"  # same size, same footer: the modification time tells
    _write(source, rows, 10)
    with pytest.raises(CorpusError, match="its modification time differs"):
        read_slice(run / "corpus.h5", 0, 5)


def test_a_tasks_read_touches_only_the_row_groups_of_its_rows(tmp_path, monkeypatch):
    rows = [{"id": str(i), "text": f"text {i} " * 20} for i in range(1600)]
    source = _write(tmp_path / "w.parquet", rows, 100)  # 16 row groups
    prepare_source(source, tmp_path / "run" / "corpus.h5", CorpusOptions())
    read = []
    original = pq.ParquetFile.read_row_group
    monkeypatch.setattr(
        pq.ParquetFile,
        "read_row_group",
        lambda self, g, **kw: read.append((g, tuple(kw["columns"]))) or original(self, g, **kw),
    )
    chunks = list(read_chunks(tmp_path / "run" / "corpus.h5", 150, 450, 64))  # rows of 1/16 .. of the file
    assert [lo for lo, _, _ in chunks] == list(range(150, 450, 64))
    assert [t for _, texts, _ in chunks for t in texts] == [r["text"] for r in rows[150:450]]
    assert [i for _, _, ids in chunks for i in ids] == [r["id"] for r in rows[150:450]]
    assert read == [(g, ("id", "text")) for g in (1, 2, 3, 4)]  # each once, only the columns it needs


def test_rows_left_out_are_skipped_in_the_read(tmp_path):
    rows = _rows(30)
    rows[7]["text"] = ""
    rows[12]["id"] = rows[2]["id"]
    source = _write(tmp_path / "w.parquet", rows, 5)
    prepare_source(source, tmp_path / "run" / "corpus.h5", CorpusOptions(skip_bad_rows=True))
    kept = [r for i, r in enumerate(rows) if i not in (7, 12)]
    got = read_slice(tmp_path / "run" / "corpus.h5", 0, 28, ("ids", "texts"))
    assert got == {"ids": [r["id"] for r in kept], "texts": [r["text"] for r in kept]}


def test_merge_metadata_carries_titles_urls_and_content_hashes(tmp_path):
    rows = [dict(r, topic="T" if i == 3 else None) for i, r in enumerate(_rows(20))]
    source = _write(tmp_path / "w.parquet", rows, 6)
    prepare_source(source, tmp_path / "run" / "corpus.h5", CorpusOptions())
    with h5py.File(tmp_path / "out.h5", "w") as out:
        copy_meta(tmp_path / "run" / "corpus.h5", out)
    with h5py.File(tmp_path / "out.h5") as out:
        assert out["ids"].asstr()[:].tolist() == [r["id"] for r in rows]
        assert out["titles"].asstr()[:].tolist() == [r["title"] or "" for r in rows]
        assert out["topics"].asstr()[3] == "T" and out["topics"].asstr()[4] == ""
        assert [bytes(h) for h in out["content_hash"][:]] == [content_hash(r["text"].encode()) for r in rows]
        assert out["rejected/row"].shape == (0,)


def _v1_corpus(path, rows):
    """A corpus.h5 as the previous version wrote it: the texts inside, format embedkit-corpus/1."""
    with h5py.File(path, "w") as h5:
        for name, key in (("ids", "id"), ("texts", "text"), ("titles", "title"), ("urls", "url")):
            h5.create_dataset(name, data=np.array([r[key] or "" for r in rows], dtype=object), dtype=UTF8)
        h5.create_dataset("text_chars", data=np.array([len(r["text"]) for r in rows], dtype=np.int32))
        group = h5.create_group("rejected")
        group.create_dataset("row", data=np.zeros(0, dtype=np.int64))
        group.create_dataset("id", shape=(0,), dtype=UTF8)
        group.create_dataset("reason", shape=(0,), dtype=UTF8)
        h5.attrs.update(
            format=CORPUS_FORMAT_V1,
            source="old.jsonl",
            source_rows=len(rows),
            rows=len(rows),
            fingerprint="f" * 64,
            text_fields='["text"]',
            id_field="id",
        )


def test_a_corpus_prepared_by_the_previous_version_is_still_read(tmp_path):
    rows = _rows(12)
    _v1_corpus(tmp_path / "corpus.h5", rows)
    assert corpus_info(tmp_path / "corpus.h5").format == CORPUS_FORMAT_V1
    assert read_slice(tmp_path / "corpus.h5", 2, 5, ("ids", "texts", "topics")) == {
        "ids": ["d2", "d3", "d4"],
        "texts": [r["text"] for r in rows[2:5]],
        "topics": ["", "", ""],
    }
    assert [t for _, t, _ in read_chunks(tmp_path / "corpus.h5", 0, 12, 5)][2] == [
        r["text"] for r in rows[10:]
    ]
    assert row_costs(tmp_path / "corpus.h5").shape == (12,)
    with CorpusReader(tmp_path / "corpus.h5") as reader:
        assert not reader.content_hashes(0, 12).any()  # none recorded: zeros
    with h5py.File(tmp_path / "out.h5", "w") as out:
        copy_meta(tmp_path / "corpus.h5", out)
        assert out["titles"].asstr()[1] == rows[1]["title"] and "content_hash" not in out


def test_embeddings_h5_carries_the_content_hash_of_each_row(tmp_path):
    from jobs.merging import merge_run_folder
    from tests.fixtures.synthetic import synthetic_run

    synthetic_run(tmp_path / "run", 120, 3)
    summary = merge_run_folder(tmp_path / "run")
    texts = read_slice(tmp_path / "run" / "corpus.h5", 0, 120, ("texts",))["texts"]
    with h5py.File(summary.path) as out, h5py.File(tmp_path / "run" / "corpus.h5", locking=False) as index:
        np.testing.assert_array_equal(out["content_hash"][:], index["content_hash"][:])
        assert [bytes(h) for h in out["content_hash"][:]] == [content_hash(t.encode()) for t in texts]


def test_joined_text_fields_read_in_place_equal_the_converted_ones(tmp_path):
    rows = [dict(r, title=r["title"] or "") for r in _rows(25)]
    options = CorpusOptions(text_fields=("title", "text"))
    prepare_source(_write(tmp_path / "w.parquet", rows, 4), tmp_path / "a" / "corpus.h5", options)
    (tmp_path / "w.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    prepare_source(tmp_path / "w.jsonl", tmp_path / "b" / "corpus.h5", options)
    fields = ("ids", "texts", "titles", "urls")
    in_place, converted = (read_slice(tmp_path / d / "corpus.h5", 0, 25, fields) for d in "ab")
    assert in_place == converted and in_place["texts"][1] == f"{rows[1]['title']}\n\n{rows[1]['text']}"
    assert (
        corpus_info(tmp_path / "a" / "corpus.h5").fingerprint
        == corpus_info(tmp_path / "b" / "corpus.h5").fingerprint
    )


def test_a_corpus_of_format_2_reads_its_ids_and_places_from_the_index(tmp_path):
    """Format /2 stored ids, file and row per row: such a run reads as before (and as /3 reads)."""
    rows = _rows(30)
    rows[4]["text"] = ""  # refused: the later rows lie one further in the file
    source = _write(tmp_path / "w.parquet", rows, 7)
    index = tmp_path / "run" / "corpus.h5"
    prepare_source(source, index, CorpusOptions(skip_bad_rows=True))
    fields = ("ids", "texts", "titles", "urls")
    want = read_slice(index, 0, 29, fields)
    with h5py.File(index, "a") as h5:
        kept = [i for i in range(30) if i != 4]
        h5.create_dataset("ids", data=np.array([f"d{i}" for i in kept], dtype=object), dtype=UTF8)
        h5.create_dataset("file", data=np.zeros(29, dtype=np.int32))
        h5.create_dataset("row", data=np.array(kept, dtype=np.int64))
        del h5["skipped"]
        columns = json.loads(h5.attrs["columns"])
        del columns["id_field"]
        h5.attrs.update(format=CORPUS_FORMAT_V2, columns=json.dumps(columns))
    assert corpus_info(index).format == CORPUS_FORMAT_V2
    assert read_slice(index, 0, 29, fields) == want and want["ids"][4] == "d5"
    with h5py.File(tmp_path / "out.h5", "w") as out:
        copy_meta(index, out)
        assert out["ids"].asstr()[:].tolist() == want["ids"]
