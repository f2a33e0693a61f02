"""One measurement of bench/search_scale.py, run in its own process (so its peak memory is its own).

    python bench/search_phases.py PHASE FOLDER [KIND]

Prints one JSON object. Phases: ``exact`` (the kit's exact search), ``faiss`` (faiss.IndexFlatIP,
the same queries), ``build`` (build_index with the KIND plan), ``index`` (search the index built),
``compact`` (write the int8 and binary copies), ``binary`` (search binary codes + int8 rescoring).
Queries: 256 held-out queries (rows of the file plus noise; seed 11), one call for the batch, and
the first SINGLE of them one call each for the latency of a single question.
"""

from __future__ import annotations

import json
from collections.abc import Callable
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from search.compact import compact_search, write_compact
from search.compactfile import open_binary, open_int8
from search.exact import exact_search, prepare_queries
from search.heldout import held_out_queries, recall_at_k
from search.index import build_index, open_index
from search.indexfile import source_digest
from search.indexplan import hnsw_plan, ivf_pq_plan
from search.topk import Hits
from search.vectors import VectorFile

BATCH, SINGLE = 256, 20


def timed(search, queries: np.ndarray) -> dict:
    """Median seconds of one single-query call, and queries/s of one call on the whole batch."""
    search(queries[:1])  # warm: page faults of the mapping, faiss's and BLAS's first call
    singles = []
    for q in queries[:SINGLE]:
        t0 = time.perf_counter()
        search(q[None, :])
        singles.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    hits = search(queries)
    batch_s = time.perf_counter() - t0
    return {"single_ms": 1000 * statistics.median(singles), "batch_qps": len(queries) / batch_s, "hits": hits}


def queries_of(vectors: VectorFile) -> np.ndarray:
    """The bench's held-out queries."""
    return held_out_queries(vectors, BATCH, seed=11)


def truth_path(folder: Path) -> Path:
    return folder / "truth.npz"


def phase_exact(folder: Path) -> dict:
    with VectorFile(folder / "embeddings.h5") as vectors:
        q = queries_of(vectors)
        out = timed(lambda x: exact_search(vectors, x, 10), q)
    hits = out.pop("hits")
    np.savez(truth_path(folder), rows=hits.rows, scores=hits.scores)
    return out


def phase_faiss(folder: Path) -> dict:
    import faiss

    with VectorFile(folder / "embeddings.h5") as vectors:
        q = prepare_queries(queries_of(vectors), vectors.dim)
        index = faiss.IndexFlatIP(vectors.dim)
        for lo in range(0, vectors.rows, 65536):
            index.add(np.ascontiguousarray(vectors.block(lo, min(lo + 65536, vectors.rows))))
    default = timed(lambda x: index.search(x, 10), q)
    faiss.cvar.distance_compute_blas_threshold = 20  # BLAS from 20 queries, as faiss before 1.12
    blas = timed(lambda x: index.search(x, 10), q)
    truth = np.load(truth_path(folder))["rows"]
    same = float(np.mean(default.pop("hits")[1] == truth))
    blas.pop("hits")
    return {
        "single_ms": default["single_ms"],
        "batch_qps_default": default["batch_qps"],
        "batch_qps_blas": blas["batch_qps"],
        "same_rows_as_kit": same,
    }


def plan_of(kind: str, rows: int, dim: int):
    return hnsw_plan() if kind == "hnsw" else ivf_pq_plan(rows, dim)


def phase_build(folder: Path, kind: str) -> dict:
    source = folder / "embeddings.h5"
    with VectorFile(source) as vectors:
        plan = plan_of(kind, vectors.rows, vectors.dim)
    t0 = time.perf_counter()
    record = build_index(source, plan)
    return {
        "seconds": time.perf_counter() - t0,
        "record": record.describe(),
        "recall_at_10": record.recall_at_10,
        "size_mib": (folder / "embeddings.faiss").stat().st_size / 2**20,
    }


def phase_index(folder: Path) -> dict:
    source = folder / "embeddings.h5"
    index = open_index(source, required=True)
    assert index is not None  # required=True raises instead
    with VectorFile(source) as vectors:
        q = queries_of(vectors)
        out = timed(lambda x: index.search(vectors, x, 10), q)
    truth = np.load(truth_path(folder))
    out["recall_at_10"] = recall_at_k(out.pop("hits"), Hits(truth["rows"], truth["scores"]))
    return out


def phase_compact(folder: Path) -> dict:
    source = folder / "embeddings.h5"
    out = {}
    for kind in ("int8", "binary"):
        t0 = time.perf_counter()
        result = write_compact(source, kind, source_digest(source))
        out[kind] = {
            "seconds": time.perf_counter() - t0,
            "recall": result.recall,
            "size_mib": result.path.stat().st_size / 2**20,
        }
    return out


def phase_binary(folder: Path) -> dict:
    source = folder / "embeddings.h5"
    codes, int8 = open_binary(source), open_int8(source)
    if codes is None or int8 is None:
        raise SystemExit(f"run the compact phase first: no binary or int8 copy beside {source}")
    with VectorFile(source) as vectors:
        q = queries_of(vectors)
    out = timed(lambda x: compact_search(codes, x, 10, rescorer=int8), q)
    truth = np.load(truth_path(folder))
    out["recall_at_10"] = recall_at_k(out.pop("hits"), Hits(truth["rows"], truth["scores"]))
    return out


PHASES: dict[str, Callable[..., dict]] = {
    "exact": phase_exact,
    "faiss": phase_faiss,
    "build": phase_build,
    "index": phase_index,
    "compact": phase_compact,
    "binary": phase_binary,
}

if __name__ == "__main__":
    phase, folder, *rest = sys.argv[1:]
    print(json.dumps(PHASES[phase](Path(folder), *rest)))
