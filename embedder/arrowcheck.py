"""The row checks of embedder.rowcheck, in bulk on a parquet batch's Arrow columns (pyarrow compute).

Most batches have nothing to refuse: this establishes it without making a Python string of any
text (UTF-8 validity, nulls, NUL bytes, blanks, lengths, the content hashes from the Arrow
buffers). A batch it cannot clear returns None and is checked row by row as before, which names
each problem with file, row group and row; both give the same rows, ids and hashes.
"""

from __future__ import annotations

from typing import TypeGuard

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedder.readers import Batch
from embedder.rowcheck import ROW_IDS, CorpusOptions, Kept
from kit.format import content_hashes

# Python's str.isspace() characters: a value is blank when trimming these leaves nothing, exactly
# as rowcheck decides with str.isspace().
SPACES = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
SPACE_FIRST_BYTES = np.zeros(256, dtype=bool)  # the first UTF-8 byte of each of them
SPACE_FIRST_BYTES[[c.encode()[0] for c in SPACES]] = True
JOIN = "\n\n"  # rowcheck.compose_text joins the text fields with a blank line


def _is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _column(rb: pa.RecordBatch, name: str) -> pa.Array | None:
    index = rb.schema.get_field_index(name)
    return None if index < 0 else rb.column(index)


def _has_nul(arr: pa.Array) -> bool:
    """A NUL byte in the values' bytes (memchr over one copy: faster than match_substring)."""
    first, last = _offsets(arr)[[0, -1]]
    return b"\x00" in _data(arr)[first:last].tobytes()


def _offsets(arr: pa.Array) -> np.ndarray:
    dtype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    return np.frombuffer(arr.buffers()[1], dtype=dtype)[arr.offset : arr.offset + len(arr) + 1]


def _data(arr: pa.Array) -> memoryview:
    data = arr.buffers()[2]
    return memoryview(data) if data is not None else memoryview(b"")


def _blank(arr: pa.Array) -> np.ndarray:
    """Which values are empty or all whitespace (str.isspace), bool [n]. Only a value that is empty
    or whose first byte can start a whitespace character can be blank: only those are trimmed."""
    offsets = _offsets(arr)
    starts, empty = offsets[:-1], offsets[1:] == offsets[:-1]
    data = np.frombuffer(_data(arr), dtype=np.uint8)
    first = data[np.minimum(starts, max(len(data) - 1, 0))] if len(data) else np.zeros(len(starts), np.uint8)
    where = np.flatnonzero(empty | SPACE_FIRST_BYTES[first])
    blank = np.zeros(len(arr), dtype=bool)
    if len(where):  # (lists, not numpy arrays, into pyarrow: a numpy array makes it import pandas)
        trimmed = pc.utf8_ltrim(arr.take(where.tolist()), characters=SPACES)
        blank[where] = pc.equal(pc.utf8_length(trimmed), 0).to_numpy(zero_copy_only=False)
    return blank


def _clean_text(arr: pa.Array | None) -> TypeGuard[pa.Array]:
    """A text column with a value in every row and no NUL byte."""
    return arr is not None and _is_text(arr) and arr.null_count == 0 and not _has_nul(arr)


def _ids(rb: pa.RecordBatch, options: CorpusOptions, row0: int) -> list[bytes] | None:
    """The UTF-8 bytes of each row's id, as the Python check makes them (an integer as its digits)."""
    if options.id_field == ROW_IDS:
        return [str(r).encode() for r in range(row0, row0 + rb.num_rows)]
    arr = _column(rb, options.id_field)
    if arr is not None and pa.types.is_integer(arr.type) and arr.null_count == 0:
        return [str(v).encode() for v in arr.to_pylist()]
    if not _clean_text(arr) or _blank(arr).any():
        return None
    return arr.cast(pa.binary()).to_pylist()


def _text(rb: pa.RecordBatch, options: CorpusOptions) -> pa.Array | None:
    """The text to embed of every row (the TEXT_FIELDS joined, blank parts left out), or None."""
    columns = [_column(rb, name) for name in options.text_fields]
    parts = [c for c in columns if _clean_text(c)]
    if len(parts) < len(columns):
        return None
    blanks = [_blank(p) for p in parts]
    if np.logical_and.reduce(blanks).any():
        return None
    if len(parts) == 1:
        return parts[0]
    kept = [pc.if_else(pa.array(b.tolist(), pa.bool_()), pa.scalar(None, p.type), p) for p, b in zip(parts, blanks)]
    return pc.binary_join_element_wise(*kept, JOIN, null_handling="skip")


def _meta_ok(rb: pa.RecordBatch, options: CorpusOptions) -> bool:
    for name in (options.title_field, options.url_field, options.topic_field):
        arr = _column(rb, name)
        if arr is not None and not pa.types.is_null(arr.type) and (not _is_text(arr) or _has_nul(arr)):
            return False
    return True


def _has_topics(rb: pa.RecordBatch, options: CorpusOptions) -> bool:
    arr = _column(rb, options.topic_field)
    return arr is not None and _is_text(arr) and bool(pc.any(pc.greater(pc.utf8_length(arr), 0)).as_py())


def hashes(arr: pa.Array) -> list[bytes]:
    """The content hash of each value of a string array (its bytes made in C, hashed in C)."""
    return content_hashes(arr.cast(pa.binary()).to_pylist())


def arrow_check(batch: Batch, options: CorpusOptions, row0: int) -> Kept | None:
    """Every row of a parquet ``batch`` (source rows from ``row0``) when bulk checks find nothing to
    refuse; None otherwise (or when it is no parquet batch), meaning: check it row by row."""
    rb = batch.arrow
    if rb is None or batch.problems or not batch.rows:
        return None
    try:
        rb.validate(full=True)  # UTF-8 of every string (the Python check refuses a lone surrogate)
    except pa.ArrowInvalid:
        return None
    ids = _ids(rb, options, row0)
    if ids is None:
        return None
    text = _text(rb, options)
    if text is None or not _meta_ok(rb, options):
        return None
    chars = pc.utf8_length(text).to_numpy(zero_copy_only=False).astype(np.int64)
    return Kept(ids, hashes(text), chars, list(range(row0, row0 + batch.rows)),
                _has_topics(rb, options), [])
