"""Which rows of a batch can be embedded: field mapping and the row checks, batch by batch.

A row is refused (with its reason) for a missing, empty or non-string id or text, a NUL byte,
a lone surrogate (invalid UTF-8), or a problem its reader found (a line that is not JSON, a CSV
line with too many fields). Duplicate ids are found after the last batch (embedder.duplicates).

Most batches have nothing to refuse: ``fast_check`` and ``encode_rows`` establish that with a few
C-level passes per column (types, blanks; NUL bytes and lone surrogates on the UTF-8 bytes) and
only a batch they cannot clear is checked row by row (``check_batch``), which names each problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import repeat
from operator import contains
from typing import cast

import numpy as np
import pyarrow as pa

from embedder.config import CorpusOptions
from embedder.readers import Batch
from kit.format import CONTENT_HASH_BYTES, ROW_IDS, content_hashes


@dataclass(frozen=True)
class BadRow:
    row: int  # 0-based position in the source
    id: str  # the row's id as text ("" when it has none)
    reason: str
    where: str = ""  # file and row within it for multi-file sources ("b.parquet row 3, row group 0")


@dataclass
class CorpusSummary:
    """What prepare found: rows kept, rows rejected, and the corpus fingerprint."""

    source: str
    source_rows: int = 0
    rows: int = 0
    rejected: list[BadRow] = field(default_factory=list)
    fingerprint: str = ""


@dataclass
class Checked:
    """The rows of one batch that can be embedded, and the others."""

    ids: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    meta: dict[str, list[str]] = field(default_factory=lambda: {"titles": [], "urls": [], "topics": []})
    rows: list[int] = field(default_factory=list)  # source row of each kept row
    bad: list[BadRow] = field(default_factory=list)


def text_problem(value: object, name: str, check_utf8: bool = True) -> str | None:
    """Why ``value`` cannot be stored as a UTF-8 HDF5 string, or None."""
    if type(value) is not str:
        return f"{name} is not a string (got {type(value).__name__})"
    if "\x00" in value:
        return f"NUL byte in {name}"
    if check_utf8 and not value.isascii():  # isascii is O(1) on CPython strings
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"lone surrogate (invalid UTF-8) in {name}"
    return None


def row_id(raw: object, check_utf8: bool) -> tuple[str, str | None]:
    """(id as text, problem or None)."""
    if raw is None:
        return "", "missing id"
    if type(raw) is str:
        text = raw
    elif isinstance(raw, int) and not isinstance(raw, bool):
        return str(raw), None
    else:
        return repr(raw)[:40], f"id is not a string or integer (got {type(raw).__name__})"
    problem = text_problem(text, "id", check_utf8)
    if not problem and (not text or text.isspace()):
        problem = "empty id"
    return text, problem


def compose_text(values: list[object], names: tuple[str, ...], check_utf8: bool) -> tuple[str, str | None]:
    """(text to embed, problem or None) from one row's text field values."""
    parts: list[str] = []
    for name, value in zip(names, values):
        if value is None:
            return "", f"missing {name}"
        problem = text_problem(value, name, check_utf8)
        if problem:
            return "", problem
        value = cast(str, value)  # text_problem refused every other type
        if value and not value.isspace():
            parts.append(value)
    if not parts:
        return "", "empty text"
    return parts[0] if len(parts) == 1 else "\n\n".join(parts), None


def check_batch(batch: Batch, options: CorpusOptions, row0: int, check_utf8: bool = True) -> Checked:
    """Split ``batch`` (source rows ``row0 ..``) into rows to embed and refused rows.

    ``check_utf8=False`` skips the per-value lone-surrogate check (the caller checks the batch at once).
    """
    cols, out, check = batch.columns, Checked(), check_utf8 and not batch.valid_utf8
    ids = None if options.id_field == ROW_IDS else cols[options.id_field]
    texts = [cols[name] for name in options.text_fields]
    meta = [
        (key, cols[name], name)
        for key, name in (
            ("titles", options.title_field),
            ("urls", options.url_field),
            ("topics", options.topic_field),
        )
    ]
    for i in range(batch.rows):
        row = row0 + i
        if i in batch.problems:
            out.bad.append(BadRow(row, "", batch.problems[i], batch.locate(i)))
            continue
        rid, problem = (str(row), None) if ids is None else row_id(ids[i], check)
        text, text_bad = compose_text([col[i] for col in texts], options.text_fields, check)
        problem = problem or text_bad
        values = []
        for _key, col, name in meta:
            value = col[i]
            value = "" if value is None else value
            problem = problem or (text_problem(value, name, check) if value != "" else None)
            values.append(value)
        if problem:
            out.bad.append(BadRow(row, rid, problem, batch.locate(i)))
            continue
        out.ids.append(rid)
        out.texts.append(text)
        out.rows.append(row)
        for (key, _, _), value in zip(meta, values):
            out.meta[key].append(value)
    return out


