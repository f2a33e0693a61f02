"""Build a run folder with synthetic shards (random unit vectors, no model): merge tests and benches."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from embedder.config import ComputeSettings, EmbedIdentity
from embedder.corpus import CorpusOptions, prepare
from embedder.shard import ShardWriter
from jobs import runstate
from jobs.plan import plan_shards
from jobs.runstate import CorpusRecord, RunState
from kit.corpusfile import corpus_info
from kit.format import RunPaths
from kit.shardfile import ShardIdentity, ShardSpec, shard_path

SYNTHETIC_MODEL = "synthetic/unit-vectors"


def synthetic_records(n_rows: int):
    for i in range(n_rows):
        yield {"id": f"doc-{i}", "title": f"Title {i}", "url": f"https://example.org/{i}", "text": f"text {i}"}


def identity(dim: int, fingerprint: str, **overrides) -> ShardIdentity:
    """The synthetic shards' identity (``overrides`` by field name, e.g. ``prompt="query: "``)."""
    base = ShardIdentity(model=SYNTHETIC_MODEL, model_revision="local", model_fingerprint="0" * 64, dim=dim,
                         pooling="Pooling(mean)", normalize_embeddings=False, prompt="", max_seq_length=256,
                         corpus_fingerprint=fingerprint)
    return replace(base, **overrides)


def vectors(start: int, stop: int, dim: int) -> np.ndarray:
    """Deterministic unit vectors for rows [start, stop) (row i seeds its own vector)."""
    out = np.empty((stop - start, dim), dtype=np.float32)
    for k, row in enumerate(range(start, stop)):
        v = np.random.default_rng(row).standard_normal(dim).astype(np.float32)
        out[k] = v / np.linalg.norm(v)
    return out


def write_shard(run_dir: Path, spec: ShardSpec, ident: ShardIdentity, block_rows: int = 4096, fast: bool = False) -> Path:
    """A complete shard for ``spec``; ``fast`` fills rows from one random block (benchmarks)."""
    writer = ShardWriter(shard_path(run_dir, spec.index), spec, ident, {"host": "synthetic"})
    rng = np.random.default_rng(spec.index)
    dim = int(ident.dim or 0)
    template = rng.standard_normal((block_rows, dim)).astype(np.float32) + 0.1 if fast else None
    for lo in range(spec.start, spec.stop, block_rows):
        hi = min(lo + block_rows, spec.stop)
        block = template[: hi - lo] if template is not None else vectors(lo, hi, dim)
        writer.append(block, [f"doc-{i}" for i in range(lo, hi)])
    header = writer.commit({"finished_at": "synthetic"})
    return header.path


def synthetic_run(run_dir: Path, n_rows: int, n_shards: int, dim: int = 16, fast: bool = False) -> RunState:
    """A run folder (run.json pinning the shards' identity, corpus.h5, complete shards) ready to merge."""
    paths = RunPaths.of(run_dir)
    prepare(synthetic_records(n_rows), paths.corpus, CorpusOptions(), "synthetic")
    info = corpus_info(paths.corpus)
    corpus = CorpusRecord(source="synthetic", rows=n_rows, source_rows=n_rows, rejected_rows=0,
                          fingerprint=info.fingerprint, options=CorpusOptions())
    shards = identity(dim, info.fingerprint)
    pinned = replace(shards, dim=None, pooling=None, corpus_fingerprint=None)  # as submit pins it
    state = RunState(identity=EmbedIdentity(model=SYNTHETIC_MODEL, max_seq_length=256), model_fingerprint="0" * 64,
                     corpus=corpus, plan=tuple(plan_shards(n_rows, n_shards)), requested_shards=n_shards,
                     compute=ComputeSettings(), created_at="synthetic", pinned=pinned)
    runstate.save(run_dir, state)
    for spec in state.plan:
        write_shard(run_dir, spec, shards, fast=fast)
    return state
