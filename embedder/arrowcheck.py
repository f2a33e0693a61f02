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
from embedder.rowcheck import ROW_IDS, CorpusOptions, Kept, hash_array
from kit.format import content_hashes

# Python's str.isspace() characters: a value is blank when trimming these leaves nothing, exactly
# as rowcheck decides with str.isspace().
SPACES = "".join(c for c in map(chr, range(0x110000)) if c.isspace())
SPACE_FIRST_BYTES = np.zeros(256, dtype=bool)  # the first UTF-8 byte of each of them
SPACE_FIRST_BYTES[[c.encode()[0] for c in SPACES]] = True
# A byte that starts a character that is no whitespace: an ASCII one (below 0x80, a character of
# its own in UTF-8) or a lead byte no whitespace character starts with. A value holding one is not blank.
SOLID_BYTES = np.array(
    [(b < 0x80 and not chr(b).isspace()) or (b >= 0xC0 and not SPACE_FIRST_BYTES[b]) for b in range(256)],
    dtype=bool,
)
LOOK_AHEAD = 8  # bytes of each candidate looked at before trimming it
HASH_IN_PLACE_BYTES = 512  # mean bytes per value from which texts are hashed without a copy
JOIN = "\n\n"  # rowcheck.compose_text joins the text fields with a blank line


def _is_text(arr: pa.Array) -> bool:
    return pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)


def _column(rb: pa.RecordBatch, name: str) -> pa.Array | None:
    index = rb.schema.get_field_index(name)
    return None if index < 0 else rb.column(index)


def _has_nul(arr: pa.Array) -> bool:
    """A NUL byte in the values' bytes (numpy's SIMD minimum, no copy: 10x faster than memchr on a copy)."""
    first, last = _offsets(arr)[[0, -1]]
    return last > first and np.frombuffer(_data(arr), dtype=np.uint8)[first:last].min() == 0


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
    ends = offsets[1:]
    for k in range(1, LOOK_AHEAD):  # " word ...": a solid byte soon after the space settles it
        if not len(where):
            break
        at = starts[where] + k
        inside = at < ends[where]
        solid = np.zeros(len(where), dtype=bool)
        solid[inside] = SOLID_BYTES[data[at[inside]]]
        where = where[~solid]
    blank = np.zeros(len(arr), dtype=bool)
    if len(where):
        trimmed = pc.utf8_ltrim(arr.take(_indices(where)), characters=SPACES)
        blank[where] = _numbers(pc.utf8_length(trimmed)) == 0
    return blank


# Arrow arrays from numpy through their buffers: pa.array() and pa.scalar() import pandas (~0.4 CPU s).
def _indices(rows: np.ndarray) -> pa.Array:
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)])


def _mask(values: np.ndarray) -> pa.Array:
    return pa.Array.from_buffers(
        pa.bool_(), len(values), [None, pa.py_buffer(np.packbits(values, bitorder="little"))]
    )


def string_scalar(value: bytes, kind: pa.DataType) -> pa.Scalar:
    """A string or binary scalar (pa.scalar(), and a Python value passed to pyarrow.compute, import pandas)."""
    offsets = np.array([0, len(value)], dtype=np.int32)
    return pa.Array.from_buffers(kind, 1, [None, pa.py_buffer(offsets), pa.py_buffer(value)])[0]


def _numbers(arr: pa.Array) -> np.ndarray:
    """The values of an integer array without nulls (its buffer: to_numpy() imports pandas)."""
    return np.frombuffer(arr.buffers()[1], dtype=arr.type.to_pandas_dtype())[
        arr.offset : arr.offset + len(arr)
    ]


def _clean_text(arr: pa.Array | None) -> TypeGuard[pa.Array]:
    """A text column with a value in every row and no NUL byte."""
    return arr is not None and _is_text(arr) and arr.null_count == 0 and not _has_nul(arr)


def _ids(rb: pa.RecordBatch, options: CorpusOptions, row0: int) -> pa.Array | None:
    """Each row's id as a string array, as the Python check makes them (an integer as its digits)."""
    if options.id_field == ROW_IDS:
        rows = np.arange(
            row0, row0 + rb.num_rows, dtype=np.int64
        )  # (from_buffers: pa.array would import pandas)
        return pa.Array.from_buffers(pa.int64(), len(rows), [None, pa.py_buffer(rows)]).cast(pa.string())
    arr = _column(rb, options.id_field)
    if arr is not None and pa.types.is_integer(arr.type) and arr.null_count == 0:
        return arr.cast(pa.string())
    if not _clean_text(arr) or _blank(arr).any():
        return None
    return arr


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
    kept = [pc.if_else(_mask(b), pa.nulls(1, p.type)[0], p) for p, b in zip(parts, blanks)]
    return pc.binary_join_element_wise(*kept, string_scalar(JOIN.encode(), pa.string()), null_handling="skip")


def _meta_ok(rb: pa.RecordBatch, options: CorpusOptions) -> bool:
    for name in (options.title_field, options.url_field, options.topic_field):
        arr = _column(rb, name)
        if arr is not None and not pa.types.is_null(arr.type) and (not _is_text(arr) or _has_nul(arr)):
            return False
    return True


def _has_topics(rb: pa.RecordBatch, options: CorpusOptions) -> bool:
    arr = _column(rb, options.topic_field)
    return arr is not None and _is_text(arr) and (pc.max(pc.utf8_length(arr)).as_py() or 0) > 0


def hashes(arr: pa.Array) -> np.ndarray:
    """The content hash of each value of a string array, uint8 [n, 16].

    Short values are made into bytes in C and hashed in one C loop; long ones are hashed where
    they lie (a view per value: copying them would cost more than the Python step per value).
    """
    offsets = _offsets(arr)
    if offsets[-1] - offsets[0] < HASH_IN_PLACE_BYTES * len(arr):
        return hash_array(content_hashes(arr.cast(pa.binary()).to_pylist()))
    data, bounds = _data(arr), offsets.tolist()
    return hash_array(content_hashes([data[a:b] for a, b in zip(bounds, bounds[1:])]))


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
    chars = _numbers(pc.utf8_length(text)).astype(np.int64)
    return Kept(
        ids,
        hashes(text),
        chars,
        np.arange(row0, row0 + batch.rows, dtype=np.int64),
        _has_topics(rb, options),
        [],
        text=text,
    )
