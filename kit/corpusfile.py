"""Reading a prepared corpus (``<run>/corpus.h5``): its header and a slice of rows.

Shared by the embedder (its rows), the merge (ids, titles, urls, topics) and jobs (the plan).
The writer is ``embedder.corpus.prepare``. Layout: docs/FORMAT.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from kit.errors import CorpusError
from kit.format import CORPUS_FORMAT


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
            source=str(h5.attrs["source"]), has_topics="topics" in h5, has_costs="text_chars" in h5,
        )


def read_slice(path: Path, start: int, stop: int, fields: tuple[str, ...] = ("ids", "texts")) -> dict[str, list[str]]:
    """Rows ``[start, stop)`` of ``fields`` as lists of str; reads only those rows."""
    with h5py.File(path, "r") as h5:
        rows = h5["ids"].shape[0]
        if not 0 <= start <= stop <= rows:
            raise CorpusError(f"Rows [{start}, {stop}) are outside the prepared corpus {path} of {rows} rows.")
        return {name: h5[name].asstr()[start:stop].tolist() for name in fields}


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
    with h5py.File(path, "r") as h5:
        if "text_chars" in h5:
            return h5["text_chars"][:].astype(np.int64)
        texts, n = h5["texts"], h5["texts"].shape[0]
        out = np.empty(n, dtype=np.int64)
        for lo in range(0, n, COST_BLOCK_ROWS):
            block = texts.asstr()[lo : lo + COST_BLOCK_ROWS]
            out[lo : lo + len(block)] = np.fromiter(map(len, block), dtype=np.int64, count=len(block))
        return out


def row_costs(path: Path, max_seq_length: int | None = None) -> np.ndarray:
    """Estimated embedding cost of each row, float64 [N] (tokens, > 0), for ``jobs.plan.plan_shards``.

    Args:
        path: a prepared corpus.h5.
        max_seq_length: the model's limit in tokens, when known; longer texts cost no more.
    """
    tokens = text_chars(path) / CHARS_PER_TOKEN + 2.0
    if max_seq_length:
        tokens = np.minimum(tokens, float(max_seq_length))
    return tokens + ROW_OVERHEAD_TOKENS
