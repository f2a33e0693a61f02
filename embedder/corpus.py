"""Read a corpus (pickle list of dicts, JSONL, JSON list), validate it, and prepare it once.

The prepare step streams the source into ``<run>/corpus.h5`` (see docs/FORMAT.md) so that each
array task reads only its own rows ``[start, stop)``: memory proportional to its slice.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import h5py
import numpy as np
from tqdm import tqdm

from kit import atomic
from kit.errors import CorpusError
from kit.format import CORPUS_FORMAT, UTF8

EXAMPLES_SHOWN = 5
WRITE_BLOCK_ROWS = 8192


@dataclass(frozen=True)
class CorpusOptions:
    """How records become the texts to embed."""

    text_fields: tuple[str, ...] = ("text",)  # joined with a blank line, e.g. ("title", "text")
    skip_bad_rows: bool = False  # False: refuse the corpus; True: embed the rest, list the others


@dataclass(frozen=True)
class BadRow:
    row: int  # 0-based position in the source
    id: str  # the row's id as text ("" when it has none)
    reason: str


@dataclass
class CorpusSummary:
    """What prepare found: rows kept, rows rejected, and the corpus fingerprint."""

    source: str
    source_rows: int = 0
    rows: int = 0
    rejected: list[BadRow] = field(default_factory=list)
    fingerprint: str = ""


# ---------------------------------------------------------------- reading


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles lists, dicts, strings and numbers only: a pickle cannot run code through it."""

    def find_class(self, module: str, name: str) -> Any:
        raise CorpusError(
            f"The pickle holds an object of type {module}.{name}; the kit reads only plain lists, "
            "dicts, strings and numbers from a pickle. Convert it to JSONL (one JSON object per "
            "line with id, title, url, text) and pass that file instead."
        )


