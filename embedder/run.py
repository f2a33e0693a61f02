"""The array task: embed one or more shards of a run folder (model loaded once per task)."""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from embedder import corpus, model as model_lib
from embedder.config import DEFAULT_TOKENS_PER_BATCH, EmbedConfig, ShardSpec
from embedder.encode import TextEncoder
from embedder.shard import ShardWriter, final_path
from kit.format import CORPUS_FILE, SHARDS_DIR

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardResult:
    index: int
    path: str
    status: str  # "done" (computed now) or "skipped" (already complete)
    rows: int
    resumed_from: int = 0
    seconds: float = 0.0


def _setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _LoadedModel:
    """The model, its encoder and the identity every shard it writes records."""

    def __init__(self, run_dir: Path, config: EmbedConfig):
        resolved = model_lib.resolve_model(config)
        self.device = model_lib.pick_device(config.device)
        dtype = config.compute_dtype if self.device != "cpu" or config.compute_dtype == "bfloat16" else "float32"
        if dtype != config.compute_dtype:
            log.warning("compute dtype %s is not supported on cpu; using float32", config.compute_dtype)
        model = model_lib.load_model(resolved, config, self.device, dtype)
        self.max_tokens = config.max_tokens_per_batch or DEFAULT_TOKENS_PER_BATCH.get(self.device, 8192)
        fallback = None
        if dtype != "float32":
            fallback = lambda: model_lib.load_model(resolved, config, self.device, "float32")  # noqa: E731
        self.encoder = TextEncoder(model, prompt=model_lib.prompt_text(model, config),
                                   normalize=config.normalize_embeddings,
                                   max_tokens=self.max_tokens, fallback=fallback)
        info = corpus.corpus_info(run_dir / CORPUS_FILE)
        self.identity = {
            "model": config.model, "model_revision": resolved.revision,
            "model_fingerprint": model_lib.weights_fingerprint(resolved.path), "dim": self.encoder.dim,
            "dtype": "float32", "compute_dtype": dtype, "pooling": model_lib.pooling_description(model),
            "normalize_embeddings": config.normalize_embeddings, "prompt": self.encoder.prompt,
            "max_seq_length": int(model.max_seq_length), "corpus_fingerprint": info.fingerprint,
        }
        log.info("model %s (%s) on %s in %s, dim %d", config.model, resolved.revision, self.device, dtype,
                 self.encoder.dim)


def embed_shards(specs: list[ShardSpec], run_dir: str, config: EmbedConfig) -> list[ShardResult]:
    """Embed every shard in ``specs`` that is not complete yet; complete shards are never redone."""
    _setup_logging()
    run = Path(run_dir)
    shards_dir = run / SHARDS_DIR
    results, todo = [], []
    for spec in specs:
        path = final_path(shards_dir, spec)
        if path.exists():
            log.info("%s: complete, skipped (%s)", spec.describe(), path.name)
            results.append(ShardResult(spec.index, str(path), "skipped", spec.rows))
        else:
            todo.append(spec)
    if todo:
        loaded = _LoadedModel(run, config)
        results += [_embed_one(spec, run, config, loaded) for spec in todo]
    return sorted(results, key=lambda r: r.index)


def embed_shard(spec: ShardSpec, run_dir: str, config: EmbedConfig) -> ShardResult:
    """One shard (the function a Slurm array task runs)."""
    return embed_shards([spec], run_dir, config)[0]


def _embed_one(spec: ShardSpec, run: Path, config: EmbedConfig, loaded: _LoadedModel) -> ShardResult:
    t0 = time.monotonic()
    provenance = {"host": socket.gethostname(), "device": loaded.device, "started_at": now_iso(),
                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    writer = ShardWriter(final_path(run / SHARDS_DIR, spec), spec, loaded.identity, provenance)
    before = (loaded.encoder.counters.truncated_rows, loaded.encoder.counters.recomputed_rows)
    try:
        with tqdm(total=spec.rows, initial=writer.rows_done, desc=f"shard {spec.index:05d}", unit="doc",
                  file=sys.stderr, mininterval=5, dynamic_ncols=False, ascii=True) as bar:
            for lo in range(writer.rows_done, spec.rows, config.flush_rows):
                hi = min(lo + config.flush_rows, spec.rows)
                rows = corpus.read_slice(run / CORPUS_FILE, spec.start + lo, spec.start + hi)
                writer.append(loaded.encoder.encode(rows["texts"], on_batch=bar.update), rows["ids"])
                log.info("%s: flushed rows [%d, %d)", spec.describe(), spec.start + lo, spec.start + hi)
        seconds = time.monotonic() - t0
        counters = loaded.encoder.counters
        prior = writer.h5.attrs
        header = writer.commit({
            "finished_at": now_iso(), "encode_seconds": float(prior.get("encode_seconds", 0.0)) + seconds,
            "truncated_rows": int(prior.get("truncated_rows", 0)) + counters.truncated_rows - before[0],
            "recomputed_rows": int(prior.get("recomputed_rows", 0)) + counters.recomputed_rows - before[1],
            "max_tokens_per_batch": loaded.max_tokens,
        })
    finally:
        writer.close()
    log.info("%s: complete in %.1f s (%.0f docs/s), %d truncated", spec.describe(), seconds,
             (spec.rows - writer.resumed_from) / max(seconds, 1e-9), header.attrs["truncated_rows"])
    return ShardResult(spec.index, str(header.path), "done", spec.rows, writer.resumed_from, seconds)
