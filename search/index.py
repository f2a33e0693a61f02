"""Build, open and search a run's FAISS index: for when exact search is too slow.

``build_index(source)`` sizes the index from N (``search.indexplan``), trains and fills it from
embeddings.h5 block by block, tunes its search parameter (efSearch or nprobe) on held-out
queries until recall@10 against exact search reaches ``target_recall``, measures recall@10
on other held-out queries, and writes it atomically beside the file (``search.indexfile``).

``open_index(source)`` returns the index when present (None when absent; ``required=True``
refuses its absence), after checking it is the recorded file and indexes this embeddings.h5.
``SearchIndex.search`` proposes ``candidates_per_k x k`` rows per query and rescores them in
float32 from embeddings.h5, so scores and tie order are those of exact search.

>>> record = build_index(Path("runs/demo/embeddings.h5"))        # IndexRecord; record.describe()
>>> index = open_index(Path("runs/demo/embeddings.h5"))          # SearchIndex, or None
>>> with VectorFile("runs/demo/embeddings.h5") as vectors:
...     hits = index.search(vectors, query_vectors, k=10)
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kit import atomic
from kit.commands import make_command
from kit.errors import ConfigError
from kit.format import sidecar_path, sidecar_text
from search.exact import available_cores, exact_search, prepare_queries
from search.heldout import held_out_queries, recall_at_k
from search.indexfile import (
    IndexMismatchError,
    IndexRecord,
    check_record,
    index_path,
    read_record,
    rebuild_command,
    source_digest,
    write_record,
)
from search.indexplan import HNSW_EF_CONSTRUCTION, IndexPlan, plan_index
from search.rescore import rescore
from search.topk import Hits
from search.vectors import VectorFile, file_identity

log = logging.getLogger(__name__)

TARGET_RECALL = 0.97  # tuned on one set of held-out queries, so the other set measures >= 0.95
TUNE_QUERIES = REPORT_QUERIES = 500
ADD_ROWS = 65536  # rows handed to faiss per add() call


def _faiss() -> Any:
    """faiss, imported only where an index is built or searched."""
    import faiss

    return faiss


@dataclass
class SearchIndex:
    """An opened, checked index and its record."""

    record: IndexRecord
    index: Any  # faiss.Index; its ids are rows of the source file

    def search(self, vectors: VectorFile, queries: np.ndarray, k: int = 10, value: int | None = None) -> Hits:
        """The ``k`` best rows per query: proposed by the index, rescored from ``vectors`` (the source).

        ``value`` overrides the recorded search parameter (efSearch or nprobe).
        """
        record = self.record
        setting = (record.search_parameter, value or record.search_value)
        return _search(self.index, setting, record.candidates_per_k, vectors, queries, k)


def _search(
    index: Any, setting: tuple[str, int], per_k: int, vectors: VectorFile, queries: np.ndarray, k: int
) -> Hits:
    """Candidates from ``index`` with its parameter ``setting`` (name, value), rescored from ``vectors``."""
    q = prepare_queries(queries, vectors.dim)
    _faiss().ParameterSpace().set_index_parameter(index, *setting)
    _, candidates = index.search(q, min(k * per_k, vectors.rows))
    return rescore(vectors, q, candidates, min(k, vectors.rows))


def open_index(source: Path, required: bool = False, verify: bool = True) -> SearchIndex | None:
    """The index beside ``source`` (embeddings.h5), checked; None where there is none (unless ``required``).

    ``verify`` re-hashes the index file against its record (a damaged index gives wrong answers silently).

    Raises:
        IndexMismatchError: missing (when required), incomplete, damaged, or built for another file;
            one line ending with the command that rebuilds it.
    """
    record = read_record(source)
    if record is None:
        if required:
            raise IndexMismatchError(f"{source.parent} has no index. Build it: {rebuild_command(source)}")
        return None
    path = index_path(source)
    digest = atomic.sha256_file(path) if verify else record.index_sha256
    check_record(source, record, file_identity(source), digest)
    index = _faiss().read_index(str(path))
    if index.ntotal != record.source.get("rows"):
        raise IndexMismatchError(
            f"{path} holds {index.ntotal} rows, not {record.source.get('rows')}. Rebuild it: {rebuild_command(source)}"
        )
    return SearchIndex(record, index)


def build_index(
    source: Path,
    plan: IndexPlan | None = None,
    target_recall: float = TARGET_RECALL,
    threads: int | None = None,
    seed: int = 0,
) -> IndexRecord:
    """Build, tune, measure and write the index of ``source`` (embeddings.h5) beside it.

    Args:
        source: a verified embeddings.h5 (checked against its sidecar first).
        plan: the index to build; None sizes it from N (``search.indexplan.plan_index``).
        target_recall: recall@10 the search parameter is tuned to reach.
        threads: faiss and exact-search threads; None uses every core this process may use.
        seed: for the training sample and the held-out queries.

    Returns:
        The record written to ``embeddings.faiss.json``.
    """
    digest = verified_digest(source)
    _faiss().omp_set_num_threads(threads or available_cores())
    started = time.monotonic()
    with VectorFile(source) as vectors:
        plan = plan or plan_index(vectors.rows, vectors.dim)
        log.info("building %s over %d x %d", plan.describe(), vectors.rows, vectors.dim)
        index = _filled_index(vectors, plan, seed)
        tuned, recall, queries = _tune_and_measure(index, plan, vectors, target_recall, threads, seed)
        record = IndexRecord(
            index_sha256="",
            kind=plan.kind,
            factory=plan.factory,
            faiss=_faiss().__version__,
            search_parameter=plan.search_parameter,
            search_value=tuned.value,
            candidates_per_k=tuned.factor,
            recall_at_10=round(recall, 4),
            recall_queries=queries,
            target_recall=target_recall,
            build_seconds=round(time.monotonic() - started, 1),
            source=_source_record(source, digest, vectors),
        )
    return _write(source, index, record)


def verified_digest(source: Path) -> str:
    """The SHA-256 of ``source``, re-hashed and checked against its sidecar.

    Raises:
        ConfigError: no sidecar, or a file that does not match it (damaged or replaced).
    """
    expected = source_digest(source)
    actual = atomic.sha256_file(source)
    if actual != expected:
        raise ConfigError(
            f"{source} has SHA-256 {actual[:12]}..., but its sidecar says {expected[:12]}...: the file is "
            f"damaged or was replaced; no index was built. Merge it again "
            f"({make_command('merge', RUN=source.parent)}) or fetch it again (make fetch)."
        )
    return actual


def _filled_index(vectors: VectorFile, plan: IndexPlan, seed: int) -> Any:
    faiss = _faiss()
    index = faiss.index_factory(vectors.dim, plan.factory, faiss.METRIC_INNER_PRODUCT)
    if plan.kind == "hnsw":
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if plan.train_rows:
        rows = np.sort(np.random.default_rng(seed).choice(vectors.rows, plan.train_rows, replace=False))
        index.train(_unit(vectors.take(rows), vectors.unit_norm))
    for lo in range(0, vectors.rows, ADD_ROWS):
        index.add(_unit(vectors.block(lo, min(lo + ADD_ROWS, vectors.rows)), vectors.unit_norm))
    return index


def _unit(block: np.ndarray, unit_norm: bool) -> np.ndarray:
    """``block`` as C-contiguous float32 rows of norm 1 (a copy where they are not already)."""
    if unit_norm:
        return np.ascontiguousarray(block, dtype=np.float32)
    return np.ascontiguousarray(block / np.linalg.norm(block, axis=1, keepdims=True), dtype=np.float32)


@dataclass(frozen=True)
class _Tuned:
    value: int  # efSearch or nprobe
    factor: int  # candidates per result
    recall: float  # on the tuning queries
    seconds: float  # to search them all


def _tune_and_measure(
    index: Any, plan: IndexPlan, vectors: VectorFile, target: float, threads: int | None, seed: int
) -> tuple[_Tuned, float, int]:
    """(setting kept, its recall@10 on other held-out queries, how many of them).

    For each candidate factor, the first parameter value whose recall@10 on the tuning queries
    reaches ``target``; of those, the fastest (measured) is kept; where none reaches it, the best.
    """
    tune = held_out_queries(vectors, TUNE_QUERIES, seed)
    truth = exact_search(vectors, tune, 10, threads)
    tried = [
        _first_reaching(index, plan, factor, vectors, tune, truth, target)
        for factor in plan.candidate_factors
    ]
    reached = [t for t in tried if t.recall >= target]
    kept = min(reached, key=lambda t: t.seconds) if reached else max(tried, key=lambda t: t.recall)
    report = held_out_queries(vectors, REPORT_QUERIES, seed + 1)
    found = _search(index, (plan.search_parameter, kept.value), kept.factor, vectors, report, 10)
    return kept, recall_at_k(found, exact_search(vectors, report, 10, threads)), len(report)


def _first_reaching(
    index: Any,
    plan: IndexPlan,
    factor: int,
    vectors: VectorFile,
    queries: np.ndarray,
    truth: Hits,
    target: float,
) -> _Tuned:
    """The smallest parameter value reaching ``target`` with ``factor`` (else the largest), timed."""
    for value in plan.parameter_values:
        started = time.perf_counter()
        found = _search(index, (plan.search_parameter, value), factor, vectors, queries, 10)
        tuned = _Tuned(value, factor, recall_at_k(found, truth), time.perf_counter() - started)
        log.info(
            "%s %d, %d candidates per result: recall@10 %.4f in %.2f s",
            plan.search_parameter,
            value,
            factor,
            tuned.recall,
            tuned.seconds,
        )
        if tuned.recall >= target:
            break
    return tuned


def _source_record(source: Path, digest: str, vectors: VectorFile) -> dict[str, Any]:
    """What the index indexes: the file, its SHA-256, its shape and its embedding identity."""
    identity = file_identity(source)
    return {
        "file": source.name,
        "sha256": digest,
        "rows": vectors.rows,
        "dim": vectors.dim,
        "dataset": vectors.dataset.name.lstrip("/"),
        "identity": {k: v for k, v in asdict(identity).items() if v is not None},
    }


def _write(source: Path, index: Any, record: IndexRecord) -> IndexRecord:
    """Write the index as .tmp, then its record and sidecar, then rename it: the index name comes last."""
    final = index_path(source)
    tmp = atomic.tmp_path(final)
    with atomic.removed_on_error(tmp):
        _faiss().write_index(index, str(tmp))
        record = replace(record, index_sha256=atomic.sha256_and_fsync(tmp))
        write_record(source, record)
        atomic.write_text(sidecar_path(final), sidecar_text(record.index_sha256, final))
        os.replace(tmp, final)
    atomic.fsync_dir(final.parent)
    log.info("wrote %s: %s", final, record.describe())
    return record
