"""The array task: embed one or more shards of a run folder (model loaded once per task)."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from embedder import hardware
from embedder import model as model_lib
from embedder.canary import embed_canary
from embedder.config import ComputeSettings, EmbedIdentity
from embedder.identity import with_pinned
from embedder.loader import load_encoder
from embedder.prefetch import BackgroundWriter
from embedder.reuse import ShardReuse
from embedder.shard import ShardWriter
from kit.canary import append_canary, canary_digest
from kit.clock import now_iso
from kit.corpusfile import corpus_info, read_chunks
from kit.format import RunPaths
from kit.shardfile import COMMIT_ID, ShardIdentity, ShardSpec, done_shards, shard_path

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


PROGRESS_STEPS = 20  # a shard flushes at least this many times: make status and WAIT=1 see it move
MIN_FLUSH_ROWS = 8  # and never fewer rows a chunk (a tiny shard: every 8 rows)


def flush_rows_for(shard_rows: int, flush_rows: int) -> int:
    """Rows per flush of a shard: FLUSH_ROWS, or fewer in a small shard, so its progress shows in steps
    of about 5 % (a 1,000-row shard would otherwise flush once, at its end)."""
    return max(1, min(flush_rows, max(MIN_FLUSH_ROWS, -(-shard_rows // PROGRESS_STEPS))))


class _LoadedModel:
    """The encoder as run.json pinned it, the identity every shard it writes records, the hardware it
    runs on and its vectors of the run's canary texts (computed once per task)."""

    def __init__(
        self,
        run_dir: Path,
        identity: EmbedIdentity,
        compute: ComputeSettings,
        pinned: ShardIdentity | None,
        canary: tuple[str, ...] = (),
    ):
        prepare_cuda_allocator()
        prepare_tokenizer_threads()
        hardware.claim_scheduler_gpus()  # before CUDA starts: exactly the GPU the scheduler gave
        loaded = load_encoder(with_pinned(identity, pinned), compute)
        self.encoder, self.device, self.execution = loaded.encoder, loaded.device, loaded.execution
        self.hardware = hardware.describe(self.device, str(self.execution.get("gpu") or ""))
        self.canary, self.canary_digest = embed_canary(self.encoder, canary), canary_digest(canary)
        fingerprint = pinned.model_fingerprint if pinned and pinned.model_fingerprint else None
        if fingerprint is None:  # a run folder made without make submit (library use): hash once here
            log.info("run.json pins no weights fingerprint; hashing %s", loaded.resolved.path)
            fingerprint = model_lib.weights_fingerprint(loaded.resolved.path)
        info = corpus_info(RunPaths.of(run_dir).corpus)
        self.identity = loaded.shard_identity(fingerprint, info.fingerprint)


def embed_shards(
    specs: list[ShardSpec],
    run_dir: Path,
    identity: EmbedIdentity,
    compute: ComputeSettings,
    pinned: ShardIdentity | None = None,
    canary: tuple[str, ...] = (),
) -> list[ShardResult]:
    """Embed every shard in ``specs`` that is not complete yet; complete shards are never redone.

    ``canary``: run.json's canary texts; each shard also keeps their vectors (kit/canary.py).

    ``pinned``: what run.json pinned at submit (the weights' fingerprint, prompt text, token limit):
    the task trusts it rather than hashing multi-GB weights on shared storage while the GPU idles;
    the merge checks every shard against it anyway. None (library use): the weights are hashed here.
    """
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
        loaded = _LoadedModel(run, identity, compute, pinned, tuple(canary))
        results += [_embed_one(spec, run, compute, loaded) for spec in todo]
    return sorted(results, key=lambda r: r.index)


def _used(prior: object, now: object) -> str:
    """What a resumed shard used across its attempts: ``bfloat16`` or ``bfloat16,float32``."""
    seen = [v for v in str(prior or "").split(",") if v]
    return ",".join(v for v in dict.fromkeys([*seen, str(now)]) if v)


def _embed_one(spec: ShardSpec, run: Path, compute: ComputeSettings, loaded: _LoadedModel) -> ShardResult:
    t0, cpu0 = time.monotonic(), time.process_time()
    provenance = {
        "host": socket.gethostname(),
        "device": loaded.device,
        "started_at": now_iso(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
        **loaded.hardware,
    }
    writer = ShardWriter(
        shard_path(run, spec.index), spec, loaded.identity, {**provenance, **loaded.execution}
    )
    if loaded.canary is not None:
        append_canary(writer.h5, loaded.canary, loaded.canary_digest)
        writer.h5.flush()
    counters = loaded.encoder.counters
    before = dataclasses.replace(counters)
    reuse = None
    try:
        reuse = ShardReuse.of(run, spec, loaded.identity)  # REUSE=: rows copied from an earlier file
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
                RunPaths.of(run).corpus,
                spec.start + writer.rows_done,
                spec.stop,
                flush_rows_for(spec.rows, compute.flush_rows),
            )
            chunks = reuse.to_compute(chunks) if reuse else chunks

            def append(start: int, emb, ids, passages) -> None:
                writer.append(emb, ids, passages)  # passages: PASSAGES=1, else None
                log.info("%s: flushed rows [%d, %d)", spec.describe(), start, start + len(emb))

            with BackgroundWriter(append) as background:  # a chunk's flushes overlap the next one's compute
                for start, ids, emb, passages in loaded.encoder.encode_documents(chunks, on_batch=bar.update):
                    if reuse:
                        computed = len(emb)
                        ids, emb, passages = reuse.fill(start, ids, emb, passages)
                        bar.update(len(ids) - computed)  # the copied rows
                    background.put(start, emb, ids, passages)
        seconds = time.monotonic() - t0
        header = writer.commit(
            {
                "finished_at": now_iso(),
                COMMIT_ID: uuid.uuid4().hex,  # names this commit of the shard: the merge records which it took
                "encode_seconds": float(writer.h5.attrs.get("encode_seconds", 0.0)) + seconds,
                "encode_cpu_seconds": float(writer.h5.attrs.get("encode_cpu_seconds", 0.0))
                + time.process_time()
                - cpu0,
                **counters.added_to(writer.h5.attrs, before),
                **{
                    key: _used(writer.h5.attrs.get(key), value)
                    for key, value in {**loaded.execution, **loaded.hardware}.items()
                },
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
