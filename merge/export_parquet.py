"""embeddings.h5 -> embeddings.parquet: id, title, url (topic), embedding as fixed_size_list.

LanceDB, DuckDB, Hugging Face datasets, Qdrant and Milvus bulk loaders read it as is; the
``embedding`` column is ``fixed_size_list<float32>[dim]`` (a ``list<double>`` is the error LanceDB
users meet most). One row group per block of rows, so a reader can stream it too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from kit import atomic
from kit.h5files import open_h5
from merge.export import (
    COLUMNS,
    METADATA_KEY,
    ExportResult,
    HashingFile,
    blocks,
    commit_hashed,
    export_metadata,
    metadata_json,
    text_array,
    text_fields,
)

EMBEDDING = "embedding"


def parquet_schema(text_columns: list[str], dim: int, dtype: str, meta: dict) -> pa.Schema:
    """The export's schema: the text columns, then fixed-size embedding lists; ``meta`` in its metadata."""
    value_type = pa.float16() if dtype == "float16" else pa.float32()
    fields = [pa.field(c, pa.string(), nullable=False) for c in text_columns]
    fields.append(
        pa.field(EMBEDDING, pa.list_(pa.field("item", value_type, nullable=False), dim), nullable=False)
    )
    return pa.schema(fields, metadata={METADATA_KEY: metadata_json(meta)})


def record_batch(schema: pa.Schema, vectors: np.ndarray, texts: dict) -> pa.RecordBatch:
    """One block as a record batch; the vectors are handed to Arrow without a copy."""
    embedding = pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), vectors.shape[1])
    columns = [text_array(texts[f.name]) for f in schema if f.name != EMBEDDING]
    return pa.RecordBatch.from_arrays([*columns, embedding], schema=schema)


def writer_options(text_columns: list[str]) -> dict:
    """Vectors are incompressible and never repeat: no dictionary, compression or statistics for them."""
    return {
        "use_dictionary": text_columns,
        "write_statistics": text_columns,
        "compression": {**{c: "snappy" for c in text_columns}, EMBEDDING: "none"},
    }


def write_parquet(src: Path, dst: Path, digest: str, dtype: str) -> ExportResult:
    """Stream ``src`` (verified, SHA-256 ``digest``) into ``dst`` with its .sha256, atomically."""
    tmp = atomic.tmp_path(dst)
    with atomic.removed_on_error(tmp), open_h5(src) as h5:
        rows, dim = h5["embeddings"].shape
        text_columns = [COLUMNS[f] for f in text_fields(h5)]
        schema = parquet_schema(text_columns, dim, dtype, export_metadata(h5, digest, dtype))
        with (
            HashingFile(tmp) as sink,
            pq.ParquetWriter(sink, schema, **writer_options(text_columns)) as writer,
        ):
            for vectors, texts in blocks(h5, dtype):
                writer.write_batch(record_batch(schema, vectors, texts))
        sha256 = commit_hashed(tmp, dst, sink.sha256.hexdigest())
    return ExportResult(dst, rows, dim, dtype, sha256)
