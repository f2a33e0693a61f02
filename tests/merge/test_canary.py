"""The merge's canary check over synthetic shard files: the reference, the spread, the refusal and its repair."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from kit.canary import append_canary
from kit.shardfile import ShardHeader, ShardIdentity
from merge.canary import CanaryMismatchError, CanaryPolicy, check_canaries, pick_reference, refusal

A100_BF16 = {
    "node": "a100-1",
    "gpu_index": "0",
    "gpu_type": "NVIDIA A100-SXM4-80GB sm80",
    "gres_type": "a100",
    "device": "cuda",
    "compute_dtype": "bfloat16",
}
V100_FP16 = {
    "node": "v100-1",
    "gpu_index": "1",
    "gpu_type": "Tesla V100-SXM2-32GB sm70",
    "gres_type": "v100",
    "device": "cuda",
    "compute_dtype": "float16",
}


def canary(seed: int = 0, texts: int = 4, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((texts, dim)).astype(np.float32)


def turned(vectors: np.ndarray, cosine: float) -> np.ndarray:
    """Each row at exactly ``cosine`` from itself (a fixed other direction)."""
    out = []
    for v in vectors.astype(np.float64):
        unit = v / np.linalg.norm(v)
        away = np.roll(unit, 1) - np.roll(unit, 1).dot(unit) * unit
        away /= np.linalg.norm(away)
        out.append(np.linalg.norm(v) * (cosine * unit + np.sqrt(1 - cosine**2) * away))
    return np.array(out, dtype=np.float32)


def shard(folder: Path, index: int, blocks: list[np.ndarray], attrs: dict, digest: str = "d") -> ShardHeader:
    path = folder / f"shard-{index:05d}.h5"
    with h5py.File(path, "w") as h5:
        h5.attrs.update(attrs)
        for block in blocks:
            append_canary(h5, block, digest)
    return ShardHeader(path, index, index + 1, 1, 1, True, ShardIdentity(model="m"), dict(attrs))


def test_one_kind_of_hardware_gives_a_spread_of_exactly_zero(tmp_path):
    headers = [shard(tmp_path, i, [canary()], A100_BF16) for i in range(4)]
    report = check_canaries(headers, CanaryPolicy("d"))
    assert report.spread == 0.0 and not report.below and report.reference.name == "shard-00000.h5"
    assert report.quality()["canary_shards_checked"] == 4 and report.quality()["canary_texts"] == 4
    assert report.mix == [
        {
            "gpu_type": "NVIDIA A100-SXM4-80GB sm80",
            "device": "cuda",
            "compute_dtype": "bfloat16",
            "shards": 4,
            "nodes": ["a100-1"],
        }
    ]


def test_the_majority_is_the_reference_and_a_drifting_minority_within_tolerance_is_recorded(tmp_path):
    base = canary()
    headers = [shard(tmp_path, 0, [turned(base, 0.9995)], V100_FP16)]  # the first shard is the odd one
    headers += [shard(tmp_path, i, [base], A100_BF16) for i in (1, 2)]
    report = check_canaries(headers, CanaryPolicy("d"))
    assert report.reference.name == "shard-00001.h5" and not report.below
    assert report.spread == pytest.approx(0.0005, abs=1e-6)


def test_a_shard_below_the_tolerance_is_refused_naming_it_its_hardware_and_both_repairs(tmp_path):
    base = canary()
    headers = [shard(tmp_path, i, [base], A100_BF16) for i in (0, 1)]
    headers.append(shard(tmp_path, 2, [turned(base, 0.99)], V100_FP16))
    report = check_canaries(headers, CanaryPolicy("d"))
    assert [b.name for b, _ in report.below] == ["shard-00002.h5"]
    error = refusal(report, tmp_path / "my run")
    assert isinstance(error, CanaryMismatchError) and error.redo == {2}
    text = str(error)
    assert (
        "shard-00002.h5: lowest cosine 0.990000, on node v100-1 GPU 1 (Tesla V100-SXM2-32GB sm70), device cuda, float16"
        in text
    )
    assert (
        "Reference: shard-00000.h5 and 1 other shard(s) that agree with it, on node a100-1 GPU 0 (NVIDIA A100-SXM4-80GB sm80)"
        in text
    )
    assert "Run: make submit RUN='" in text and "REDO=2 COMPUTE_DTYPE=bfloat16" in text
    assert 'gpu_type = "a100" (or a constraint)' in text and "make resubmit RUN='" in text


def test_a_resumed_shard_keeps_one_block_per_kind_of_hardware_and_each_is_checked(tmp_path):
    base = canary()
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as h5:
        assert append_canary(h5, base, "d") and not append_canary(h5, base.copy(), "d")  # same hardware
        assert append_canary(h5, turned(base, 0.98), "d")  # resumed on another kind
        assert h5["canary"].shape == (2, 4, 8)
    headers = [
        shard(tmp_path, 0, [base], A100_BF16),
        shard(tmp_path, 1, [base, turned(base, 0.98)], A100_BF16),
    ]
    assert [b.name for b, _ in check_canaries(headers, CanaryPolicy("d")).below] == ["shard-00001.h5"]


def test_shards_without_the_runs_canary_are_named_unchecked(tmp_path):
    headers = [shard(tmp_path, 0, [canary()], A100_BF16), shard(tmp_path, 1, [], A100_BF16)]
    headers.append(shard(tmp_path, 2, [canary(1)], A100_BF16, digest="another set"))
    report = check_canaries(headers, CanaryPolicy("d"))
    assert report.unchecked == ["shard-00001.h5", "shard-00002.h5"] and report.spread == 0.0


def test_two_disagreeing_shards_take_the_first_as_the_reference(tmp_path):
    base = canary()
    headers = [shard(tmp_path, 0, [base], A100_BF16), shard(tmp_path, 1, [turned(base, 0.9)], V100_FP16)]
    report = check_canaries(headers, CanaryPolicy("d"))
    assert pick_reference([b for b, _ in report.cosines], 0.999).name == "shard-00000.h5"
    assert [b.name for b, _ in report.below] == ["shard-00001.h5"]
