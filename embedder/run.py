"""The array task: embed one or more shards of a run folder (model loaded once per task)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm import tqdm

from embedder import model as model_lib
from embedder.config import (
    DEFAULT_COMPUTE_DTYPE,
    DEFAULT_TOKENS_PER_BATCH,
    ComputeSettings,
    EmbedIdentity,
)
from embedder.encode import TextEncoder
from embedder.shard import ShardWriter
from kit.corpusfile import corpus_info, read_chunks
from kit.format import CORPUS_FILE
from kit.shardfile import ShardSpec, done_shards, shard_path

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


def compute_dtype_for(device: str, requested: str | None) -> str:
    """The dtype a device computes in: the one asked for where the device supports it, else its default."""
    if requested is None:
        return DEFAULT_COMPUTE_DTYPE.get(device, "float32")
    if device == "cpu" and requested == "float16":
        log.warning("compute dtype float16 is not supported on cpu; using float32")
        return "float32"
    return requested


class _LoadedModel:
    """The model, its encoder, the identity every shard it writes records, and how it computes."""

    def __init__(self, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
        resolved = model_lib.resolve_model(identity, compute.cache_dir)
        self.device = model_lib.pick_device(compute.device)
        dtype = compute_dtype_for(self.device, compute.compute_dtype)
        if compute.attention == "flash":
            from embedder.kernels import check_flash_attention

            check_flash_attention(self.device, dtype, compute.cache_dir, identity.model)
        model = model_lib.load_model(resolved, identity, self.device, dtype, compute.attention)
        self.max_tokens = compute.max_tokens_per_batch or DEFAULT_TOKENS_PER_BATCH.get(self.device, 8192)
        fallback = None
        if dtype != "float32":
            fallback = lambda: model_lib.load_model(resolved, identity, self.device, "float32")  # noqa: E731
        self.encoder = TextEncoder(model, prompt=model_lib.prompt_text(model, identity),
                                   normalize=identity.normalize_embeddings, max_tokens=self.max_tokens,
                                   fallback=fallback, pin_memory=compute.pin_memory)
        info = corpus_info(run_dir / CORPUS_FILE)
        self.identity = {
            "model": identity.model, "model_revision": resolved.revision,
            "model_fingerprint": model_lib.weights_fingerprint(resolved.path), "dim": self.encoder.dim,
            "dtype": "float32", "pooling": model_lib.pooling_description(model),
            "normalize_embeddings": identity.normalize_embeddings, "prompt": self.encoder.prompt,
            "max_seq_length": int(model.max_seq_length), "corpus_fingerprint": info.fingerprint,
        }
        self.execution = {"device": self.device, "compute_dtype": dtype, "max_tokens_per_batch": self.max_tokens,
                          "attention": model_lib.attention_description(model)}
        log.info("model %s (%s) on %s in %s, attention %s, dim %d", identity.model, resolved.revision, self.device,
                 dtype, self.execution["attention"], self.encoder.dim)


def load_model_for(run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings) -> _LoadedModel:
    """The model as the tasks load it (also used to embed the map's questions)."""
    return _LoadedModel(Path(run_dir), identity, compute)


def embed_shards(specs: list[ShardSpec], run_dir: Path, identity: EmbedIdentity,
                 compute: ComputeSettings) -> list[ShardResult]:
    """Embed every shard in ``specs`` that is not complete yet; complete shards are never redone."""
    _setup_logging()
    run = Path(run_dir)
    done = done_shards(run)
    results, todo = [], []
    for spec in specs:
        if spec.index in done:
            path = shard_path(run, spec.index)
            log.info("%s: complete, skipped (%s)", spec.describe(), path.name)
            results.append(ShardResult(spec.index, str(path), "skipped", spec.rows))
        else:
            todo.append(spec)
    if todo:
        loaded = _LoadedModel(run, identity, compute)
        results += [_embed_one(spec, run, compute, loaded) for spec in todo]
    return sorted(results, key=lambda r: r.index)


def embed_shard(spec: ShardSpec, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings) -> ShardResult:
    """One shard (the function a Slurm array task runs)."""
    return embed_shards([spec], run_dir, identity, compute)[0]


def _used(prior: object, now: object) -> str:
    """What a resumed shard used across its attempts: ``bfloat16`` or ``bfloat16,float32``."""
    seen = [v for v in str(prior or "").split(",") if v]
    return ",".join(dict.fromkeys([*seen, str(now)]))


def _embed_one(spec: ShardSpec, run: Path, compute: ComputeSettings, loaded: _LoadedModel) -> ShardResult:
    t0 = time.monotonic()
    provenance = {"host": socket.gethostname(), "device": loaded.device, "started_at": now_iso(),
                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    writer = ShardWriter(shard_path(run, spec.index), spec, loaded.identity, {**provenance, **loaded.execution})
    counters = loaded.encoder.counters
    before = dataclasses.replace(counters)
    try:
        with tqdm(total=spec.rows, initial=writer.rows_done, desc=f"shard {spec.index:05d}", unit="doc",
                  file=sys.stderr, mininterval=5, dynamic_ncols=False, ascii=True) as bar:
            chunks = read_chunks(run / CORPUS_FILE, spec.start + writer.rows_done, spec.stop, compute.flush_rows)
            for start, ids, emb in loaded.encoder.encode_chunks(chunks, on_batch=bar.update):
                writer.append(emb, ids)
                log.info("%s: flushed rows [%d, %d)", spec.describe(), start, start + len(emb))
        seconds = time.monotonic() - t0
        header = writer.commit({
            "finished_at": now_iso(),
            "encode_seconds": float(writer.h5.attrs.get("encode_seconds", 0.0)) + seconds,
            **counters.added_to(writer.h5.attrs, before),
            **{key: _used(writer.h5.attrs.get(key), value) for key, value in loaded.execution.items()},
            "max_tokens_per_batch_settled": int(loaded.encoder.max_tokens),
        })
    finally:
        writer.close()
    log.info("%s: complete in %.1f s (%.0f docs/s), %d truncated, %d out-of-memory splits", spec.describe(),
             seconds, (spec.rows - writer.resumed_from) / max(seconds, 1e-9), header.attrs["truncated_rows"],
             header.attrs["oom_splits"])
    return ShardResult(spec.index, str(header.path), "done", spec.rows, writer.resumed_from, seconds)

