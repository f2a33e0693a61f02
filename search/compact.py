"""Search with the smaller copies, and write them (``make export FORMAT=int8|binary``).

Search: the binary codes propose ``candidates`` rows per query by Hamming distance (a scan like
exact search's, on 1/32 of the bytes), then the int8 copy or embeddings.h5 rescores them in
float32 (``search.rescore``). Writing a copy measures, on held-out queries, recall@10 against
float32 exact search, and stores it in the file (``recall``):

- int8: ``int8`` (exact search over the int8 rows read back);
- binary: ``binary`` (Hamming alone), ``binary+int8`` and ``binary+float32`` (its candidates
  rescored; the int8 codes computed with the same calibration as ``FORMAT=int8`` writes).

>>> result = write_compact(Path("runs/demo/embeddings.h5"), "binary", digest)   # CompactResult
>>> with BinaryFile(...) as codes, Int8File(...) as int8:
...     hits = compact_search(codes, query_vectors, k=10, rescorer=int8)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from kit import atomic
from kit.errors import ConfigError
from kit.format import META_FIELDS, OPTIONAL_META_FIELDS, compact_path
from kit.h5files import open_h5
from search.compactfile import FORMATS, BinaryFile, Int8File
from search.exact import exact_search, prepare_queries, scan
from search.heldout import held_out_queries, recall_at_k
from search.quantize import (
    CALIBRATION_ROWS,
    Calibration,
    calibrate,
    from_int8,
    hamming,
    to_binary,
    to_int8,
    unit_rows,
)
from search.rescore import Rows, rescore
from search.topk import Hits
from search.vectors import VectorFile

CANDIDATES = 400  # rows the binary codes propose per query (for k = 10); BENCHMARKS.md, "Search"
RECALL_QUERIES = 1000
WRITE_ROWS = 65536
SKIPPED_ATTRS = ("chunk_info",)  # one entry per shard: stays in embeddings.h5


@dataclass(frozen=True)
class CompactResult:
    """What ``write_compact`` wrote."""

    path: Path
    kind: str  # int8 or binary
    rows: int
    dim: int
    sha256: str
    recall: dict[str, Any]  # recall@10 against float32 exact search (module docstring)

    def describe(self) -> str:
        """``recall@10 against float32 exact (1,000 held-out queries): binary 0.52, binary+int8 0.97, ...``."""
        scores = ", ".join(f"{k} {v:.3f}" for k, v in self.recall.items() if isinstance(v, float))
        return f"recall@10 against float32 exact ({self.recall['queries']:,} held-out queries): {scores}"


def binary_candidates(
    codes: BinaryFile, queries: np.ndarray, candidates: int = CANDIDATES, threads: int | None = None
) -> Hits:
    """The ``candidates`` rows nearest each query (float [Q, D]) in Hamming distance, ties by row.

    Scores are the cosine the distance suggests, ``cos(pi * distance / D)``.
    """
    words = codes.query_words(prepare_queries(queries, codes.dim))
    found = scan(codes, words, candidates, lambda q, block: -hamming(q, block), threads)
    return Hits(found.rows, hamming_cosine(-found.scores, codes.dim))


def compact_search(
    codes: BinaryFile,
    queries: np.ndarray,
    k: int = 10,
    rescorer: Rows | None = None,
    candidates: int = CANDIDATES,
    threads: int | None = None,
) -> Hits:
    """The ``k`` best rows per query: binary candidates, rescored by ``rescorer`` (an ``Int8File`` or a
    ``VectorFile``; None keeps the Hamming order)."""
    found = binary_candidates(codes, queries, max(candidates, k), threads)
    if rescorer is None:
        return Hits(found.rows[:, :k], found.scores[:, :k])
    return rescore(rescorer, prepare_queries(queries, codes.dim), found.rows, min(k, codes.rows))


def calibration_of(vectors: VectorFile, seed: int = 0) -> Calibration:
    """The calibration of ``vectors``: from CALIBRATION_ROWS random rows (all where N is smaller)."""
    count = min(vectors.rows, CALIBRATION_ROWS)
    rows = np.sort(np.random.default_rng(seed).choice(vectors.rows, count, replace=False))
    return calibrate(vectors.take(rows))


def write_compact(
    source: Path, kind: str, digest: str, candidates: int = CANDIDATES, threads: int | None = None
) -> CompactResult:
    """Write the ``kind`` (int8 or binary) copy of ``source`` beside it, atomically, with its sidecar.

    Args:
        source: embeddings.h5, already checked against its sidecar (``digest``).
        kind: ``int8`` or ``binary``.
        digest: ``source``'s SHA-256, recorded as ``source_sha256``.
        candidates: binary candidates per query for the recall measured (binary only).
        threads: scan workers; None uses every core this process may use.

    Raises:
        ConfigError: ``kind`` is neither int8 nor binary.
    """
    if kind not in FORMATS:
        raise ConfigError(f"No {kind!r} copy: choose from {', '.join(FORMATS)}.")
    final = compact_path(source, kind)
    tmp = atomic.tmp_path(final)
    with atomic.removed_on_error(tmp), VectorFile(source) as vectors:
        cal = calibration_of(vectors)
        with open_h5(source) as src, open_h5(tmp, "w") as out:
            _write_codes(vectors, cal, kind, out)
            _copy_names_and_attrs(src, out, kind, digest, cal)
        recall = _measure(vectors, cal, kind, tmp, candidates, threads)
        with open_h5(tmp, "a") as out:
            out.attrs["recall"] = json.dumps(recall)
        sha256 = atomic.commit_with_sidecar(tmp, final)
        return CompactResult(final, kind, vectors.rows, vectors.dim, sha256, recall)


def _write_codes(vectors: VectorFile, cal: Calibration, kind: str, out: h5py.File) -> None:
    """The codes, block by block, and the calibration that defines them."""
    width = vectors.dim if kind == "int8" else to_binary(np.zeros((1, vectors.dim)), cal.thresholds).shape[1]
    codes = out.create_dataset(
        "embeddings", shape=(vectors.rows, width), dtype=np.int8 if kind == "int8" else np.uint8
    )
    for lo in range(0, vectors.rows, WRITE_ROWS):
        unit = unit_rows(vectors.block(lo, min(lo + WRITE_ROWS, vectors.rows)))
        codes[lo : lo + len(unit)] = to_int8(unit, cal) if kind == "int8" else to_binary(unit, cal.thresholds)
    names = ("low", "high") if kind == "int8" else ("thresholds",)
    for name in names:
        out.create_dataset(name, data=getattr(cal, name))


def _copy_names_and_attrs(src: h5py.File, out: h5py.File, kind: str, digest: str, cal: Calibration) -> None:
    for name in (*META_FIELDS, *OPTIONAL_META_FIELDS):
        if name in src:
            src.copy(src[name], out, name)
    out.attrs.update({k: v for k, v in src.attrs.items() if k not in SKIPPED_ATTRS})
    out.attrs.update(format=FORMATS[kind], source_file=Path(src.filename).name, source_sha256=digest)
    out.attrs["calibration_rows"] = cal.rows


class _Int8Of:
    """The int8 copy's rows without the file: quantised and read back on the fly (same calibration)."""

    unit_norm = False

    def __init__(self, vectors: VectorFile, cal: Calibration):
        self.vectors, self.cal = vectors, cal

    def take(self, rows: np.ndarray) -> np.ndarray:
        """Float32 rows ``rows`` as the int8 copy reads them back."""
        codes = to_int8(unit_rows(self.vectors.take(rows)), self.cal)
        return from_int8(codes, self.cal.low, self.cal.step)


