"""Every input format, made for real in the test, prepares the same rows as the same rows in JSONL."""

import csv
import gzip
import json
import pickle

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard

from embedder.corpus import CorpusOptions, prepare_source
from embedder.readers.detect import open_reader
from kit.corpusfile import corpus_info, read_slice
from kit.errors import CorpusError

# Wikipedia's column names and string ids (wikimedia/wikipedia parquet: id, url, title, text).
ROWS = [
    {
        "id": str(1000 + i),
        "url": f"https://en.wikipedia.org/wiki/A{i}",
        "title": f"Title {i} é",
        "text": f'Text {i}, with "quotes", commas\nand a newline. ' + "ü" * (i % 7) * 20,
    }
    for i in range(40)
]


def write_jsonl(path, rows, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return path


def write_zst(path, rows):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(zstandard.ZstdCompressor().compress(data))
    return path


def write_parquet_folder(folder, rows, files=2, row_group_size=7):
    folder.mkdir()
    step = -(-len(rows) // files)
    for k in range(files):
        table = pa.Table.from_pylist(rows[k * step : (k + 1) * step])
        pq.write_table(table, folder / f"train-{k:05d}-of-{files:05d}.parquet", row_group_size=row_group_size)
    return folder


def write_delimited(path, rows, delimiter):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_save_to_disk(folder, rows, files=2):
    """The layout datasets.Dataset.save_to_disk writes: Arrow IPC streams, state.json, dataset_info.json."""
    folder.mkdir(parents=True)
    step = -(-len(rows) // files)
    names = [f"data-{k:05d}-of-{files:05d}.arrow" for k in range(files)]
    for k, name in enumerate(names):
        table = pa.Table.from_pylist(rows[k * step : (k + 1) * step])
        with pa.OSFile(str(folder / name), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=5)
    state = {
        "_data_files": [{"filename": n} for n in names],
        "_fingerprint": "test",
        "_format_columns": None,
        "_format_kwargs": {},
        "_format_type": None,
        "_output_all_columns": False,
        "_split": None,
    }
    (folder / "state.json").write_text(json.dumps(state))
    features = {k: {"dtype": "string", "_type": "Value"} for k in rows[0]}
    info = {
        "citation": "",
        "description": "",
        "features": features,
        "splits": {"train": {"name": "train", "num_bytes": 0, "num_examples": len(rows)}},
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))
    return folder


def write_arrow_file(path, rows):
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    return path


MAKERS = {
    "parquet folder": lambda d, r: write_parquet_folder(d / "wiki", r),
    "parquet glob": lambda d, r: write_parquet_folder(d / "wiki", r, files=3) / "train-*.parquet",
    "parquet file": lambda d, r: (
        pq.write_table(pa.Table.from_pylist(r), d / "w.parquet", row_group_size=9) or d / "w.parquet"
    ),
    "jsonl.gz": lambda d, r: write_jsonl(d / "c.jsonl.gz", r, gzip.open),
    "jsonl.zst": lambda d, r: write_zst(d / "c.jsonl.zst", r),
    "csv": lambda d, r: write_delimited(d / "c.csv", r, ","),
    "tsv": lambda d, r: write_delimited(d / "c.tsv", r, "\t"),
    "save_to_disk": lambda d, r: write_save_to_disk(d / "saved", r),
    "arrow file": lambda d, r: write_arrow_file(d / "c.arrow", r),
    "pickle": lambda d, r: (d / "c.pkl").write_bytes(pickle.dumps(r)) and d / "c.pkl",
    "json list": lambda d, r: (d / "c.json").write_text(json.dumps(r)) and d / "c.json",
    "jsonl, no telling name": lambda d, r: write_jsonl(d / "corpus.data", r),
    "gzip, no telling name": lambda d, r: write_jsonl(d / "corpus.bin", r, gzip.open),
}


def _contents(path):
    """Rows as every reader of the corpus sees them (kit.corpusfile), and what the index records."""
    n = corpus_info(path).rows
    data = read_slice(path, 0, n, ("ids", "texts", "titles", "urls", "topics"))
    with h5py.File(path, "r") as h5:
        return data, h5.attrs["fingerprint"], h5["text_chars"][:].tolist(), h5["content_hash"][:].tolist()


@pytest.mark.parametrize("kind", MAKERS)
def test_each_format_prepares_the_same_rows_as_jsonl(tmp_path, kind):
    reference = tmp_path / "ref.h5"
    prepare_source(write_jsonl(tmp_path / "ref.jsonl", ROWS), reference, CorpusOptions())
    source = MAKERS[kind](tmp_path, ROWS)
    summary = prepare_source(source, tmp_path / "run" / "corpus.h5", CorpusOptions())
    assert summary.rows == len(ROWS) and not summary.rejected
    assert _contents(tmp_path / "run" / "corpus.h5") == _contents(reference)


def test_parquet_total_is_known_for_the_progress_bar(tmp_path):
    assert open_reader(write_parquet_folder(tmp_path / "wiki", ROWS)).total_rows == len(ROWS)
    assert open_reader(write_save_to_disk(tmp_path / "saved", ROWS)).total_rows == len(ROWS)


def test_unknown_format_is_refused_listing_the_supported_ones(tmp_path):
    path = tmp_path / "corpus.xlsx"
    path.write_bytes(b"PK\x03\x04 not a corpus")
    with pytest.raises(
        CorpusError, match=r"Cannot tell the format of .*corpus.xlsx.*parquet.*JSONL.*CSV.*save_to_disk"
    ):
        open_reader(path)


def test_datasetdict_folder_names_its_splits(tmp_path):
    folder = tmp_path / "dd"
    write_save_to_disk(folder / "train", ROWS)
    write_save_to_disk(folder / "test", ROWS[:3])
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(
        CorpusError, match=r"splits train, test; pass one split's folder, e\.g\. CORPUS=.*dd/train"
    ):
        open_reader(folder)


# ---------------------------------------------------------------- bad input: refused before any shard


def _refusal(tmp_path, source, **options):
    out = tmp_path / "run" / "corpus.h5"
    with pytest.raises(CorpusError) as err:
        prepare_source(source, out, CorpusOptions(**options))
    assert not out.exists() and not out.with_name("corpus.h5.tmp").exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".corpus-ids-")]
    return str(err.value)