def iter_records(path: Path) -> Iterator[Any]:
    """Yield the source's records in order: ``.pkl``/``.pickle``, ``.jsonl``, or ``.json`` (a list)."""
    if not path.is_file():
        raise CorpusError(f"Corpus file {path} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".pkl", ".pickle"):
        with open(path, "rb") as f:
            data = _PlainDataUnpickler(f).load()
        yield from _as_list(data, path)
    elif suffix == ".jsonl":
        yield from _iter_jsonl(path)
    elif suffix == ".json":
        with open(path, encoding="utf-8") as f:
            yield from _as_list(json.load(f), path)
    else:
        raise CorpusError(f"Cannot read {path}: use a .pkl (list of dicts), .jsonl or .json (list) file.")


def _as_list(data: Any, path: Path) -> list:
    if not isinstance(data, list):
        raise CorpusError(f"{path} holds a {type(data).__name__}; expected a list of dicts.")
    return data


def _iter_jsonl(path: Path) -> Iterator[Any]:
    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as err:
                yield _Unreadable(f"line {line_no} is not valid JSON ({err.msg})")


@dataclass(frozen=True)
class _Unreadable:
    reason: str


# ---------------------------------------------------------------- validation


def _text_problem(value: Any, name: str) -> str | None:
    """Why ``value`` cannot be stored as a UTF-8 HDF5 string, or None."""
    if not isinstance(value, str):
        return f"{name} is not a string (got {type(value).__name__})"
    if "\x00" in value:
        return f"NUL byte in {name}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"lone surrogate (invalid UTF-8) in {name}"
    return None


def _row_id(record: dict) -> tuple[str, str | None]:
    """(id as text, problem or None)."""
    if "id" not in record or record["id"] is None:
        return "", "missing id"
    raw = record["id"]
    if isinstance(raw, bool) or not isinstance(raw, (str, int)):
        return repr(raw)[:40], f"id is not a string or integer (got {type(raw).__name__})"
    text = str(raw)
    problem = _text_problem(text, "id")
    if not problem and not text.strip():
        problem = "empty id"
    return text, problem


def compose_text(record: dict, options: CorpusOptions) -> tuple[str, str | None]:
    """(text to embed, problem or None) from the record's text fields."""
    parts = []
    for name in options.text_fields:
        if name not in record or record[name] is None:
            return "", f"missing {name}"
        problem = _text_problem(record[name], name)
        if problem:
            return "", problem
        if record[name].strip():
            parts.append(record[name])
    if not parts:
        return "", "empty text"
    return "\n\n".join(parts), None


def check_record(record: Any, row: int, options: CorpusOptions, seen: dict[str, int]) -> tuple[dict | None, BadRow | None]:
    """Validate one record: (clean row, None) or (None, why it is refused)."""
    if isinstance(record, _Unreadable):
        return None, BadRow(row, "", record.reason)
    if not isinstance(record, dict):
        return None, BadRow(row, "", f"not a dict (got {type(record).__name__})")
    row_id, problem = _row_id(record)
    if not problem and row_id in seen:
        problem = f"duplicate id (first at row {seen[row_id]})"
    text, text_problem = compose_text(record, options)
    problem = problem or text_problem
    clean = {"ids": row_id, "texts": text}
    for key, source in (("titles", "title"), ("urls", "url"), ("topics", "topic")):
        value = record.get(source, "")
        value = "" if value is None else value
        problem = problem or (_text_problem(value, source) if value != "" else None)
        clean[key] = value
    if problem:
        return None, BadRow(row, row_id, problem)
    seen[row_id] = row
    return clean, None


def refusal_message(summary: CorpusSummary) -> str:
    """Counts by reason, the first offending rows, and how to proceed."""
    counts = Counter(bad.reason.split(" (")[0] for bad in summary.rejected)
    lines = [
        f"Corpus {summary.source}: {len(summary.rejected)} of {summary.source_rows} rows cannot be embedded:",
        *(f"  {n:>8}  {reason}" for reason, n in counts.most_common()),
        "First offending rows (0-based):",
        *(f"  row {b.row} id={b.id!r}: {b.reason}" for b in summary.rejected[:EXAMPLES_SHOWN]),
        "Fix these rows, or re-run with SKIP_BAD_ROWS=1 (--skip-bad-rows) to embed the others; "
        "every skipped row is then listed with its reason under /rejected in embeddings.h5.",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------- prepare


def prepare(records: Iterable[Any], out_path: Path, options: CorpusOptions, source: str) -> CorpusSummary:
    """Validate ``records`` and write the prepared corpus to ``out_path`` atomically.

    Raises:
        CorpusError: zero usable rows, or bad rows while ``options.skip_bad_rows`` is False.
    """
    summary = CorpusSummary(source=source)
    tmp = atomic.tmp_path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.removed_on_error(tmp):
        with h5py.File(tmp, "w") as h5:
            _write_rows(h5, records, options, summary)
            _check_summary(summary, options)
            h5.attrs.update(
                format=CORPUS_FORMAT, source=source, source_rows=summary.source_rows,
                rows=summary.rows, fingerprint=summary.fingerprint,
                text_fields=json.dumps(list(options.text_fields)),
            )
        atomic.commit(tmp, out_path)
    return summary


def _check_summary(summary: CorpusSummary, options: CorpusOptions) -> None:
    if summary.rejected and not options.skip_bad_rows:
        raise CorpusError(refusal_message(summary))
    if summary.rows == 0:
        detail = f" ({len(summary.rejected)} rejected)" if summary.rejected else ""
        raise CorpusError(f"Corpus {summary.source} has no rows to embed{detail}.")


def _write_rows(h5: h5py.File, records: Iterable[Any], options: CorpusOptions, summary: CorpusSummary) -> None:
    names = ("ids", "texts", "titles", "urls", "topics")
    for name in names:
        h5.create_dataset(name, shape=(0,), maxshape=(None,), dtype=UTF8, chunks=(4096,))
    digest, seen, block = hashlib.sha256(), {}, {n: [] for n in names}
    has_topics = False
    for row, record in enumerate(tqdm(records, desc="prepare corpus", unit="row", mininterval=5, ascii=True,
                                      disable=None)):
        summary.source_rows += 1
        clean, bad = check_record(record, row, options, seen)
        if bad:
            summary.rejected.append(bad)
            continue
        has_topics = has_topics or bool(clean["topics"])
        digest.update(f"{clean['ids']}\x1f{clean['texts']}\x1e".encode())
        for name in names:
            block[name].append(clean[name])
        if len(block["ids"]) >= WRITE_BLOCK_ROWS:
            _append_block(h5, block)
    _append_block(h5, block)
    summary.rows = h5["ids"].shape[0]
    summary.fingerprint = digest.hexdigest()
    if not has_topics:
        del h5["topics"]
    _write_rejected(h5.create_group("rejected"), summary.rejected)


def _append_block(h5: h5py.File, block: dict[str, list]) -> None:
    n = len(block["ids"])
    if not n:
        return
    for name, values in block.items():
        ds = h5[name]
        ds.resize((ds.shape[0] + n,))
        ds[-n:] = np.array(values, dtype=object)
        values.clear()


def _write_rejected(group: h5py.Group, rejected: list[BadRow]) -> None:
    """Every input row is accounted for: the rows left out are listed with their reason."""
    group.create_dataset("row", data=np.array([b.row for b in rejected], dtype=np.int64))
    group.create_dataset("id", data=np.array([b.id for b in rejected], dtype=object), dtype=UTF8)
    group.create_dataset("reason", data=np.array([b.reason for b in rejected], dtype=object), dtype=UTF8)


# ---------------------------------------------------------------- reading a prepared corpus


@dataclass(frozen=True)
class CorpusInfo:
    path: Path
    rows: int
    source_rows: int
    rejected_rows: int
    fingerprint: str
    source: str
    has_topics: bool


def corpus_info(path: Path) -> CorpusInfo:
    """The header of a prepared corpus."""
    if not path.is_file():
        raise CorpusError(f"Prepared corpus {path} does not exist. Run: make submit RUN={path.parent} CORPUS=...")
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != CORPUS_FORMAT:
            raise CorpusError(f"{path} is not a prepared corpus (format {h5.attrs.get('format')!r}).")
        return CorpusInfo(
            path=path, rows=int(h5.attrs["rows"]), source_rows=int(h5.attrs["source_rows"]),
            rejected_rows=int(h5["rejected/row"].shape[0]), fingerprint=str(h5.attrs["fingerprint"]),
            source=str(h5.attrs["source"]), has_topics="topics" in h5,
        )


def read_slice(path: Path, start: int, stop: int, fields: tuple[str, ...] = ("ids", "texts")) -> dict[str, list[str]]:
    """Rows ``[start, stop)`` of ``fields`` as lists of str; reads only those rows."""
    with h5py.File(path, "r") as h5:
        rows = h5["ids"].shape[0]
        if not 0 <= start <= stop <= rows:
            raise CorpusError(f"Rows [{start}, {stop}) are outside the prepared corpus {path} of {rows} rows.")
        return {name: h5[name].asstr()[start:stop].tolist() for name in fields}
