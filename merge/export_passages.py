"""make export of a PASSAGES=1 run: the passages table beside the documents' one.

``passages.parquet`` (or ``passages-npy-float32/``: ``embeddings.npy`` + ``metadata.parquet``) holds one
row per passage in file order: ``id`` (its document's id), ``passage`` (its index in the document),
``start`` and ``end`` (its span, characters into the document's text), ``tokens``, ``text`` with TEXT=1
(``text[start:end]``, read from the run's corpus) and ``embedding``. The documents' table
(``embeddings.parquet``) is written as for any run. Blocks of rows are read and written in turn: memory
does not grow with the passages. Layouts: docs/EXPORT.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kit import atomic
from kit.corpusfile import CorpusReader, corpus_info
from kit.errors import CorpusError
from kit.format import (
    PASSAGE_DOCUMENT,
    PASSAGE_EMBEDDINGS,
    PASSAGE_INDEX,
    PASSAGE_SPAN,
    PASSAGE_TOKENS,
    PROVENANCE_PREFIX,
    RunPaths,
)
from kit.h5files import open_h5
from merge.export import (
    BLOCK_ROWS,
    METADATA_KEY,
    ExportError,
    ExportResult,
    HashingFile,
    commit_hashed,
    export_metadata,
    metadata_json,
)
from merge.export_npy import write_npy_folder
from merge.export_parquet import EMBEDDING, writer_options

TEXT = "text"
COLUMNS = {
    "id": pa.string(),
    "passage": pa.int32(),
    "start": pa.int64(),
    "end": pa.int64(),
    "tokens": pa.int32(),
}


def write_passages(src: Path, dst: Path, fmt: str, digest: str, dtype: str, text: bool) -> ExportResult:
    """The passages table of ``src`` (verified, SHA-256 ``digest``) at ``dst``, as parquet or npy.

    ``text``: add each passage's text, read from the run's corpus beside ``src``.

    Raises:
        ExportError: TEXT=1 where the run's corpus is not here, or is not the corpus the file was made from.
    """
    with open_h5(src) as h5:
        corpus = _corpus_for_text(src, h5) if text else None
        meta = {
            **export_metadata(h5, digest, dtype),
            "table": "passages",
            "rows": int(h5[PASSAGE_EMBEDDINGS].shape[0]),
        }
        blocks = _blocks(h5, dtype, corpus)
        if fmt == "parquet":
            return _parquet(dst, blocks, meta, h5, dtype, text)
        return _npy(dst, blocks, meta, h5, dtype, text)


def _schema(dim: int, dtype: str, text: bool, meta: dict, vectors: bool) -> pa.Schema:
    fields = [pa.field(name, kind, nullable=False) for name, kind in COLUMNS.items()]
    if text:
        fields.append(pa.field(TEXT, pa.string(), nullable=False))
    if vectors:
        value = pa.float16() if dtype == "float16" else pa.float32()
        fields.append(
            pa.field(EMBEDDING, pa.list_(pa.field("item", value, nullable=False), dim), nullable=False)
        )
    return pa.schema(fields, metadata={METADATA_KEY: metadata_json(meta)})


def _parquet(dst: Path, blocks, meta: dict, h5: h5py.File, dtype: str, text: bool) -> ExportResult:
    rows, dim = h5[PASSAGE_EMBEDDINGS].shape
    schema = _schema(dim, dtype, text, meta, vectors=True)
    names = [f.name for f in schema if f.name != EMBEDDING]
    tmp = atomic.tmp_path(dst)
    with atomic.removed_on_error(tmp):
        with HashingFile(tmp) as sink, pq.ParquetWriter(sink, schema, **writer_options(names)) as writer:
            for vectors, columns in blocks:
                embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim)
                writer.write_batch(pa.RecordBatch.from_arrays([*columns, embedding], schema=schema))
        sha256 = commit_hashed(tmp, dst, sink.sha256.hexdigest())
    return ExportResult(dst, rows, dim, dtype, sha256)


def _npy(folder: Path, blocks, meta: dict, h5: h5py.File, dtype: str, text: bool) -> ExportResult:
    rows, dim = h5[PASSAGE_EMBEDDINGS].shape
    schema = _schema(dim, dtype, text, meta, vectors=False)
    sha256 = write_npy_folder(folder, rows, dim, dtype, schema, blocks)
    return ExportResult(folder, rows, dim, dtype, sha256)


def _blocks(h5: h5py.File, dtype: str, corpus: Path | None) -> Iterator[tuple[np.ndarray, list[pa.Array]]]:
    """(vectors, the other columns) per block of passages, in file order."""
    emb = h5[PASSAGE_EMBEDDINGS]
    reader = CorpusReader(corpus) if corpus is not None else None
    try:
        for lo in range(0, emb.shape[0], BLOCK_ROWS):
            hi = min(lo + BLOCK_ROWS, emb.shape[0])
            doc, span = h5[PASSAGE_DOCUMENT][lo:hi], h5[PASSAGE_SPAN][lo:hi]
            first, last = int(doc[0]), int(doc[-1]) + 1
            ids = h5["ids"][first:last][doc - first]  # UTF-8 bytes, cast by Arrow
            columns = [
                pa.array(ids, pa.binary()).cast(pa.string()),
                pa.array(h5[PASSAGE_INDEX][lo:hi]),
                pa.array(span[:, 0]),
                pa.array(span[:, 1]),
                pa.array(h5[PASSAGE_TOKENS][lo:hi]),
            ]
            if reader is not None:
                texts = reader.read(first, last, ("texts",))["texts"]
                columns.append(
                    pa.array([texts[d - first][s:e] for d, (s, e) in zip(doc.tolist(), span.tolist())])
                )
            yield emb[lo:hi].astype(dtype, copy=False), columns
    finally:
        if reader is not None:
            reader.close()


def _corpus_for_text(src: Path, h5: h5py.File) -> Path:
    """The run's corpus index beside ``src``, when it is the corpus the file's vectors were made from."""
    corpus = RunPaths.of(src.parent).corpus
    recorded = h5.attrs.get(f"{PROVENANCE_PREFIX}corpus_fingerprint")
    try:
        found = corpus_info(corpus).fingerprint
    except (CorpusError, OSError) as err:
        raise ExportError(
            f"TEXT=1 reads each passage's text from the run's corpus, and {src.parent} has none that can be read "
            f"({str(err).splitlines()[0]}): a fetched folder holds only embeddings.h5. Export on the machine "
            "that holds the run folder, or without TEXT=1 (the spans say where each passage lies)."
        ) from err
    if recorded is not None and str(recorded) != found:
        raise ExportError(
            f"TEXT=1: {corpus} is not the corpus {src.name} was made from (fingerprint {found[:12]}... against "
            f"{str(recorded)[:12]}...); nothing was exported."
        )
    return corpus
