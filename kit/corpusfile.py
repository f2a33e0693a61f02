"""Reading a prepared corpus (``<run>/corpus.h5``): its header, a slice of rows, costs and hashes.

Shared by the embedder (its rows), the merge (ids, titles, urls, topics, content hashes), the map
(texts) and jobs (the plan). The writer is ``embedder.corpus.prepare``. Since embedkit-corpus/3
``corpus.h5`` is an index of costs and content hashes: a row's ids and texts are read from the
source parquet (in place, kit.corpussource), where row k is the k-th row of the files taken in
order that is not ``skipped``. A corpus of format /2 (ids, file and row stored per row) or /1
(texts inside) is read as before. Layout: docs/FORMAT.md.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import h5py
import numpy as np

from kit.commands import make_command
from kit.corpussource import SourceFile, SourceRows, open_checked, problem
from kit.errors import CorpusError
from kit.format import CONTENT_HASH, CORPUS_FORMAT, CORPUS_FORMAT_V1, CORPUS_FORMAT_V2, ROW_IDS, UTF8
from kit.h5files import open_h5

FIELDS = ("ids", "texts", "titles", "urls", "topics")
META_BLOCK_ROWS = 1 << 16


@dataclass(frozen=True)
class CorpusInfo:
    path: Path
    rows: int
    source_rows: int
    rejected_rows: int
    fingerprint: str
    source: str
    has_topics: bool
    has_costs: bool = False  # /text_chars was recorded at prepare (corpora prepared since 2026-11)
    format: str = CORPUS_FORMAT


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise CorpusError(
            f"Prepared corpus {path} does not exist (a partial copy of the run folder?). Prepare it again "
            f"from the run's source: {make_command('submit', RUN=path.parent)} (and CORPUS=<file> where "
            "the run has none yet)"
        )
    h5 = open_h5(path)
    if h5.attrs.get("format") not in (CORPUS_FORMAT, CORPUS_FORMAT_V2, CORPUS_FORMAT_V1):
        fmt = h5.attrs.get("format")
        h5.close()
        raise CorpusError(f"{path} is not a prepared corpus (format {fmt!r}).")
    return h5


def _has_topics(h5: h5py.File) -> bool:
    return bool(h5.attrs.get("has_topics", False)) if "columns" in h5.attrs else "topics" in h5


def corpus_info(path: Path) -> CorpusInfo:
    """The header of a prepared corpus."""
    with _open(path) as h5:
        return CorpusInfo(
            path=path,
            rows=int(h5.attrs["rows"]),
            source_rows=int(h5.attrs["source_rows"]),
            rejected_rows=int(h5["rejected/row"].shape[0]),
            fingerprint=str(h5.attrs["fingerprint"]),
            source=str(h5.attrs["source"]),
            has_topics=_has_topics(h5),
            has_costs="text_chars" in h5,
            format=str(h5.attrs["format"]),
        )


@dataclass(frozen=True)
class Columns:
    """Which source columns give a row's fields (ID_FIELD, TEXT_FIELDS, ... as prepared)."""

    text_fields: tuple[str, ...]
    title_field: str
    url_field: str
    topic_field: str
    id_field: str = ""  # "" in format /2 (ids in the index); ROW_IDS: the source row

    def of(self, field: str) -> tuple[str, ...]:
        """The source columns of ``field`` (``ids``, ``texts``, ...); none for ids that are row numbers."""
        if field == "ids":
            return () if self.id_field == ROW_IDS else (self.id_field,)
        return {
            "texts": self.text_fields,
            "titles": (self.title_field,),
            "urls": (self.url_field,),
            "topics": (self.topic_field,),
        }[field]