def test_parquet_file_without_the_text_column_is_named_with_the_fix(tmp_path):
    folder = write_parquet_folder(tmp_path / "wiki", ROWS)
    renamed = [{("content" if k == "text" else k): v for k, v in r.items()} for r in ROWS[:5]]
    pq.write_table(pa.Table.from_pylist(renamed), folder / "train-00002-of-00002.parquet")
    msg = _refusal(tmp_path, folder)
    assert "(train-00002-of-00002.parquet): no row has the field 'text'" in msg
    assert "The rows have: id (text, ~4 chars), url (text" in msg and "content (text, ~" in msg
    assert "add TEXT_FIELDS=content to your make submit command" in msg
    assert "SKIP_BAD_ROWS" not in msg


def test_truncated_gzip_is_named_with_the_line_reached(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl.gz", ROWS * 20, gzip.open)
    path.write_bytes(path.read_bytes()[:-200])
    msg = _refusal(tmp_path, path)
    assert f"{path} is damaged or cut short: reading stopped after line" in msg
    assert f"gzip -t {path}" in msg


def test_truncated_zstd_is_named(tmp_path):
    path = write_zst(tmp_path / "c.jsonl.zst", ROWS * 20)
    path.write_bytes(path.read_bytes()[:-100])
    msg = _refusal(tmp_path, path)
    assert "is damaged or cut short" in msg and f"zstd -t {path}" in msg


def test_csv_with_a_ragged_row_names_its_line(tmp_path):
    path = write_delimited(tmp_path / "c.csv", ROWS[:4], ",")
    with open(path, "a", encoding="utf-8") as f:
        f.write("9,u,t,text,one field too many\n")
    msg = _refusal(tmp_path, path)
    assert "1 of 5 rows cannot be embedded" in msg
    assert "1  wrong number of fields" in msg
    assert "row 4 id='': wrong number of fields (line 10 has 5, the header has 4)" in msg  # a row is 2 lines
    assert "SKIP_BAD_ROWS=1" in msg


def test_parquet_id_column_with_nulls_names_file_row_and_row_group(tmp_path):
    rows = [dict(r, id=None if i in (3, 12) else r["id"]) for i, r in enumerate(ROWS)]
    folder = write_parquet_folder(tmp_path / "wiki", rows, files=2, row_group_size=5)
    msg = _refusal(tmp_path, folder)
    assert "2 of 40 rows cannot be embedded" in msg
    assert "row 3 id='' (train-00000-of-00002.parquet row 3, row group 0): missing id" in msg
    assert "row 12 id='' (train-00000-of-00002.parquet row 12, row group 2): missing id" in msg
    assert "ID_FIELD=@row" in msg


def test_duplicate_ids_across_two_parquet_files(tmp_path):
    rows = ROWS[:21] + [dict(ROWS[i], text=f"other {i}") for i in (2, 5)] + ROWS[21:]  # files of 21 rows
    folder = write_parquet_folder(tmp_path / "wiki", rows, files=2)
    msg = _refusal(tmp_path, folder)
    assert "2 of 42 rows cannot be embedded" in msg
    assert (
        "row 21 id='1002' (train-00001-of-00002.parquet row 0, row group 0): duplicate id (first at row 2, "
        "train-00000-of-00002.parquet row 2, row group 0)"
    ) in msg
    assert "row 22 id='1005' (train-00001-of-00002.parquet row 1, row group 0)" in msg
    assert "SKIP_BAD_ROWS=1 keeps the first row of each id" in msg
    # SKIP_BAD_ROWS=1 keeps the first of each: the same rows, and fingerprint, as the corpus without them.
    summary = prepare_source(folder, tmp_path / "run" / "corpus.h5", CorpusOptions(skip_bad_rows=True))
    reference = prepare_source(
        write_jsonl(tmp_path / "ref.jsonl", ROWS), tmp_path / "ref.h5", CorpusOptions()
    )
    assert [b.row for b in summary.rejected] == [21, 22]
    assert _contents(tmp_path / "run" / "corpus.h5") == _contents(tmp_path / "ref.h5")
    assert summary.fingerprint == reference.fingerprint
    with h5py.File(tmp_path / "run" / "corpus.h5") as h5:
        assert h5["rejected/row"][:].tolist() == [21, 22]


# ---------------------------------------------------------------- field mapping


OTHER_NAMES = [{"doc_id": f"d{i}", "headline": f"H{i}", "content": f"body {i}", "n": i} for i in range(300)]


def test_other_field_names_are_refused_naming_the_fix_not_skip_bad_rows(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", OTHER_NAMES)
    msg = _refusal(tmp_path, path)  # one refusal proposes the whole mapping (issue 30)
    assert "no row has the fields 'text' (TEXT_FIELDS), 'id' (ID_FIELD) or 'title' (TITLE_FIELD)" in msg
    assert "doc_id (text" in msg and "content (text" in msg
    assert (
        "add TEXT_FIELDS=content ID_FIELD=doc_id TITLE_FIELD=headline to your make submit command "
        "(--text-fields content --id-field doc_id --title-field headline)"
    ) in msg
    assert "SKIP_BAD_ROWS" not in msg
    msg = _refusal(tmp_path, path, text_fields=("content",))
    assert "no row has the fields 'id' (ID_FIELD) or 'title'" in msg and "add ID_FIELD=doc_id" in msg
    assert "ID_FIELD=@row" in msg
    msg = _refusal(tmp_path, path, text_fields=("headline", "text"))
    assert "add TEXT_FIELDS=headline,content" in msg


def test_field_mapping_reads_other_names(tmp_path):
    path = write_jsonl(tmp_path / "c.jsonl", OTHER_NAMES)
    out = tmp_path / "run" / "corpus.h5"
    options = CorpusOptions(
        id_field="doc_id", text_fields=("headline", "content"), title_field="headline", url_field="nothing"
    )
    assert prepare_source(path, out, options).rows == 300
    rows = read_slice(out, 0, 2, ("ids", "texts", "titles", "urls"))
    assert rows == {
        "ids": ["d0", "d1"],
        "texts": ["H0\n\nbody 0", "H1\n\nbody 1"],
        "titles": ["H0", "H1"],
        "urls": ["", ""],
    }


def test_row_numbers_as_ids(tmp_path):
    rows = [{"content": f"c{i}"} for i in range(10)] + [{"content": ""}] + [{"content": "last"}]
    out = tmp_path / "run" / "corpus.h5"
    summary = prepare_source(
        write_jsonl(tmp_path / "c.jsonl", rows),
        out,
        CorpusOptions(id_field="@row", text_fields=("content",), skip_bad_rows=True),
    )
    assert summary.rows == 11
    assert read_slice(out, 9, 11, ("ids",))["ids"] == ["9", "11"]  # the source row, also after a skipped row


def test_all_rows_bad_does_not_suggest_skip_bad_rows(tmp_path):
    msg = _refusal(tmp_path, write_jsonl(tmp_path / "c.jsonl", [{"id": i, "text": " "} for i in range(4)]))
    assert "4 of 4 rows cannot be embedded" in msg
    assert "SKIP_BAD_ROWS would leave nothing" in msg and "add SKIP_BAD_ROWS=1" not in msg


AWKWARD_JSONL = b"".join(
    [
        b'{"id": 1, "text": "plain"}\n',
        b'{"id": 123456789012345678901234567890, "text": "an id beyond 64 bits"}\r\n',
        b'{"id": 3, "title": 123456789012345678901234567890, "text": "a title beyond 64 bits"}\n',
        b'{"id": 4, "text": "bare cr"}\r{"id": 5, "text": "after a bare cr"}\n',
        b'{"id": 6, "text": NaN}\n',
        b'{"id": 7, "text": "lone \\ud800 escape"}\n',
        b'{"id": 8, "text": "bad \xff byte"}\n',
        "\u3000\n".encode(),
        b"not json\n",
        b'{"id": 9, "text": 1.5}\n',
        b'{"id": 10, "text": "NUL \\u0000 escape"}\n',
        '{"id": 11, "text": "last line é 東京"}'.encode(),
    ]
)


def test_jsonl_awkward_lines_read_as_the_text_reader_reads_them(tmp_path):
    """orjson reads most lines; every line it cannot read must come out as json.loads on text reads it."""
    from embedder.corpus import prepare
    from embedder.readers.records import Unreadable

    path = tmp_path / "c.jsonl"
    path.write_bytes(AWKWARD_JSONL)
    got = prepare_source(path, tmp_path / "got.h5", CorpusOptions(skip_bad_rows=True))
    records = []
    with open(path, encoding="utf-8", errors="surrogateescape") as f:  # the reader before orjson
        for line_no, line in enumerate(f, start=1):
            if not line.isspace():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as err:
                    records.append(Unreadable(f"line {line_no} is not valid JSON ({err.msg})"))
    want = prepare(records, tmp_path / "want.h5", CorpusOptions(skip_bad_rows=True), str(path))
    assert got.rows == want.rows == 5 and got.source_rows == want.source_rows == 12
    assert [(b.row, b.id, b.reason) for b in got.rejected] == [(b.row, b.id, b.reason) for b in want.rejected]
    assert "title is not a string (got int)" in {b.reason for b in got.rejected}
    assert got.fingerprint == want.fingerprint
    assert read_slice(tmp_path / "got.h5", 0, 5, ("ids",))["ids"] == [
        "1",
        "123456789012345678901234567890",
        "4",
        "5",
        "11",
    ]


# ---------------------------------------------------------------- end to end: the same embeddings.h5


def _embeddings(run):
    with h5py.File(run / "embeddings.h5") as h5:
        return h5["ids"].asstr()[:].tolist(), h5["embeddings"][:]


def _submit(tmp_path, name, corpus, model_path, *options):
    from tests.helpers import jobs_cli

    run = tmp_path / name
    jobs_cli(
        "submit",
        "--run",
        str(run),
        "--corpus",
        str(corpus),
        "--model",
        str(model_path),
        "--profile",
        "local",
        "--shards",
        "2",
        "--wait",
        *options,
    )
    return _embeddings(run)


def test_parquet_and_renamed_fields_embed_like_jsonl(tmp_path, vital_jsonl, model_path):
    """Wikipedia's parquet columns need no option; other names need --id-field/--text-fields/... (ID_FIELD=...)."""
    jsonl, records = vital_jsonl(12)
    ids, vectors = _submit(tmp_path, "from-jsonl", jsonl, model_path)
    assert ids == [r["id"] for r in records]

    rows = [{"id": r["id"], "url": r["url"], "title": r["title"], "text": r["text"]} for r in records]
    folder = write_parquet_folder(tmp_path / "wiki", rows, files=2, row_group_size=4)
    parquet_ids, parquet_vectors = _submit(tmp_path, "from-parquet", folder, model_path)
    assert parquet_ids == ids
    np.testing.assert_array_equal(parquet_vectors, vectors)

    renamed = [
        {"doc_id": f"d{i}", "headline": r["title"], "content": r["text"]} for i, r in enumerate(records)
    ]
    other_ids, other_vectors = _submit(
        tmp_path,
        "renamed",
        write_zst(tmp_path / "other.jsonl.zst", renamed),
        model_path,
        "--id-field",
        "doc_id",
        "--text-fields",
        "content",
        "--title-field",
        "headline",
        "--url-field",
        "link",
    )
    assert other_ids == [f"d{i}" for i in range(12)]
    np.testing.assert_array_equal(other_vectors, vectors)


def test_jsonl_blocks_parsed_by_arrow_give_the_rows_of_the_line_reader(tmp_path, monkeypatch):
    """Clean blocks go through pyarrow's JSON reader; a block it cannot read exactly is read line by line."""
    from embedder.corpus import prepare
    from embedder.readers import jsonl
    from embedder.readers.records import Unreadable

    monkeypatch.setattr(jsonl, "ARROW_BLOCK_BYTES", 200)  # a block every few lines
    lines = [json.dumps({"id": f"d{i}", "text": f"text {i}", "title": f"T{i}"}) for i in range(40)]
    lines[7] = json.dumps(
        {"id": "d7", "text": "nul \u0000 inside"}
    )  # refused by the row check, in an Arrow block
    lines[15] = "{not json"  # only the line reader names it
    lines[22] = json.dumps({"id": 22, "text": "an integer id"})
    lines[23] = ""  # a blank line: no row
    lines[30] = json.dumps({"id": "d30", "text": "title of another type", "title": 5})
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    batches = list(open_reader(path).batches(CorpusOptions().columns()))
    assert any(b.arrow is not None for b in batches) and any(b.arrow is None for b in batches)
    got = prepare_source(path, tmp_path / "got" / "corpus.h5", CorpusOptions(skip_bad_rows=True))
    records = []
    for line_no, line in enumerate(lines, start=1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as err:
                records.append(Unreadable(f"line {line_no} is not valid JSON ({err.msg})"))
    want = prepare(records, tmp_path / "want" / "corpus.h5", CorpusOptions(skip_bad_rows=True), str(path))
    assert [(b.row, b.id, b.reason) for b in got.rejected] == [(b.row, b.id, b.reason) for b in want.rejected]
    assert {b.reason for b in got.rejected} >= {"NUL byte in text", "title is not a string (got int)"}
    assert got.rows == want.rows == 36 and got.fingerprint == want.fingerprint
    fields = ("ids", "texts", "titles")
    assert read_slice(tmp_path / "got" / "corpus.h5", 0, 36, fields) == read_slice(
        tmp_path / "want" / "corpus.h5", 0, 36, fields
    )
