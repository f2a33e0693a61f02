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
from embedder.config import ComputeSettings, EmbedIdentity
from embedder.loader import compute_dtype_for, load_encoder, with_pinned
from embedder.prefetch import BackgroundWriter
from embedder.reuse import ShardReuse
from embedder.shard import ShardWriter
from kit.corpusfile import corpus_info, read_chunks
from kit.format import RunPaths
from kit.shardfile import ShardIdentity, ShardSpec, done_shards, shard_path

__all__ = ["ShardResult", "compute_dtype_for", "embed_shard", "embed_shards", "now_iso", "pinned_identity"]

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
        logging.basicConfig(
            stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )


def now_iso() -> str:
    """The current UTC time in ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def pinned_identity(run_dir: Path, identity: EmbedIdentity) -> ShardIdentity | None:
    """What run.json pinned at submit for this model (weights' fingerprint, prompt, token limit), or None.

    The task trusts it rather than hashing multi-GB weights on shared storage while the GPU idles; the
    merge checks every shard against it anyway. An older run.json pins only the fingerprint.
    """
    try:
        data = json.loads(RunPaths.of(run_dir).manifest.read_text())
        same = (
            data["identity"]["model"] == identity.model
            and data["identity"].get("revision") == identity.revision
        )
        if not same:
            return None
        if data.get("pinned"):
            return ShardIdentity.from_attrs(data["pinned"])
        fingerprint = data.get("model_fingerprint")
        return (
            ShardIdentity(model=identity.model, model_fingerprint=str(fingerprint)) if fingerprint else None
        )
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
    """The encoder as run.json pinned it, and the identity every shard it writes records."""

    def __init__(self, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
        prepare_cuda_allocator()
        prepare_tokenizer_threads()
        pinned = pinned_identity(run_dir, identity)
        loaded = load_encoder(with_pinned(identity, pinned), compute)
        self.encoder, self.device, self.execution = loaded.encoder, loaded.device, loaded.execution
        fingerprint = pinned.model_fingerprint if pinned and pinned.model_fingerprint else None
        if fingerprint is None:  # a run folder made without make submit (library use): hash once here
            log.info("run.json pins no weights fingerprint; hashing %s", loaded.resolved.path)
            fingerprint = model_lib.weights_fingerprint(loaded.resolved.path)
        info = corpus_info(RunPaths.of(run_dir).corpus)
        self.identity = loaded.shard_identity(fingerprint, info.fingerprint)


def embed_shards(
    specs: list[ShardSpec], run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings
) -> list[ShardResult]:
    """Embed every shard in ``specs`` that is not complete yet; complete shards are never redone."""
    _setup_logging()
    run = RunPaths.of(run_dir).root
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


def embed_shard(
    spec: ShardSpec, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings
) -> ShardResult:
    """One shard (the function a Slurm array task runs)."""
    return embed_shards([spec], run_dir, identity, compute)[0]


def _used(prior: object, now: object) -> str:
    """What a resumed shard used across its attempts: ``bfloat16`` or ``bfloat16,float32``."""
    seen = [v for v in str(prior or "").split(",") if v]
    return ",".join(dict.fromkeys([*seen, str(now)]))


def _embed_one(spec: ShardSpec, run: Path, compute: ComputeSettings, loaded: _LoadedModel) -> ShardResult:
    t0, cpu0 = time.monotonic(), time.process_time()
    provenance = {
        "host": socket.gethostname(),
        "device": loaded.device,
        "started_at": now_iso(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
    }
    writer = ShardWriter(
        shard_path(run, spec.index), spec, loaded.identity, {**provenance, **loaded.execution}
    )
    counters = loaded.encoder.counters
    before = dataclasses.replace(counters)
    reuse = None
    try:
        reuse = ShardReuse.of(
            run, spec, loaded.identity.to_attrs()
        )  # REUSE=: rows whose vectors are copied from an earlier file
        with tqdm(
            total=spec.rows,
            initial=writer.rows_done,
            desc=f"shard {spec.index:05d}",
            unit="doc",
            file=sys.stderr,
            mininterval=5,
            dynamic_ncols=False,
            ascii=True,
        ) as bar:
            chunks = read_chunks(
                RunPaths.of(run).corpus, spec.start + writer.rows_done, spec.stop, compute.flush_rows
            )
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
        header = writer.commit(
            {
                "finished_at": now_iso(),
                "encode_seconds": float(writer.h5.attrs.get("encode_seconds", 0.0)) + seconds,
                "encode_cpu_seconds": float(writer.h5.attrs.get("encode_cpu_seconds", 0.0))
                + time.process_time()
                - cpu0,
                **counters.added_to(writer.h5.attrs, before),
                **{key: _used(writer.h5.attrs.get(key), value) for key, value in loaded.execution.items()},
                "max_tokens_per_batch_settled": int(loaded.encoder.lowest_tokens),
                **(reuse.shard_attrs(writer.h5.attrs) if reuse else {}),
            }
        )
    finally:
        writer.close()
        if reuse:
            reuse.close()
    log.info(
        "%s: complete in %.1f s (%.0f docs/s), %d truncated, %d out-of-memory splits",
        spec.describe(),
        seconds,
        (spec.rows - writer.resumed_from) / max(seconds, 1e-9),
        header.attrs["truncated_rows"],
        header.attrs["oom_splits"],
    )
    return ShardResult(spec.index, str(header.path), "done", spec.rows, writer.resumed_from, seconds)
