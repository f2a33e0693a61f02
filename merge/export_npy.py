"""embeddings.h5 -> a folder of embeddings.npy + metadata.parquet, the layout autofaiss and embedding-reader read.

``embeddings.npy`` is one [N, dim] array; ``metadata.parquet`` holds id, title, url (topic) of row
i at row i, and the identity and provenance in its schema metadata. embedding-reader pairs the
sorted ``*.npy`` and ``*.parquet`` files of the folder (``file_format="parquet_npy"``); autofaiss
builds an index whose label i is row i. The folder is built as ``<name>.tmp`` and renamed whole.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kit import atomic
from kit.format import sidecar_path, sidecar_text
from kit.h5files import open_h5
from merge.export import (
    COLUMNS,
    METADATA_KEY,
    METADATA_PARQUET,
    ExportResult,
    HashingFile,
    blocks,
    export_metadata,
    metadata_json,
    text_array,
    text_fields,
)

EMBEDDINGS_NPY = "embeddings.npy"


def write_npy_header(f: HashingFile, rows: int, dim: int, dtype: str) -> None:
    """Write the ``.npy`` (version 2.0) header of a C-order ``rows`` x ``dim`` array of ``dtype`` to ``f``."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": (rows, dim),
    }
    np.lib.format.write_array_header_2_0(f, header)


def write_npy(src: Path, folder: Path, digest: str, dtype: str) -> ExportResult:
    """Stream ``src`` (verified, SHA-256 ``digest``) into ``folder``; each file gets its .sha256."""
    with open_h5(src) as h5:
        rows, dim = h5["embeddings"].shape
        columns = [COLUMNS[f] for f in text_fields(h5)]
        schema = pa.schema(
            [pa.field(c, pa.string(), nullable=False) for c in columns],
            metadata={METADATA_KEY: metadata_json(export_metadata(h5, digest, dtype))},
        )
        batches = ((vectors, [text_array(texts[c]) for c in columns]) for vectors, texts in blocks(h5, dtype))
        sha256 = write_npy_folder(folder, rows, dim, dtype, schema, batches)
    return ExportResult(folder, rows, dim, dtype, sha256)


def write_npy_folder(
    folder: Path,
    rows: int,
    dim: int,
    dtype: str,
    schema: pa.Schema,
    batches: Iterable[tuple[np.ndarray, list[pa.Array]]],
) -> str:
    """Write ``embeddings.npy`` and ``metadata.parquet`` (``schema``), each with its .sha256, as ``folder``.

    ``batches`` gives (vectors, the metadata columns) per block, in row order. The folder is built as
    ``<name>.tmp`` and renamed whole (removed if anything fails); returns the npy's SHA-256.
    """
    tmp = atomic.tmp_path(folder)
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted export
    tmp.mkdir(parents=True)
    try:
        with (
            HashingFile(tmp / EMBEDDINGS_NPY) as npy,
            HashingFile(tmp / METADATA_PARQUET) as meta,
            pq.ParquetWriter(meta, schema) as writer,
        ):
            write_npy_header(npy, rows, dim, dtype)
            for vectors, columns in batches:
                npy.write(np.ascontiguousarray(vectors).data)
                writer.write_batch(pa.RecordBatch.from_arrays(columns, schema=schema))
        for name, sink in ((EMBEDDINGS_NPY, npy), (METADATA_PARQUET, meta)):
            atomic.write_text(sidecar_path(tmp / name), sidecar_text(sink.sha256.hexdigest(), tmp / name))
        replace_folder(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return npy.sha256.hexdigest()


def replace_folder(tmp: Path, final: Path) -> None:
    """Rename ``tmp`` onto ``final``; a previous export is moved aside first and then deleted."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    atomic.fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)
