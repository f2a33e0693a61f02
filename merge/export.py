"""make export: embeddings.h5 as parquet or npy, the formats the tools people use read.

Shared by both formats: the source is checked against its .sha256 sidecar first (on the cluster
and in a folder that ``make fetch`` filled, which holds only embeddings.h5 and its sidecar), rows
are read in blocks (memory does not grow with N), and identity and provenance travel with the
export. Layouts are in docs/EXPORT.md.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import h5py
import numpy as np

from kit import atomic
from kit.commands import make_command
from kit.errors import KitError
from kit.shardfile import plain_attr
from kit.format import (
    EXPORT_FORMATS,
    META_FIELDS,
    OPTIONAL_META_FIELDS,
    OUTPUT_FILE,
    parse_sidecar,
    sidecar_path,
    sidecar_text,
)

EXPORT_FORMAT = "embedkit-export/1"
METADATA_KEY = b"embedkit"  # schema metadata: JSON of identity and provenance (export_metadata)
METADATA_PARQUET = "metadata.parquet"  # in an npy folder: the texts, with the metadata in its schema
FORMATS = EXPORT_FORMATS
BLOCK_ROWS = 25_000  # rows per block read from HDF5; one parquet row group each
# HDF5 dataset -> export column (singular names, as the tools that read them expect).
COLUMNS = {"ids": "id", "titles": "title", "urls": "url", "topics": "topic"}
SKIPPED_ATTRS = ("chunk_info",)  # one entry per shard: stays in embeddings.h5


class ExportError(KitError):
    """make export refused: the source is missing, unverified, or the request is invalid."""


@dataclass(frozen=True)
class ExportResult:
    path: Path  # the parquet file, or the npy folder
    rows: int
    dim: int
    dtype: str  # float32 or float16; int8 or binary for those copies
    sha256: str  # of the parquet file, or of embeddings.npy
    recall: str = ""  # int8 and binary: recall@10 against float32 exact search, measured at export
    passages: ExportResult | None = None  # PASSAGES=1 runs: the passages table written beside it


def verified_digest(src: Path) -> str:
    """The SHA-256 of ``src`` after checking it against its sidecar (reads the whole file once).

    Raises:
        ExportError: no file, no sidecar, or a file that does not match it.
    """
    run = src.parent
    if not src.exists():
        raise ExportError(
            f"{run} has no {src.name} to export. Finish the run ({make_command('status', RUN=run)} "
            "says how), or bring it here with make fetch REMOTE=host:/path/to/run."
        )
    sidecar = sidecar_path(src)
    if not sidecar.exists():
        raise ExportError(
            f"{src} has no {sidecar.name}: it is not a finished merge. Run: {make_command('merge', RUN=run)}"
        )
    try:
        expected, _ = parse_sidecar(sidecar.read_text())
    except ValueError as err:
        raise ExportError(
            f"{sidecar} is damaged ({err}); nothing was exported. Merge again "
            f"({make_command('merge', RUN=run)}) or fetch again (make fetch REMOTE=...)."
        ) from err
    actual = atomic.sha256_file(src)
    if actual != expected:
        raise ExportError(
            f"{src} has SHA-256 {actual[:16]}..., but {sidecar.name} says {expected[:16]}...: the file "
            f"is damaged or was replaced; nothing was exported. Merge it again "
            f"({make_command('merge', RUN=run)}) or fetch it again (make fetch REMOTE=...)."
        )
    return actual


def export_metadata(h5: h5py.File, digest: str, dtype: str) -> dict:
    """Identity and provenance of the export: the attributes of embeddings.h5 and where it came from."""
    attrs = {k: plain_attr(v) for k, v in h5.attrs.items() if k not in SKIPPED_ATTRS}
    if isinstance(attrs.get("quality_metrics"), str):
        attrs["quality_metrics"] = json.loads(attrs["quality_metrics"])
    rows, dim = h5["embeddings"].shape
    return {
        **attrs,
        "export_format": EXPORT_FORMAT,
        "rows": int(rows),
        "embedding_dim": int(dim),
        "embedding_dtype": dtype,
        "source_file": OUTPUT_FILE,
        "source_sha256": digest,
    }


def text_fields(h5: h5py.File) -> list[str]:
    """The HDF5 text datasets the export carries, in column order."""
    return [f for f in (*META_FIELDS, *OPTIONAL_META_FIELDS) if f in h5]


def blocks(h5: h5py.File, dtype: str, block_rows: int = BLOCK_ROWS) -> Iterator[tuple[np.ndarray, dict]]:
    """(vectors [rows, dim] in ``dtype``, {column: UTF-8 bytes}) per block of rows, in file order.

    The text stays bytes: Arrow checks the UTF-8 while casting, a hundred times faster than
    decoding to Python strings first.
    """
    emb = h5["embeddings"]
    fields = text_fields(h5)
    for lo in range(0, emb.shape[0], block_rows):
        hi = min(lo + block_rows, emb.shape[0])
        yield (emb[lo:hi].astype(dtype, copy=False), {COLUMNS[f]: h5[f][lo:hi] for f in fields})


def text_array(values: np.ndarray):
    """An object array of UTF-8 bytes as an Arrow string array."""
    import pyarrow as pa

    return pa.array(values, pa.binary()).cast(pa.string())


class HashingFile:
    """A binary file that hashes what is written to it: the export's SHA-256 without reading it back."""

    def __init__(self, path: Path):
        self._file = open(path, "wb")  # noqa: SIM115 (closed by close())
        self.sha256 = hashlib.sha256()

    def write(self, data) -> int:
        """Write ``data`` and add it to the hash."""
        self.sha256.update(data)
        return self._file.write(data)

    def flush(self) -> None:
        """Flush the file's buffer."""
        self._file.flush()

    def tell(self) -> int:
        """The position in the file: bytes written so far."""
        return self._file.tell()

    def close(self) -> None:
        """Flush, fsync and close the file (a no-op when already closed)."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> HashingFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def commit_hashed(tmp: Path, final: Path, digest: str) -> str:
    """kit.atomic.commit_with_sidecar for a file already hashed (and fsynced) while it was written."""
    atomic.write_text(sidecar_path(final), sidecar_text(digest, final))
    os.replace(tmp, final)
    atomic.fsync_dir(final.parent)
    return digest


def describe(result: ExportResult) -> str:
    """The report line of an export: rows, dimension, dtype, path and sha256 prefix."""
    line = (
        f"Exported {result.rows:,} rows x {result.dim} ({result.dtype}) to {result.path} "
        f"(sha256 {result.sha256[:12]}...)"
    )
    line = f"{line}; {result.recall}" if result.recall else line
    if result.passages is not None:
        line += "\n" + describe(result.passages).replace(" rows x ", " passages x ", 1)
    return line


def exported_from(target: Path) -> str | None:
    """The SHA-256 of the embeddings.h5 an export (a parquet file or an npy folder) was made from."""
    import pyarrow.parquet as pq

    schema_file = target / METADATA_PARQUET if target.is_dir() else target
    try:
        meta = pq.read_schema(schema_file).metadata or {}
        return str(json.loads(meta[METADATA_KEY])["source_sha256"]) or None
    except (OSError, KeyError, ValueError, TypeError):
        return None


def metadata_json(meta: dict) -> bytes:
    """``meta`` as the export's metadata: JSON with sorted keys, UTF-8 encoded."""
    return json.dumps(meta, sort_keys=True).encode()