class CorpusReader:
    """Rows of a prepared corpus, read slice by slice; open source files and one row group are kept."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.h5 = _open(self.path)
        self.rows = int(self.h5.attrs["rows"])
        self.format = str(self.h5.attrs["format"])
        self.source = str(self.h5.attrs["source"])  # the CORPUS it was prepared from
        self.v1 = self.format == CORPUS_FORMAT_V1
        if not self.v1:
            self.columns = Columns(**json.loads(self.h5.attrs["columns"]))
            self.sources = [SourceFile(**f) for f in json.loads(self.h5.attrs["files"])]
            self._first_rows = np.array([f.first_row for f in self.sources], dtype=np.int64)
        if self.format == CORPUS_FORMAT:
            skipped = self.h5["skipped"][:]
            self._skip_after = skipped - np.arange(len(skipped), dtype=np.int64)  # non-decreasing
        self._open: dict[int, SourceRows] = {}

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the index file and forget the source files opened for reading."""
        self.h5.close()
        self._open.clear()

    def read(self, start: int, stop: int, fields: tuple[str, ...] = ("ids", "texts")) -> dict[str, list[str]]:
        """Rows ``[start, stop)`` of ``fields`` (of FIELDS) as lists of str; reads only those rows."""
        if not 0 <= start <= stop <= self.rows:
            raise CorpusError(
                f"Rows [{start}, {stop}) are outside the prepared corpus {self.path} of {self.rows} rows."
            )
        if self.v1:
            return {name: self._v1_field(name, start, stop) for name in fields}
        out: dict[str, list[str]] = {name: [] for name in fields}
        wanted = list(fields)
        if self.format == CORPUS_FORMAT_V2 and "ids" in out:
            out["ids"] = self.h5["ids"].asstr()[start:stop].tolist()
            wanted.remove("ids")
        if wanted and stop > start:
            files, rows = self.places(start, stop)
            cuts = np.flatnonzero(np.diff(files)) + 1
            for lo, hi in zip(np.concatenate(([0], cuts)), np.concatenate((cuts, [len(files)]))):
                self._read_part(int(files[lo]), rows[lo:hi], wanted, out)
        return out

    def ids(self, start: int, stop: int) -> list[str]:
        """The ids of rows ``[start, stop)`` (read from the source since format /3)."""
        return self.read(start, stop, ("ids",))["ids"]

    def places(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(source file number, row within that file) of rows ``[start, stop)``."""
        if self.format == CORPUS_FORMAT_V2:
            return self.h5["file"][start:stop], self.h5["row"][start:stop]
        kept = np.arange(start, stop, dtype=np.int64)
        at = kept + np.searchsorted(self._skip_after, kept, side="right")  # the kept-th row not skipped
        files = np.searchsorted(self._first_rows, at, side="right") - 1
        return files, at - self._first_rows[files]

    def _v1_field(self, name: str, start: int, stop: int) -> list[str]:
        if name not in self.h5:
            return [""] * (stop - start)
        return self.h5[name].asstr()[start:stop].tolist()

    def _read_part(self, file: int, rows: np.ndarray, fields: list[str], out: dict[str, list[str]]) -> None:
        if file not in self._open:  # one file at a time
            self._open = {file: open_checked(self.sources[file], self.path.parent, self.path, self.source)}
        needed = tuple(dict.fromkeys(c for f in fields for c in self.columns.of(f)))
        values = self._open[file].take(rows, needed)
        for name in fields:
            if name == "ids" and self.columns.id_field == ROW_IDS:
                out[name].extend(map(str, (rows + self.sources[file].first_row).tolist()))
            else:
                out[name].extend(_compose(name, [values[c] for c in self.columns.of(name)], len(rows)))

    def content_hashes(self, start: int, stop: int) -> np.ndarray:
        """uint8 array of shape [stop - start, 16]: the content hash of each row (zeros before format /2)."""
        if CONTENT_HASH not in self.h5:
            return np.zeros((stop - start, 16), dtype=np.uint8)
        return self.h5[CONTENT_HASH][start:stop]


def _compose(name: str, columns: list[list | None], n: int) -> list[str]:
    """A field's values as prepare checked them: texts joined by a blank line, "" for a missing value."""
    if name == "ids":  # an integer id is read as its digits
        ids = columns[0] or []
        return ids if not ids or type(ids[0]) is str else list(map(str, ids))
    if name == "texts":  # text columns are never None: prepare refused a file without them
        if len(columns) == 1:
            return columns[0]  # type: ignore[return-value]
        return ["\n\n".join(p for p in row if p and not p.isspace()) for row in zip(*columns)]
    values = columns[0]
    return [""] * n if values is None else [v or "" for v in values]


def read_slice(
    path: Path, start: int, stop: int, fields: tuple[str, ...] = ("ids", "texts")
) -> dict[str, list[str]]:
    """Rows ``[start, stop)`` of ``fields`` as lists of str; reads only those rows."""
    with CorpusReader(path) as reader:
        return reader.read(start, stop, fields)


def read_chunks(
    path: Path, start: int, stop: int, flush_rows: int
) -> Iterator[tuple[int, list[str], list[str]]]:
    """``(first row, texts, ids)`` of rows ``[start, stop)`` in chunks of ``flush_rows``, read lazily.

    One reader serves every chunk, so a row group that spans two chunks is read once.
    """
    with CorpusReader(path) as reader:
        for lo in range(start, stop, flush_rows):
            rows = reader.read(lo, min(lo + flush_rows, stop))
            yield lo, rows["texts"], rows["ids"]


def copy_meta(path: Path, out: h5py.File) -> None:
    """Write the corpus's ids, titles, urls, topics (if any), content hashes and /rejected into ``out``.

    Streams the text fields from the source in blocks of META_BLOCK_ROWS, so memory stays flat.
    """
    with CorpusReader(path) as reader:
        h5, n = reader.h5, reader.rows
        names = ("titles", "urls", *(("topics",) if _has_topics(h5) else ()))
        for name in (
            "rejected",
            *(("ids",) if "ids" in h5 else ()),
            *((CONTENT_HASH,) if CONTENT_HASH in h5 else ()),
        ):
            h5.copy(h5[name], out, name)
        if reader.v1:
            for name in names:
                h5.copy(h5[name], out, name)
            return
        names = (*(() if "ids" in h5 else ("ids",)), *names)
        for name in names:
            out.create_dataset(name, shape=(n,), dtype=UTF8, chunks=(min(max(n, 1), 4096),))
        for lo in range(0, n, META_BLOCK_ROWS):
            hi = min(lo + META_BLOCK_ROWS, n)
            block = reader.read(lo, hi, names)
            for name in names:
                out[name][lo:hi] = np.array([v.encode() for v in block[name]], dtype=object)


# Cost model of one row for the planner, in tokens. Encoding time grows with the tokens the model
# sees, at most max_seq_length (the rest is cut), plus the special tokens and a fixed share per row
# (tokenising, batching). Calibrated with bench/plan_balance.py on the Vital Articles and
# all-MiniLM-L6-v2 on CPU (2026-11-23): its tokenizer gives 4.73 characters per token on texts it
# does not cut. The per-row share is not pinned down by 16 shard timings (fits of 8 to 65 tokens
# are within the ~3% timing noise), so it stays at 8.
CHARS_PER_TOKEN = 4.7
ROW_OVERHEAD_TOKENS = 8.0
COST_BLOCK_ROWS = 1 << 20


def text_chars(path: Path) -> np.ndarray:
    """Characters of each row's text, int64 [N]; recorded at prepare, else counted (slower)."""
    with _open(path) as h5:
        if "text_chars" in h5:
            return h5["text_chars"][:].astype(np.int64)
    with CorpusReader(path) as reader:
        out = np.empty(reader.rows, dtype=np.int64)
        for lo in range(0, reader.rows, COST_BLOCK_ROWS):
            block = reader.read(lo, min(lo + COST_BLOCK_ROWS, reader.rows), ("texts",))["texts"]
            out[lo : lo + len(block)] = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
        return out


def row_costs(path: Path, max_seq_length: int | None = None, overlap: int | None = None) -> np.ndarray:
    """Estimated embedding cost of each row, float64 [N] (tokens, > 0), for ``jobs.plan.plan_shards``.

    Args:
        path: a prepared corpus.h5.
        max_seq_length: the model's limit in tokens, when known; longer texts cost no more.
        overlap: PASSAGES=1 (with ``max_seq_length``, the window): a row costs its whole text, the tokens
            its windows share and each window's own share (``passage_costs``).
    """
    if overlap is not None and max_seq_length:
        return passage_costs(text_chars(path) / CHARS_PER_TOKEN, max_seq_length, overlap)
    tokens = text_chars(path) / CHARS_PER_TOKEN + 2.0
    if max_seq_length:
        tokens = np.minimum(tokens, float(max_seq_length))
    return tokens + ROW_OVERHEAD_TOKENS


def passage_costs(tokens: np.ndarray, window: int, overlap: int) -> np.ndarray:
    """The cost of documents of ``tokens`` text tokens cut into windows of ``window`` tokens sharing
    ``overlap`` (PASSAGES=1): every token, those of the overlaps twice, and per window its 2 special
    tokens and the per-row share. float64 [N]."""
    room = max(window - 2, 1)
    step = max(room - overlap, 1)
    windows = 1 + np.ceil(np.maximum(tokens - room, 0) / step)
    return tokens + (windows - 1) * overlap + windows * (2.0 + ROW_OVERHEAD_TOKENS)


def run_files(path: Path) -> list[Path]:
    """Files of the run folder that the index at ``path`` reads (a converted source's parquet)."""
    try:
        with _open(Path(path)) as h5:
            files = [SourceFile(**f) for f in json.loads(h5.attrs.get("files", "[]"))]
    except (CorpusError, OSError):  # no index, or not one: it reads no run file
        return []
    return [f.resolve(Path(path).parent) for f in files if f.in_run]


def corpus_problem(path: Path) -> str | None:
    """What keeps the prepared corpus at ``path`` from reading as prepared, in a few words; None if nothing.

    Checks the index and every file it reads (the run's own parquet by size and footer, a user's
    file by its modification time too), as each task would, without reading rows. For example
    ``corpus-rows-1a2b3c4d.parquet is missing``.
    """
    try:
        with _open(Path(path)) as h5:
            files = [SourceFile(**f) for f in json.loads(h5.attrs.get("files", "[]"))]
    except CorpusError:
        return f"{Path(path).name} is missing or is not a prepared corpus"
    except OSError as err:
        return f"{Path(path).name} cannot be read ({err})"
    for file in files:
        if why := problem(file, Path(path).parent):
            return f"{file.path if file.in_run else file.resolve(Path(path).parent)}: {why}"
    return None


def remove_corpus(path: Path) -> None:
    """Delete a prepared corpus: its index and the run-folder parquet it reads (not the user's files)."""
    for file in run_files(path):
        file.unlink(missing_ok=True)
    Path(path).unlink(missing_ok=True)
