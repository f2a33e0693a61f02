"""The array task: embed one or more shards of a run folder (model loaded once per task)."""

from __future__ import annotations

import dataclasses
import json
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
from embedder.prefetch import BackgroundWriter
from embedder.reuse import ShardReuse
from embedder.shard import ShardWriter
from kit.corpusfile import corpus_info, read_chunks
from kit.errors import ConfigError
from kit.format import CORPUS_FILE, MANIFEST
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


BF16_MIN_CAPABILITY = (8, 0)  # bfloat16 tensor cores: Ampere and newer; V100 (7.0) and T4 (7.5) have fp16 ones


def compute_dtype_for(device: str, requested: str | None, capability: tuple[int, int] | None = None) -> str:
    """The dtype a device computes in: the one asked for where the device supports it, else its default.

    On CUDA GPUs older than Ampere (``capability`` below 8.0) the default is float16: they have no
    bfloat16 tensor cores (rows that overflow in float16 are redone in float32).
    """
    if requested is None:
        if device == "cuda" and capability is not None and tuple(capability) < BF16_MIN_CAPABILITY:
            return "float16"
        return DEFAULT_COMPUTE_DTYPE.get(device, "float32")
    if device == "cpu" and requested == "float16":
        log.warning("compute dtype float16 is not supported on cpu; using float32")
        return "float32"
    return requested


def pinned_fingerprint(run_dir: Path, identity: EmbedIdentity) -> str | None:
    """The weights' fingerprint run.json pinned at submit for this model, or None (then the task hashes).

    Hashing multi-GB weights on shared storage takes minutes while the GPU idles; the merge checks
    every shard against the pinned value anyway.
    """
    try:
        data = json.loads((Path(run_dir) / MANIFEST).read_text())
        same = data["identity"]["model"] == identity.model and data["identity"].get("revision") == identity.revision
        return str(data["model_fingerprint"]) if same and data.get("model_fingerprint") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def prepare_cuda_allocator() -> None:
    """Expandable segments: fewer fragmentation out-of-memory errors with batches of varying shape.

    Read by the CUDA caching allocator when it starts, so set before the first CUDA tensor.
    """
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")


def task_cpus(environ: dict | None = None) -> int:
    """The cores this task may use: SLURM_CPUS_PER_TASK where Slurm sets it, else the affinity mask."""
    env = os.environ if environ is None else environ
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    given = env.get("SLURM_CPUS_PER_TASK", "")
    return min(int(given), cores) if given.isdigit() and int(given) > 0 else cores


def prepare_tokenizer_threads() -> None:
    """The tokenizer's thread pool (Rust, sized once, at its first use) gets the task's cores, not
    the node's: a 16-core slice of a 128-core node must not run 128 tokenizer threads."""
    os.environ.setdefault("RAYON_NUM_THREADS", str(task_cpus()))


