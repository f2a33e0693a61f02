"""Field names in one round trip (issue 30, item 4).

One refusal proposes the whole mapping (text, id, title, url, topic) from the fields the rows
really have, as the user's own command with the variables put over it, and that command works as
printed; a title or url column under another name is proposed rather than left empty without a
word; a ``;``-separated CSV (Excel's in much of Europe) is read, its separator found from the
header line or named with CSV_DELIMITER=.
"""

from __future__ import annotations

import csv
import dataclasses
import pickle
import subprocess
from pathlib import Path

import h5py
import pytest

from embedder.config import CorpusOptions
from embedder.corpus import prepare_source
from embedder.fieldhints import FieldMappingError
from jobs import corpusrun
from kit.corpusfile import read_slice
from kit.errors import ConfigError
from tests.conftest import write_jsonl
from tests.helpers import REPO, make_cli

ROWS = [
    {
        "id": f"a{i}",
        "title": f"Title {i}",
        "url": f"https://example.org/{i}",
        "text": f"Article {i}: a few words, with a comma; and a semicolon.",
        "topic": "Science" if i % 2 else "History",
    }
    for i in range(12)
]
RENAMED = {"text": "body", "title": "name", "url": "link", "topic": "category"}


def renamed(rows: list[dict], names: dict[str, str] = RENAMED) -> list[dict]:
    return [{names.get(k, k): v for k, v in r.items()} for r in rows]


def write_csv(path: Path, rows: list[dict], delimiter: str) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:  # csv's own line ends: \r\n, as Excel writes
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter=delimiter)
        writer.writeheader()
        writer.writerows(rows)
    return path


def refusal(tmp_path: Path, source: Path, **options) -> FieldMappingError:
    with pytest.raises(FieldMappingError) as err:
        prepare_source(source, tmp_path / "run" / "corpus.h5", CorpusOptions(**options))
    return err.value


def test_one_refusal_proposes_the_whole_mapping_from_the_fields_the_rows_have(tmp_path):
    err = refusal(tmp_path, write_jsonl(tmp_path / "c.jsonl", renamed(ROWS)))
    message = str(err)
    assert err.repair == {
        "TEXT_FIELDS": "body",
        "TITLE_FIELD": "name",
        "URL_FIELD": "link",
        "TOPIC_FIELD": "category",
    }
    assert "The rows have: id (text, ~2 chars), name (text, ~7 chars), link (text" in message
    assert "text, title, url, topic" not in message  # not the fields asked for, which no row has
    assert "text <- body, id <- id, title <- name, url <- link, topic <- category" in message
    assert (
        "add TEXT_FIELDS=body TITLE_FIELD=name URL_FIELD=link TOPIC_FIELD=category to your make submit"
        in message
    )


def test_a_title_or_url_column_under_another_name_is_proposed_not_left_empty(tmp_path):
    rows = renamed(ROWS, {"title": "headline", "url": "page_url"})
    source = write_jsonl(tmp_path / "c.jsonl", rows)
    err = refusal(tmp_path, source)  # text and id are there: only the titles and urls would be lost
    assert err.repair == {"TITLE_FIELD": "headline", "URL_FIELD": "page_url"}
    assert "no row has the fields 'title' (TITLE_FIELD) or 'url' (URL_FIELD), so every one would read" in str(
        err
    )
    assert "TITLE_FIELD=- and URL_FIELD=-" in str(err)  # the way to say the corpus has none
    out = tmp_path / "ok" / "corpus.h5"
    prepare_source(source, out, CorpusOptions(title_field="-", url_field="-"))
    assert read_slice(out, 0, 1, ("titles", "urls")) == {"titles": [""], "urls": [""]}
    prepare_source(source, out.with_name("b.h5"), CorpusOptions(title_field="headline", url_field="page_url"))
    assert read_slice(out.with_name("b.h5"), 1, 2, ("titles",))["titles"] == ["Title 1"]


def test_no_id_column_proposes_row_numbers_and_the_repair_survives_a_reworded_or_pickled_error(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "id"} for r in renamed(ROWS)]
    err = refusal(tmp_path, write_jsonl(tmp_path / "c.jsonl", rows))
    assert err.repair["ID_FIELD"] == "@row" and "id <- the row number (@row)" in str(err)
    reworded = FieldMappingError(str(err).replace("your make submit command", "your make plan command"))
    assert reworded.repair == err.repair  # make plan rewords the hint; the Run: line still comes
    assert pickle.loads(pickle.dumps(err)).repair == err.repair


