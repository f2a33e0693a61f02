"""Read a corpus in any supported format, validate it, and index it once into ``<run>/corpus.h5``.

The prepare step streams the source batch by batch (embedder.readers) so that its memory does
not grow with the corpus. It writes no text and no ids: the index holds each kept row's cost and
content hash, and the source rows it left out (a parquet source is read in place; any other is
converted once into the run's own parquet, embedder.placement). Each array task later reads its
own rows ``[start, stop)`` from there (kit.corpusfile). Layout: docs/FORMAT.md.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import hashlib
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tqdm import tqdm

from embedder import corpusindex, fieldhints
from embedder.arrowcheck import arrow_check, string_scalar
from embedder.duplicates import DuplicateFinder
from embedder.placement import Converted, InPlace
from embedder.readahead import read_ahead
from embedder.readers import Batch
from embedder.readers.detect import open_reader
from embedder.readers.parquet import ParquetReader
from embedder.readers.records import record_batches
from embedder.rowcheck import (
    CorpusSummary,
    ROW_IDS,
    BadRow,
    CorpusOptions,
    Kept,
    check_batch,
    encode_rows,
    fast_check,
    kept_rows,
)
from kit import atomic
from kit.corpusfile import CorpusReader
from kit.corpussource import SourceRows
from kit.errors import CorpusError
from kit.format import CONTENT_HASH_BYTES, CORPUS_FORMAT, UTF8
from kit.h5files import open_h5

__all__ = [
    "ROW_IDS",
    "BadRow",
    "CorpusOptions",
    "CorpusSummary",
    "prepare",
    "prepare_source",
    "refusal_message",
]

EXAMPLES_SHOWN = 5
COPY_BLOCK_ROWS = 65536
US, RS = b"\x1f", 0x1E  # the fingerprint's separators: id US content hash RS


# ---------------------------------------------------------------- entry points


def prepare_source(source: Path, out_path: Path, options: CorpusOptions) -> CorpusSummary:
    """Read ``source`` (any format of embedder.readers), validate it, write ``out_path`` atomically.

    Raises:
        CorpusError: unreadable source, a missing field, zero usable rows, or bad rows while
            ``options.skip_bad_rows`` is False. Nothing is written then.
    """
    reader = open_reader(Path(source), options.csv_delimiter)
    sink = (
        InPlace(reader.files, options)
        if isinstance(reader, ParquetReader)
        else Converted(Path(out_path).parent, options)
    )
    return _prepare(
        reader.batches(options.columns()), out_path, options, str(source), reader.total_rows, sink
    )


def prepare(records: Iterable[Any], out_path: Path, options: CorpusOptions, source: str) -> CorpusSummary:
    """Like ``prepare_source`` for records (dicts) already in memory, e.g. the demo's."""
    sink = Converted(Path(out_path).parent, options)
    return _prepare(record_batches(records, options.columns(), source), out_path, options, source, None, sink)


