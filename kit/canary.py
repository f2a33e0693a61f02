"""Canary texts and the hardware a shard was computed on: the vocabulary the embed tasks, the merge
and make status share.

Every shard of a run also embeds the run's canary texts (a few corpus rows chosen once, at the first
submit, and recorded in run.json), each text alone in its own forward pass, so that no batch
neighbour or padding differs between shards. The vectors are kept in the shard's ``canary`` dataset,
one ``[texts, dim]`` block per kind of hardware the shard ran on. The merge compares every shard's
blocks with the run's reference and refuses a shard below ``min_cosine`` (docs/CLUSTER.md, "The
canary check"); on one kind of hardware the blocks are bitwise equal and the spread is exactly 0.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

from kit.format import CANARY_DATASET

DEFAULT_MIN_COSINE = 0.999  # vLLM's check_embeddings_close default (tol 1e-3): its embedding tests' bar
CANARY_TEXTS = 8  # texts per run (fewer in a corpus with fewer rows)
CANARY_CHARS = 2000  # a canary text is at most this long: run.json stays small
DIGEST_ATTR = "canary_sha256"  # shard attribute: which canary texts its ``canary`` dataset embeds
# The GPU type of the node a Slurm task runs on (its gres type, e.g. a100): set by slurm/tasks.py inside
# the job, read by embedder/hardware.py where no CUDA device names itself (the test clusters' placeholders).
GPU_TYPE_ENV = "EMBEDKIT_GPU_TYPE"
# Shard attributes that say where and how a shard was computed (joined with commas across attempts).
HARDWARE_KEYS = ("node", "gpu_index", "gpu_type", "gres_type", "device", "compute_dtype", "attention")


def canary_digest(texts: Sequence[str]) -> str:
    """SHA-256 over the canary texts in order: shards and run.json name their canary set by it."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8") + b"\x1e")
    return digest.hexdigest()


def canary_record(texts: Sequence[str], rows: Sequence[int], min_cosine: float) -> dict[str, Any]:
    """run.json's ``canary``: the texts, the corpus rows they come from, their digest and the tolerance."""
    return {
        "texts": list(texts),
        "rows": [int(r) for r in rows],
        "sha256": canary_digest(texts),
        "min_cosine": float(min_cosine),
    }


def canary_rows(n_rows: int, count: int = CANARY_TEXTS) -> list[int]:
    """``count`` corpus rows spread evenly over ``[0, n_rows)`` (all of them in a smaller corpus)."""
    if n_rows <= count:
        return list(range(n_rows))
    return sorted({int(i * n_rows / count) for i in range(count)})


def append_canary(h5: h5py.File, vectors: np.ndarray, digest: str) -> bool:
    """Keep ``vectors`` (float32 [texts, dim]) in the shard's ``canary`` dataset [blocks, texts, dim]
    unless a bitwise-equal block is there (a resumed shard on the same hardware). Returns whether a
    block was added."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if CANARY_DATASET not in h5 or h5.attrs.get(DIGEST_ATTR) != digest:
        if CANARY_DATASET in h5:
            del h5[CANARY_DATASET]  # another canary set (a re-planned run): its blocks cannot be compared
        h5.create_dataset(
            CANARY_DATASET, shape=(0, *vectors.shape), maxshape=(None, *vectors.shape), dtype="float32"
        )
        h5.attrs[DIGEST_ATTR] = digest
    blocks = h5[CANARY_DATASET]
    if blocks.shape[1:] != vectors.shape:
        raise ValueError(f"canary vectors {vectors.shape} do not fit the shard's {blocks.shape[1:]}")
    if any(np.array_equal(block, vectors) for block in blocks[:]):
        return False
    blocks.resize(blocks.shape[0] + 1, axis=0)
    blocks[-1] = vectors
    return True


def read_canary(h5: h5py.File) -> tuple[str | None, np.ndarray | None]:
    """(the canary digest, float32 [blocks, texts, dim]) of an open shard; (None, None) without canary."""
    if CANARY_DATASET not in h5:
        return None, None
    digest = h5.attrs.get(DIGEST_ATTR)
    return (digest.decode() if isinstance(digest, bytes) else digest), h5[CANARY_DATASET][:]


def _values(attrs: Mapping[str, Any], key: str) -> list[str]:
    return [v for v in str(attrs.get(key) or "").split(",") if v]


def gpu_label(attrs: Mapping[str, Any]) -> str:
    """What a shard ran on, short: ``a100`` (its GPU type), else its device (``cpu``)."""
    return ",".join(_values(attrs, "gpu_type")) or ",".join(_values(attrs, "device")) or "unknown"


def hardware_label(attrs: Mapping[str, Any]) -> str:
    """Where and how a shard was computed, from its attributes, e.g.
    ``node a100-2 GPU 1 (a100), device cpu, float32, sdpa``; several attempts' values comma-joined."""
    node, index = (
        ",".join(_values(attrs, "node") or _values(attrs, "host")),
        ",".join(_values(attrs, "gpu_index")),
    )
    where = f"node {node or 'unknown'}" + (f" GPU {index}" if index else "")
    gpu = ",".join(_values(attrs, "gpu_type"))
    how = [
        f"device {','.join(_values(attrs, 'device')) or 'unknown'}",
        ",".join(_values(attrs, "compute_dtype")),
    ]
    how += [",".join(_values(attrs, "attention"))] if _values(attrs, "attention") else []
    return f"{where}{f' ({gpu})' if gpu else ''}, " + ", ".join(p for p in how if p)


def hardware_mix(shard_attrs: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The kinds of hardware shards ran on: one entry per (GPU type, device, compute dtype), with its
    shard count and nodes, most shards first (embeddings.h5's ``hardware_mix``)."""
    kinds: dict[tuple[str, str, str], dict[str, Any]] = {}
    for attrs in shard_attrs:
        key = (
            gpu_label(attrs),
            ",".join(_values(attrs, "device")),
            ",".join(_values(attrs, "compute_dtype")),
        )
        kind = kinds.setdefault(
            key, {"gpu_type": key[0], "device": key[1], "compute_dtype": key[2], "shards": 0, "nodes": []}
        )
        kind["shards"] += 1
        kind["nodes"] = sorted({*kind["nodes"], *(_values(attrs, "node") or _values(attrs, "host"))})
    return sorted(kinds.values(), key=lambda k: (-k["shards"], k["gpu_type"]))


def describe_mix(mix: Sequence[Mapping[str, Any]]) -> str:
    """``4 shards on a100 (nodes a100-1, a100-2), 2 on v100 (node v100-1); computed on cpu, float32``, or
    where the kinds computed differently ``2 shards on cpu (node vm) in cpu, float32, 1 on cpu ... bfloat16``."""
    if not mix:
        return "no shard records its hardware"
    hows = {f"{k['device']}, {k['compute_dtype']}" for k in mix}
    parts = []
    for n, kind in enumerate(mix):
        nodes = kind["nodes"]
        where = f" ({'nodes' if len(nodes) > 1 else 'node'} {', '.join(nodes)})" if nodes else ""
        device = "" if kind["device"] == kind["gpu_type"] else f"{kind['device']}, "
        how = f" in {device}{kind['compute_dtype']}" if len(hows) > 1 else ""
        parts.append(f"{kind['shards']}{' shards' if n == 0 else ''} on {kind['gpu_type']}{where}{how}")
    return ", ".join(parts) + (f"; computed on {hows.pop()}" if len(hows) == 1 else "")


def mix_json(mix: Sequence[Mapping[str, Any]]) -> str:
    """``hardware_mix`` as stored in embeddings.h5 (JSON)."""
    return json.dumps(list(mix))