def _measure(
    vectors: VectorFile, cal: Calibration, kind: str, written: Path, candidates: int, threads: int | None
) -> dict[str, Any]:
    """Recall@10 against float32 exact search of what the file written at ``written`` allows."""
    queries = held_out_queries(vectors, RECALL_QUERIES, seed=2)
    truth = exact_search(vectors, queries, 10, threads)
    recall: dict[str, Any] = {"queries": len(queries), "k": 10}
    if kind == "int8":
        with Int8File(written) as int8:
            recall["int8"] = round(recall_at_k(exact_search(int8, queries, 10, threads), truth), 4)
        return recall
    with BinaryFile(written) as codes:
        found = binary_candidates(codes, queries, candidates, threads)
    q = prepare_queries(queries, vectors.dim)
    recall["candidates"] = candidates
    recall["binary"] = recall_at_k(Hits(found.rows[:, :10], found.scores[:, :10]), truth)
    recall["binary+int8"] = recall_at_k(rescore(_Int8Of(vectors, cal), q, found.rows, 10), truth)
    recall["binary+float32"] = recall_at_k(rescore(vectors, q, found.rows, 10), truth)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in recall.items()}


def hamming_cosine(distance: np.ndarray, dim: int) -> np.ndarray:
    """The cosine a Hamming ``distance`` between two ``dim``-bit codes suggests: ``cos(pi d / dim)``."""
    return np.cos(math.pi * distance / dim).astype(np.float32)