def fast_check(batch: Batch, options: CorpusOptions, row0: int) -> Checked | None:
    """Every row of ``batch``, when bulk checks of types and blanks find nothing to refuse; else None.

    NUL bytes and lone surrogates are left to ``encode_rows``; None means: use ``check_batch``.
    """
    if batch.problems or not batch.rows:
        return None
    ids, texts = _fast_ids(batch, options, row0), _fast_texts(batch, options)
    if ids is None or texts is None:
        return None
    meta = {}
    for key, name in (
        ("titles", options.title_field),
        ("urls", options.url_field),
        ("topics", options.topic_field),
    ):
        col, types = batch.columns[name], set(map(type, batch.columns[name]))
        if not types <= {str, type(None)}:
            return None
        meta[key] = [v or "" for v in col] if type(None) in types else col
    return Checked(ids, texts, meta, list(range(row0, row0 + batch.rows)))


def _blank_free(col: list[str]) -> bool:
    return all(col) and not any(map(str.isspace, col))


def _fast_ids(batch: Batch, options: CorpusOptions, row0: int) -> list[str] | None:
    if options.id_field == ROW_IDS:
        return list(map(str, range(row0, row0 + batch.rows)))
    col = batch.columns[options.id_field]
    types = set(map(type, col))
    if types == {int}:
        return list(map(str, col))
    return col if types == {str} and _blank_free(col) else None


def _fast_texts(batch: Batch, options: CorpusOptions) -> list[str] | None:
    parts = [batch.columns[name] for name in options.text_fields]
    if any(set(map(type, col)) != {str} for col in parts):
        return None
    if len(parts) == 1:
        return parts[0] if _blank_free(parts[0]) else None
    texts = ["\n\n".join([p for p in row if p and not p.isspace()]) for row in zip(*parts)]
    return texts if all(texts) else None


def encode_rows(checked: Checked) -> dict[str, list[bytes]] | None:
    """The UTF-8 bytes of every kept value (ids, texts, titles, urls, topics), or None when a value
    holds a lone surrogate or a NUL byte (then ``check_batch`` names the row).

    One encode per value serves the check, the fingerprint and the HDF5 write (which would
    otherwise encode each string again).
    """
    try:
        out = {
            "ids": list(map(str.encode, checked.ids)),
            "texts": list(map(str.encode, checked.texts)),
            **{key: list(map(str.encode, values)) for key, values in checked.meta.items()},
        }
    except UnicodeEncodeError:
        return None
    if any(any(map(contains, values, repeat(b"\x00"))) for values in out.values()):
        return None
    return out


@dataclass
class Kept:
    """What the index needs of a batch's kept rows, from either check (Arrow in bulk, or Python)."""

    ids: pa.Array  # each id as a string or binary array (its UTF-8 bytes)
    hashes: np.ndarray  # uint8 [n, 16]: content hash of each text (kit.format.content_hash)
    chars: np.ndarray  # int64 [n], characters of each text
    rows: np.ndarray  # int64 [n], source row of each kept row
    has_topics: bool
    bad: list[BadRow]
    checked: Checked | None = None  # the Python values
    encoded: dict[str, list[bytes]] | None = (
        None  # their UTF-8 bytes, by field (a converted source writes them)
    )
    text: pa.Array | None = None  # the bulk check's joined texts (a converted source writes them)


def hash_array(hashes: list[bytes]) -> np.ndarray:
    """uint8 [n, 16] from n content hashes."""
    return np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(len(hashes), CONTENT_HASH_BYTES)


def kept_rows(checked: Checked, encoded: dict[str, list[bytes]]) -> Kept:
    """``Kept`` from a Python check and the UTF-8 bytes of its values (``encode_rows``)."""
    chars = np.fromiter(map(len, checked.texts), dtype=np.int64, count=len(checked.texts))
    return Kept(
        pa.array(encoded["ids"], pa.binary()),
        hash_array(content_hashes(encoded["texts"])),
        chars,
        np.asarray(checked.rows, dtype=np.int64),
        any(checked.meta["topics"]),
        checked.bad,
        checked,
        encoded,
    )