@pytest.mark.parametrize("delimiter", [";", "|", "\t"])
def test_the_csv_separator_is_found_from_the_header_line(tmp_path, delimiter):
    source = write_csv(tmp_path / "excel.csv", ROWS, delimiter)
    out = tmp_path / "run" / "corpus.h5"
    assert prepare_source(source, out, CorpusOptions()).rows == len(ROWS)
    rows = read_slice(out, 0, 2, ("ids", "texts", "titles", "urls", "topics"))
    assert rows["ids"] == ["a0", "a1"] and rows["texts"] == [ROWS[0]["text"], ROWS[1]["text"]]
    assert rows["titles"] == ["Title 0", "Title 1"] and rows["topics"] == ["History", "Science"]


def test_csv_delimiter_names_the_separator_and_a_wrong_one_is_refused_with_the_right_one(tmp_path):
    source = write_csv(tmp_path / "excel.csv", ROWS, ";")
    out = tmp_path / "run" / "corpus.h5"
    assert prepare_source(source, out, CorpusOptions(csv_delimiter=";")).rows == len(ROWS)
    err = refusal(tmp_path, source, csv_delimiter=",")
    assert err.repair == {"CSV_DELIMITER": ";"} and "separator ';'" in str(err)
    assert CorpusOptions(csv_delimiter="tab").csv_delimiter == "\t"
    with pytest.raises(ConfigError, match="Unknown CSV_DELIMITER 'x'. Choose from"):
        CorpusOptions(csv_delimiter="x")


def test_naming_the_separator_of_a_run_is_not_a_change_of_its_rows(tmp_path):
    run = tmp_path / "run"
    source = write_csv(tmp_path / "excel.csv", ROWS, ";")
    old = corpusrun.first_corpus(run, source, CorpusOptions(), None)
    named = dataclasses.replace(old.options, csv_delimiter=";")
    check = corpusrun.check_corpus(run, old, source, named, None)
    assert not check.changes and check.candidate is None and check.record.options.csv_delimiter == ";"


# ---------------------------------------------------------------- through make, with the real model


def titles_and_urls(run: Path) -> tuple[list[str], list[str], list[str]]:
    with h5py.File(run / "embeddings.h5", "r") as h5:
        return (
            h5["ids"].asstr()[:].tolist(),
            h5["titles"].asstr()[:].tolist(),
            h5["urls"].asstr()[:].tolist(),
        )


def test_a_jsonl_with_other_names_gets_one_refusal_whose_command_embeds_it(tmp_path, model_path):
    rows = [{k: v for k, v in r.items() if k != "topic"} for r in renamed(ROWS)]
    corpus = write_jsonl(tmp_path / "other names.jsonl", rows)
    run = tmp_path / "runs" / "other"
    refused = make_cli(
        "submit", check=False, RUN=run, CORPUS=corpus, MODEL="demo", PROFILE="local", SHARDS=1, WAIT=True
    )
    assert refused.returncode != 0 and refused.stderr.count("error:") == 1, refused.stderr
    [command] = [
        ln[len("Run: ") :] for ln in refused.stderr.splitlines() if ln.startswith("Run: make submit ")
    ]
    assert "TEXT_FIELDS=body TITLE_FIELD=name URL_FIELD=link" in command and "ID_FIELD" not in command
    done = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and f"Merged {len(ROWS)} rows x 384" in done.stdout, done.stderr
    ids, titles, urls = titles_and_urls(run)
    assert ids == [r["id"] for r in ROWS] and titles == [r["title"] for r in ROWS]
    assert urls == [r["url"] for r in ROWS]


def test_a_semicolon_csv_embeds_with_its_topic_column(tmp_path, model_path):
    corpus = write_csv(tmp_path / "excel.csv", renamed(ROWS, {"topic": "category"}), ";")
    run = tmp_path / "runs" / "excel"
    make_cli(
        "submit",
        RUN=run,
        CORPUS=corpus,
        MODEL="demo",
        PROFILE="local",
        SHARDS=1,
        TOPIC_FIELD="category",
        WAIT=True,
    )
    ids, titles, urls = titles_and_urls(run)
    assert ids == [r["id"] for r in ROWS] and titles == [r["title"] for r in ROWS]
    with h5py.File(run / "embeddings.h5", "r") as h5:
        assert h5["topics"].asstr()[:].tolist() == [r["topic"] for r in ROWS]
