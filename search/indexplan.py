"""Which FAISS index a run gets, sized from its rows and dimension: a pure function.

- From ``HNSW_MAX_ROWS`` (50,000) rows: ``IVF<nlist>,PQ<m>x8np``, ``m = D / 8`` sub-quantizers
  (48 bytes a row for 384 dimensions: 1/32 of the float32 vectors), its candidates (10, 20 or 40
  per result, tuned) rescored in float32 from embeddings.h5 itself, memory-mapped; ``nlist`` is
  the power of two nearest ``2 sqrt(N)`` (faiss's guideline: 1 to 16 sqrt(N)).
- Below: ``HNSW32,Flat``. It needs no training (IVF-PQ's codebooks want 20,000 rows), and a
  graph over so few rows builds in seconds.

Measured (BENCHMARKS.md, "Search", 2-core VM): at 1,000,000 x 384, IVF2048,PQ48 built in 228 s,
57 MiB on disk, recall@10 0.997 at 32x exact search's batch throughput; HNSW32 (efConstruction
64) took 572 s, 1.7 GiB on disk (a second copy of the vectors), and reached recall@10 0.96 only
at efSearch 2,048, 2.5x exact. At 100,000 rows IVF-PQ also won (9,317 against 2,040 queries/s,
6 against 172 MiB, 19 against 27 s to build), so HNSW is kept for the sizes where IVF-PQ cannot
be trained, and for them exact search is already fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

HNSW_MAX_ROWS = 50_000
HNSW_M = 32  # graph neighbours per node (faiss's HNSW32)
HNSW_EF_CONSTRUCTION = 64  # candidate list while building (faiss's default is 40)
PQ_CANDIDATE_FACTORS = (10, 20, 40)  # IVF-PQ proposes 10, 20 or 40 x K rows (the fastest that reaches the
# target recall is kept), rescored exactly from the file
TRAIN_ROWS_PER_LIST = 50  # k-means training rows per inverted list (faiss warns below 39)
MIN_PQ_TRAIN_ROWS = 20_000  # 256 centroids per sub-quantizer need about 10,000 rows; twice that


@dataclass(frozen=True)
class IndexPlan:
    """A FAISS index to build: its factory string and what its search needs."""

    kind: str  # "hnsw" or "ivf-pq"
    factory: str  # faiss.index_factory string, inner-product metric
    train_rows: int  # rows sampled to train it (0: needs no training)
    candidate_factors: tuple[int, ...]  # rows proposed per result (rescored exactly): each is tried
    search_parameter: str  # what the build tunes to reach the target recall: efSearch or nprobe
    parameter_values: tuple[int, ...]  # tried in this order for each factor, up to the target recall

    def describe(self) -> str:
        """``hnsw (HNSW32,Flat)``: the kind and its factory string."""
        return f"{self.kind} ({self.factory})"


def plan_index(rows: int, dim: int) -> IndexPlan:
    """The index for ``rows`` vectors of ``dim`` dimensions (module docstring: why)."""
    if rows < HNSW_MAX_ROWS:
        return hnsw_plan()
    return ivf_pq_plan(rows, dim)


def hnsw_plan() -> IndexPlan:
    """``HNSW32,Flat``, its efSearch tuned from 16 to 2048."""
    return IndexPlan("hnsw", f"HNSW{HNSW_M},Flat", 0, (1,), "efSearch", tuple(2**i for i in range(4, 12)))


def ivf_pq_plan(rows: int, dim: int) -> IndexPlan:
    """``IVF<nlist>,PQ<m>x8np`` with ``m`` the most sub-quantizers of at least 8 dimensions dividing ``dim``."""
    nlist = int(2 ** round(math.log2(max(2 * math.sqrt(rows), 16))))
    nlist = max(1, min(nlist, rows // TRAIN_ROWS_PER_LIST))
    m = max((d for d in range(1, dim // 8 + 1) if dim % d == 0), default=1)
    train = min(rows, max(TRAIN_ROWS_PER_LIST * nlist, MIN_PQ_TRAIN_ROWS))
    probes = tuple(p for p in (2**i for i in range(0, 17)) if p <= nlist)
    # "np": no polysemous training (minutes of annealing for a Hamming filter this search never uses)
    return IndexPlan("ivf-pq", f"IVF{nlist},PQ{m}x8np", train, PQ_CANDIDATE_FACTORS, "nprobe", probes)
