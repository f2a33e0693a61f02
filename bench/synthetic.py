"""Build a run folder with synthetic shards (random unit vectors, no model): merge tests and benches."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from embedder.config import EmbedConfig, ShardSpec
from embedder.corpus import CorpusOptions, corpus_info, prepare
from embedder.shard import ShardWriter, final_path
from jobs import manifest as manifest_lib
from jobs.manifest import Manifest
from jobs.plan import plan_shards
from kit.format import CORPUS_FILE, SHARDS_DIR

SYNTHETIC_MODEL = "synthetic/unit-vectors"


def synthetic_records(n_rows: int):
    for i in range(n_rows):
        yield {"id": f"doc-{i}", "title": f"Title {i}", "url": f"https://example.org/{i}", "text": f"text {i}"}


def identity(dim: int, fingerprint: str, **overrides) -> dict:
    base = {"model": SYNTHETIC_MODEL, "model_revision": "local", "model_fingerprint": "0" * 64, "dim": dim,
            "dtype": "float32", "compute_dtype": "float32", "pooling": "Pooling(mean)",
            "normalize_embeddings": False, "prompt": "", "max_seq_length": 256, "corpus_fingerprint": fingerprint}
    return {**base, **overrides}


def vectors(start: int, stop: int, dim: int) -> np.ndarray:
    """Deterministic unit vectors for rows [start, stop) (row i seeds its own vector)."""
    out = np.empty((stop - start, dim), dtype=np.float32)
    for k, row in enumerate(range(start, stop)):
        v = np.random.default_rng(row).standard_normal(dim).astype(np.float32)
        out[k] = v / np.linalg.norm(v)
    return out


def write_shard(run_dir: Path, spec: ShardSpec, ident: dict, block_rows: int = 4096, fast: bool = False) -> Path:
    """A complete shard for ``spec``; ``fast`` fills rows from one random block (benchmarks)."""
    writer = ShardWriter(final_path(run_dir / SHARDS_DIR, spec), spec, ident, {"host": "synthetic"})
    rng = np.random.default_rng(spec.index)
    template = rng.standard_normal((block_rows, ident["dim"])).astype(np.float32) + 0.1 if fast else None
    for lo in range(spec.start, spec.stop, block_rows):
        hi = min(lo + block_rows, spec.stop)
        block = template[: hi - lo] if fast else vectors(lo, hi, ident["dim"])
        writer.append(block, [f"doc-{i}" for i in range(lo, hi)])
    header = writer.commit({"finished_at": "synthetic"})
    return header.path


def synthetic_run(run_dir: Path, n_rows: int, n_shards: int, dim: int = 16, fast: bool = False) -> Manifest:
    """A run folder (run.json, corpus.h5, complete shards) ready to merge."""
    prepare(synthetic_records(n_rows), run_dir / CORPUS_FILE, CorpusOptions(), "synthetic")
    info = corpus_info(run_dir / CORPUS_FILE)
    manifest = Manifest(embed=EmbedConfig(model=SYNTHETIC_MODEL), plan=plan_shards(n_rows, n_shards),
                        corpus={"source": "synthetic", "rows": n_rows, "source_rows": n_rows, "rejected_rows": 0,
                                "fingerprint": info.fingerprint, "text_fields": ["text"], "skip_bad_rows": False},
                        created_at="synthetic")
    manifest_lib.save(run_dir, manifest)
    for spec in manifest.plan:
        write_shard(run_dir, spec, identity(dim, info.fingerprint), fast=fast)
    return manifest