def refusal_message(summary: CorpusSummary) -> str:
    """Counts by reason, the first offending rows, and how to proceed."""
    counts = Counter(fieldhints.reason_kind(bad.reason) for bad in summary.rejected)
    first = sorted(summary.rejected, key=lambda b: b.row)[:EXAMPLES_SHOWN]
    lines = [
        f"Corpus {summary.source}: {len(summary.rejected)} of {summary.source_rows} rows cannot be embedded:",
        *(f"  {n:>8}  {reason}" for reason, n in counts.most_common()),
        "First offending rows (0-based):",
        *(f"  row {b.row} id={b.id!r}{f' ({b.where})' if b.where else ''}: {b.reason}" for b in first),
        *fieldhints.fixes(counts, all_bad=len(summary.rejected) >= summary.source_rows),
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- prepare


def _prepare(
    batches: Iterable[Batch],
    out_path: Path,
    options: CorpusOptions,
    source: str,
    total: int | None,
    sink: InPlace | Converted,
) -> CorpusSummary:
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = atomic.tmp_path(out_path)
    scan = _Scan(options, CorpusSummary(source=source), sink)
    try:
        with atomic.removed_on_error(tmp), DuplicateFinder(out_path.parent) as dupes:
            with open_h5(tmp, "w") as h5, contextlib.closing(read_ahead(batches)) as reading:
                scan.run(h5, dupes, _progress(reading, total))
            sink.close()
            duplicates = _confirm_duplicates(dupes, sink, scan)
            summary = scan.finish(duplicates)
            rejected = np.asarray(scan.rejected_rows, dtype=np.int64)
            dropped = np.array([d.row for d in duplicates] if options.skip_bad_rows else [], dtype=np.int64)
            if len(dropped):
                _drop_rows(tmp, np.sort(dropped) - np.searchsorted(rejected, np.sort(dropped)))
            files = sink.finish(out_path.parent)
            with open_h5(tmp, "a") as h5:
                _write_header(h5, summary, options, files, scan.has_topics, sink)
                corpusindex.write_skipped(h5, sink.skipped(rejected, dropped))
            if len(dropped):
                summary.fingerprint = _fingerprint(tmp)
                with open_h5(tmp, "a") as h5:
                    h5.attrs["fingerprint"] = summary.fingerprint
            atomic.commit(tmp, out_path)
    finally:
        sink.discard()
    return summary


def _progress(batches: Iterable[Batch], total: int | None) -> Iterator[Batch]:
    """Rows/s always; an ETA where the total is known (parquet metadata, dataset_info.json)."""
    with tqdm(
        total=total,
        desc="prepare corpus",
        unit="row",
        unit_scale=True,
        mininterval=5,
        ascii=True,
        disable=None,
    ) as bar:
        for batch in batches:
            yield batch
            bar.update(batch.rows)


class _Scan:
    """One pass over the batches: check rows, write the good ones, hash ids and content."""

    def __init__(self, options: CorpusOptions, summary: CorpusSummary, sink: InPlace | Converted):
        self.options, self.summary, self.sink = options, summary, sink
        self.rejected_rows: list[int] = []  # sorted source rows refused during the pass
        self.digest = hashlib.sha256()
        self.has_topics = False
        self.present: Counter[str] = Counter()  # field -> rows where it is not None
        self.sample: tuple[str, dict[str, float]] | None = None  # (file, fields) of the first batch
        self.places: list[tuple[int, Batch]] = []  # (first source row, batch sans data) of multi-file sources

    def run(self, h5: h5py.File, dupes: DuplicateFinder, batches: Iterable[Batch]) -> None:
        corpusindex.create(h5)
        index = corpusindex.IndexWriter(h5)
        for batch in batches:
            self._add(index, dupes, batch)
        index.flush()
        fieldhints.check_present(self.present, self.options, self.sample, self.summary)

    def _add(self, index: corpusindex.IndexWriter, dupes: DuplicateFinder, batch: Batch) -> None:
        row0 = self.summary.source_rows
        self._track_fields(batch, row0)
        kept = arrow_check(batch, self.options, row0) or _check(batch, self.options, row0)
        self.summary.source_rows += batch.rows
        self.summary.rejected.extend(kept.bad)
        self.rejected_rows.extend(b.row for b in kept.bad)
        if len(kept.rows):
            self.digest.update(_payload(kept.ids, kept.hashes))
            if self.options.id_field != ROW_IDS:  # row numbers are unique
                dupes.add(kept.ids, kept.rows)
            self.has_topics = self.has_topics or kept.has_topics
            index.append(kept.chars, kept.hashes)
            self.sink.write(batch, kept)

    def _track_fields(self, batch: Batch, row0: int) -> None:
        for name in self.options.columns():
            self.present[name] += batch.rows - batch.nones(name)
        if batch.where is not None:
            self.places.append((row0, Batch({}, batch.rows, batch.file, batch.file_row, where=batch.where)))
        if batch.fields is not None:
            first_file = self.sample is None
            if first_file:
                self.sample = (batch.file, batch.fields)
            if len(batch.problems) < batch.rows:  # titles and urls: the first file speaks for the corpus
                fieldhints.check_batch_fields(batch, self.options, self.summary.source, labels=first_file)

    def locate(self, row: int) -> str:
        i = bisect.bisect_right(self.places, row, key=lambda p: p[0]) - 1
        return self.places[i][1].locate(row - self.places[i][0]) if i >= 0 else ""

    def finish(self, duplicates: list[BadRow]) -> CorpusSummary:
        s = self.summary
        s.rejected = sorted(s.rejected + duplicates, key=lambda b: b.row) if duplicates else s.rejected
        s.rows = s.source_rows - len(s.rejected)
        s.fingerprint = self.digest.hexdigest()
        if s.rejected and not self.options.skip_bad_rows:
            raise CorpusError(refusal_message(s))
        if s.rows == 0:
            detail = f" ({len(s.rejected)} rejected)" if s.rejected else ""
            raise CorpusError(f"Corpus {s.source} has no rows to embed{detail}.")
        return s


def _check(batch: Batch, options: CorpusOptions, row0: int) -> Kept:
    """Rows to keep and refused rows, checked on Python values.

    Bulk checks first (rowcheck.fast_check); a batch they cannot clear is checked row by row,
    without and then (only when a lone surrogate is somewhere in it) with the per-value UTF-8 check.
    """
    checked = fast_check(batch, options, row0)
    encoded = encode_rows(checked) if checked is not None else None
    if encoded is None:
        checked = check_batch(batch, options, row0, check_utf8=False)
        encoded = encode_rows(checked)
    if encoded is None:
        checked = check_batch(batch, options, row0, check_utf8=True)
        encoded = encode_rows(checked)
    assert checked is not None and encoded is not None  # with the UTF-8 check, every refusable row is refused
    return kept_rows(checked, encoded)


def _payload(ids: pa.Array, hashes: np.ndarray) -> memoryview:
    """The fingerprint's bytes for these rows: id US content hash RS ..., as docs/FORMAT.md states (made in C)."""
    n = len(ids)
    tails = np.empty((n, CONTENT_HASH_BYTES + 1), dtype=np.uint8)
    tails[:, :-1], tails[:, -1] = hashes, RS
    tails = pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(CONTENT_HASH_BYTES + 1), n, [None, pa.py_buffer(tails)]
    )
    joined = pc.binary_join_element_wise(
        ids.cast(pa.binary()), tails.cast(pa.binary()), string_scalar(US, pa.binary())
    )
    offsets = np.frombuffer(joined.buffers()[1], dtype=np.int32)[joined.offset : joined.offset + n + 1]
    return memoryview(joined.buffers()[2])[offsets[0] : offsets[-1]]