class _LoadedModel:
    """The model, its encoder, the identity every shard it writes records, and how it computes."""

    def __init__(self, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
        resolved = model_lib.resolve_model(identity, compute.cache_dir)
        prepare_cuda_allocator()
        prepare_tokenizer_threads()
        self.device = model_lib.pick_device(compute.device)  # refuses a held GPU it cannot use: before loading
        capability = _capability(self.device)
        dtype = compute_dtype_for(self.device, compute.compute_dtype, capability)
        if compute.attention == "flash":
            from embedder.kernels import check_flash_attention

            check_flash_attention(self.device, dtype, compute.cache_dir, identity.model, capability)
        model = model_lib.load_model(resolved, identity, self.device, dtype, compute.attention)
        if compute.attention == "flash" and not getattr(model[0], "can_flatten_inputs", False):
            raise ConfigError(f"ATTENTION=flash: {identity.model!r} loaded without packed (padding-free) batches, "
                              "which would run padded flash attention with a host sync per layer. "
                              "Use ATTENTION=sdpa for this model.")
        self.max_tokens = compute.max_tokens_per_batch or DEFAULT_TOKENS_PER_BATCH.get(self.device, 8192)
        fallback = None
        if dtype != "float32":
            fallback = lambda: model_lib.load_model(resolved, identity, self.device, "float32")  # noqa: E731
        self.encoder = TextEncoder(model, prompt=model_lib.prompt_text(model, identity),
                                   normalize=identity.normalize_embeddings, max_tokens=self.max_tokens,
                                   fallback=fallback, pin_memory=compute.pin_memory)
        info = corpus_info(run_dir / CORPUS_FILE)
        fingerprint = pinned_fingerprint(run_dir, identity) or model_lib.weights_fingerprint(resolved.path)
        self.identity = {**vector_identity(model, identity, resolved.revision, fingerprint),
                         "corpus_fingerprint": info.fingerprint}
        self.execution = {"device": self.device, "compute_dtype": dtype, "max_tokens_per_batch": self.max_tokens,
                          "attention": model_lib.attention_description(model), "gpu": model_lib.gpu_name(self.device)}
        log.info("model %s (%s) on %s %s in %s, attention %s, dim %d", identity.model, resolved.revision, self.device,
                 self.execution["gpu"], dtype, self.execution["attention"], self.encoder.dim)


def vector_identity(model, identity: EmbedIdentity, revision: str, fingerprint: str) -> dict:
    """What a loaded model makes of a text, as the shard identity keys (all but the corpus's).

    The one place that says it: the shards record it, and REUSE compares an earlier file with it.
    """
    return {"model": identity.model, "model_revision": revision, "model_fingerprint": fingerprint,
            "dim": int(model.get_embedding_dimension()), "dtype": "float32",
            "pooling": model_lib.pooling_description(model), "normalize_embeddings": identity.normalize_embeddings,
            "prompt": model_lib.prompt_text(model, identity), "max_seq_length": int(model.max_seq_length)}


def _capability(device: str) -> tuple[int, int] | None:
    import torch

    return tuple(torch.cuda.get_device_capability()) if device == "cuda" else None


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
    t0, cpu0 = time.monotonic(), time.process_time()
    provenance = {"host": socket.gethostname(), "device": loaded.device, "started_at": now_iso(),
                  "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", "")}
    writer = ShardWriter(shard_path(run, spec.index), spec, loaded.identity, {**provenance, **loaded.execution})
    counters = loaded.encoder.counters
    before = dataclasses.replace(counters)
    reuse = None
    try:
        reuse = ShardReuse.of(run, spec, loaded.identity)  # REUSE=: rows whose vectors are copied from an earlier file
        with tqdm(total=spec.rows, initial=writer.rows_done, desc=f"shard {spec.index:05d}", unit="doc",
                  file=sys.stderr, mininterval=5, dynamic_ncols=False, ascii=True) as bar:
            chunks = read_chunks(run / CORPUS_FILE, spec.start + writer.rows_done, spec.stop, compute.flush_rows)
            chunks = reuse.to_compute(chunks) if reuse else chunks

            def append(start: int, emb, ids) -> None:
                writer.append(emb, ids)
                log.info("%s: flushed rows [%d, %d)", spec.describe(), start, start + len(emb))

            with BackgroundWriter(append) as background:  # a chunk's flushes overlap the next one's compute
                for start, ids, emb in loaded.encoder.encode_chunks(chunks, on_batch=bar.update):
                    if reuse:
                        computed = len(emb)
                        ids, emb = reuse.fill(start, ids, emb)
                        bar.update(len(ids) - computed)  # the copied rows
                    background.put(start, emb, ids)
        seconds = time.monotonic() - t0
        header = writer.commit({
            "finished_at": now_iso(),
            "encode_seconds": float(writer.h5.attrs.get("encode_seconds", 0.0)) + seconds,
            "encode_cpu_seconds": float(writer.h5.attrs.get("encode_cpu_seconds", 0.0)) + time.process_time() - cpu0,
            **counters.added_to(writer.h5.attrs, before),
            **{key: _used(writer.h5.attrs.get(key), value) for key, value in loaded.execution.items()},
            "max_tokens_per_batch_settled": int(loaded.encoder.lowest_tokens),
            **(reuse.shard_attrs(writer.h5.attrs) if reuse else {}),
        })
    finally:
        writer.close()
        if reuse:
            reuse.close()
    log.info("%s: complete in %.1f s (%.0f docs/s), %d truncated, %d out-of-memory splits", spec.describe(),
             seconds, (spec.rows - writer.resumed_from) / max(seconds, 1e-9), header.attrs["truncated_rows"],
             header.attrs["oom_splits"])
    return ShardResult(spec.index, str(header.path), "done", spec.rows, writer.resumed_from, seconds)