def _ids_at(sink: InPlace | Converted, id_field: str, positions: np.ndarray) -> list[str]:
    """The ids at ``positions`` (ascending rows of the sink's files, numbered across them)."""
    column = sink.columns.of("ids")[0] if id_field != ROW_IDS else None
    out: list[str] = []
    first = 0
    for path in sink.read_files():
        rows = SourceRows(Path(path))
        last = first + int(rows.starts[-1])
        mine = positions[(positions >= first) & (positions < last)] - first
        if len(mine) and column is not None:
            out.extend(map(str, rows.take(mine, (column,))[column] or []))
        first = last
    return out if column is not None else [str(p) for p in positions.tolist()]


def _confirm_duplicates(dupes: DuplicateFinder, sink: InPlace | Converted, scan: _Scan) -> list[BadRow]:
    """Rows whose id an earlier row already has, confirmed on the ids read back (not just hashes)."""
    groups = list(dupes.colliding_rows())
    if not groups:
        return []
    rows = np.unique(np.concatenate(groups))
    positions = sink.positions(rows, np.asarray(scan.rejected_rows, dtype=np.int64))
    id_of = dict(zip(rows.tolist(), _ids_at(sink, scan.options.id_field, positions)))
    found = []
    for group in groups:
        first: dict[str, int] = {}
        for row in group.tolist():
            text = id_of[row]
            if text in first:
                where = scan.locate(first[text])
                reason = f"duplicate id (first at row {first[text]}{', ' + where if where else ''})"
                found.append(BadRow(row, text, reason, scan.locate(row)))
            else:
                first[text] = row
    return found


def _drop_rows(tmp: Path, drop: np.ndarray) -> None:
    """Rewrite the index ``tmp`` without its rows ``drop`` (duplicates under SKIP_BAD_ROWS)."""
    compact = tmp.with_name(tmp.name + ".compact")
    with atomic.removed_on_error(compact), open_h5(tmp) as src, open_h5(compact, "w") as dst:
        n = src["text_chars"].shape[0]
        keep = np.ones(n, dtype=bool)
        keep[drop] = False
        for name, ds in src.items():
            dst.create_dataset(
                name,
                shape=(int(keep.sum()), *ds.shape[1:]),
                maxshape=(None, *ds.shape[1:]),
                dtype=ds.dtype,
                chunks=ds.chunks,
                compression=ds.compression,
                shuffle=ds.shuffle,
            )
        at = 0
        for lo in range(0, n, COPY_BLOCK_ROWS):
            mask = keep[lo : lo + COPY_BLOCK_ROWS]
            k = int(mask.sum())
            for name, ds in src.items():
                dst[name][at : at + k] = ds[lo : lo + len(mask)][mask]
            at += k
    compact.replace(tmp)


def _fingerprint(index: Path) -> str:
    """The fingerprint of a finished index, its ids read back from the source (after rows were dropped)."""
    digest = hashlib.sha256()
    with CorpusReader(index) as reader:
        for lo in range(0, reader.rows, COPY_BLOCK_ROWS):
            hi = min(lo + COPY_BLOCK_ROWS, reader.rows)
            ids = pa.array([i.encode() for i in reader.ids(lo, hi)], pa.binary())
            digest.update(_payload(ids, reader.content_hashes(lo, hi)))
    return digest.hexdigest()


def _write_header(
    h5: h5py.File,
    summary: CorpusSummary,
    options: CorpusOptions,
    files: list,
    has_topics: bool,
    sink: InPlace | Converted,
) -> None:
    h5.attrs.update(
        format=CORPUS_FORMAT,
        source=summary.source,
        source_rows=summary.source_rows,
        rows=summary.rows,
        fingerprint=summary.fingerprint,
        text_fields=json.dumps(list(options.text_fields)),
        id_field=options.id_field,
        has_topics=has_topics,
        files=json.dumps([f.as_dict() for f in files]),
        columns=json.dumps(dataclasses.asdict(sink.columns)),
    )
    group = h5.create_group("rejected")
    rejected = summary.rejected
    group.create_dataset("row", data=np.array([b.row for b in rejected], dtype=np.int64))
    group.create_dataset("id", data=np.array([b.id for b in rejected], dtype=object), dtype=UTF8)
    group.create_dataset("reason", data=np.array([b.reason for b in rejected], dtype=object), dtype=UTF8)
