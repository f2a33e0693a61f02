"""The merge's canary check: every shard's canary vectors against the run's reference.

Each shard keeps the vectors of the run's canary texts, one block per kind of hardware it ran on
(kit/canary.py). The reference is the block most shards agree with (bitwise equal, or above the
tolerance), ties going to the first shard: on a run computed on one kind of hardware every block is
bitwise equal and the spread is exactly 0. A shard with a block below ``min_cosine`` on any canary
text is refused, naming the hardware and dtype it and the reference ran on, and the repair (REDO with
the reference's dtype, or a ``gpu_type`` on a partition that mixes GPU types). Above it, the spread
(1 - the lowest cosine) goes into embeddings.h5's ``quality_metrics``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kit.canary import (
    DEFAULT_MIN_COSINE,
    describe_mix,
    hardware_label,
    hardware_mix,
    mix_json,
    read_canary,
)
from kit.commands import index_ranges, make_command
from kit.errors import ShardMismatchError
from kit.format import shard_index
from kit.h5files import open_h5
from kit.shardfile import ShardHeader

MAX_COMPARED_KINDS = 1000  # distinct canary blocks compared pairwise to find the reference; beyond: the first


class CanaryMismatchError(ShardMismatchError):
    """Shards' canary vectors disagree beyond the tolerance: they were computed differently."""


@dataclass(frozen=True)
class CanaryPolicy:
    """What run.json says of the canary check: the canary set every shard must have embedded, and the tolerance."""

    sha256: str | None = None  # the run's canary texts; None: the most common set among the shards
    min_cosine: float = DEFAULT_MIN_COSINE

    @classmethod
    def of(cls, record: Mapping[str, Any] | None) -> CanaryPolicy:
        """The policy of run.json's ``canary`` record (None: an older run.json; the shards decide)."""
        if not record:
            return cls()
        return cls(record.get("sha256"), float(record.get("min_cosine") or DEFAULT_MIN_COSINE))


@dataclass(frozen=True)
class Block:
    """One canary block of one shard: the vectors of the canary texts on one kind of hardware."""

    shard: ShardHeader
    vectors: np.ndarray  # float32 [texts, dim]

    @property
    def name(self) -> str:
        return self.shard.path.name


@dataclass
class CanaryReport:
    """What the check found: the reference, each block's lowest cosine to it, and the shards it could not check."""

    policy: CanaryPolicy
    reference: Block | None = None
    cosines: list[tuple[Block, float]] = field(default_factory=list)  # each block's lowest cosine
    unchecked: list[str] = field(default_factory=list)  # shards without the run's canary (older files)
    mix: list[dict[str, Any]] = field(default_factory=list)  # kit.canary.hardware_mix of every shard

    @property
    def below(self) -> list[tuple[Block, float]]:
        """Blocks under the tolerance, worst first."""
        return sorted(((b, c) for b, c in self.cosines if c < self.policy.min_cosine), key=lambda bc: bc[1])

    @property
    def spread(self) -> float | None:
        """1 - the lowest cosine of any block to the reference; exactly 0.0 when all are bitwise equal."""
        return max((max(0.0, 1.0 - c) for _, c in self.cosines), default=None)

    def quality(self) -> dict[str, Any]:
        """The canary's entries of embeddings.h5's ``quality_metrics``."""
        if self.reference is None:
            return {"canary_shards_checked": 0, "canary_unchecked_shards": self.unchecked}
        return {
            "canary_spread": self.spread,
            "canary_min_cosine": min(c for _, c in self.cosines),
            "canary_tolerance": self.policy.min_cosine,
            "canary_texts": int(self.reference.vectors.shape[0]),
            "canary_shards_checked": len({b.name for b, _ in self.cosines}),
            "canary_reference": self.reference.name,
            "canary_unchecked_shards": self.unchecked,
        }

    def attrs(self) -> dict[str, str]:
        """embeddings.h5 attributes: ``hardware_mix`` (JSON)."""
        return {"hardware_mix": mix_json(self.mix)}


def read_blocks(headers: Sequence[ShardHeader], policy: CanaryPolicy) -> tuple[list[Block], list[str]]:
    """Every canary block of the shards that embedded the run's canary set, and the names of those that did not."""
    found = []
    for header in headers:
        with open_h5(header.path) as h5:
            found.append((header, *read_canary(h5)))
    digests = Counter(d for _, d, b in found if b is not None and len(b))
    wanted = policy.sha256 or (digests.most_common(1)[0][0] if digests else None)
    blocks, unchecked = [], []
    for header, digest, vectors in found:
        if vectors is None or not len(vectors) or digest != wanted:
            unchecked.append(header.path.name)
        else:
            blocks += [Block(header, v) for v in vectors]
    return blocks, unchecked


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = vectors.astype(np.float64)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-300)


def lowest_cosine(block: np.ndarray, reference: np.ndarray) -> float:
    """The lowest cosine between ``block`` and ``reference`` over the canary texts; 1.0 when bitwise equal."""
    if np.array_equal(block, reference):
        return 1.0
    return float(np.einsum("kd,kd->k", _unit(block), _unit(reference)).min())


def pick_reference(blocks: Sequence[Block], min_cosine: float) -> Block:
    """The block most blocks agree with (bitwise equal, or at ``min_cosine`` or above), ties to the earliest."""
    kinds: dict[bytes, list[int]] = {}
    for i, block in enumerate(blocks):
        kinds.setdefault(np.ascontiguousarray(block.vectors).tobytes(), []).append(i)
    groups = list(kinds.values())  # in order of first appearance
    if len(groups) == 1 or len(groups) > MAX_COMPARED_KINDS:
        return blocks[groups[0][0]] if len(groups) == 1 else blocks[0]
    unit = _unit(np.stack([blocks[g[0]].vectors for g in groups]))  # [kinds, texts, dim]
    lowest = np.einsum("akd,bkd->abk", unit, unit).min(axis=2)  # [kinds, kinds]
    sizes = np.array([len(g) for g in groups])
    agree = ((lowest >= min_cosine) | np.eye(len(groups), dtype=bool)) @ sizes
    best = max(range(len(groups)), key=lambda g: (agree[g], sizes[g], -groups[g][0]))
    return blocks[groups[best][0]]


def check_canaries(headers: Sequence[ShardHeader], policy: CanaryPolicy) -> CanaryReport:
    """Compare every shard's canary blocks with the run's reference (no shard is refused here)."""
    blocks, unchecked = read_blocks(headers, policy)
    report = CanaryReport(policy, unchecked=unchecked, mix=hardware_mix(h.attrs for h in headers))
    if not blocks:
        return report
    report.reference = pick_reference(blocks, policy.min_cosine)
    reference = report.reference.vectors
    report.cosines = [(b, lowest_cosine(b.vectors, reference)) for b in blocks]
    return report


def refusal(report: CanaryReport, run_dir: Path) -> CanaryMismatchError:
    """The error naming the shards below the tolerance, what each and the reference ran on, and the repair."""
    assert report.reference is not None
    ref = report.reference.shard
    worst: dict[str, tuple[Block, float]] = {}
    for block, cosine in report.below:
        worst.setdefault(block.name, (block, cosine))
    bad = {i for name in worst if (i := shard_index(Path(name))) is not None}
    agreeing = len({b.name for b, c in report.cosines if c >= report.policy.min_cosine})
    lines = [
        "Merge refused; nothing was written:",
        f"  - Canary check: {len(worst)} shard(s) embed the run's {report.reference.vectors.shape[0]} canary "
        f"texts differently from the reference (cosine below {report.policy.min_cosine:g}). Reference: "
        f"{ref.path.name} and {agreeing - 1} other shard(s) that agree with it, on {hardware_label(ref.attrs)}.",
        *(
            f"    {name}: lowest cosine {cosine:.6f}, on {hardware_label(block.shard.attrs)}"
            for name, (block, cosine) in list(worst.items())[:8]
        ),
    ]
    if len(worst) > 8:
        lines.append(f"    ... and {len(worst) - 8} more shards")
    lines += _repairs(ref.attrs, [b.shard.attrs for b, _ in worst.values()], run_dir, bad)
    return CanaryMismatchError("\n".join(lines), redo=bad)


def _one(attrs: Mapping[str, Any], key: str) -> str:
    values = [v for v in str(attrs.get(key) or "").split(",") if v]
    return values[-1] if values else ""


def _repairs(
    reference: Mapping[str, Any], odd: list[Mapping[str, Any]], run_dir: Path, bad: set[int]
) -> list[str]:
    """REDO with the reference's compute dtype (where the odd shards used another), and on a partition
    that mixes GPU types the reference's ``gpu_type``."""
    redo = index_ranges(bad)
    lines = [f"Shards to recompute: {redo} (REDO moves their files to shards/rejected/)."]
    dtype = _one(reference, "compute_dtype")
    other_dtype = dtype and any(_one(a, "compute_dtype") != dtype for a in odd)
    if other_dtype:
        lines.append(f"Run: {make_command('submit', RUN=run_dir, REDO=redo, COMPUTE_DTYPE=dtype)}")
    else:
        lines.append(f"Run: {make_command('resubmit', RUN=run_dir, REDO=redo)}")
    gpu, gres = _one(reference, "gpu_type"), _one(reference, "gres_type")
    if gpu and any(_one(a, "gpu_type") != gpu for a in odd):
        ask = f'gpu_type = "{gres}" (or a constraint)' if gres else f"a gpu_type or constraint for {gpu}"
        lines.append(
            f"On a partition that mixes GPU types, ask for the reference's instead: {ask} in the [embed] "
            f"table of the run's profile, then: {make_command('resubmit', RUN=run_dir, REDO=redo)}"
        )
    return lines


def summary_line(quality: Mapping[str, Any], mix_text: str | None) -> str:
    """``Hardware: 6 shards on a100 (...); computed on cpu, float32. Canary: spread 0 over 8 texts in 6
    shards (tolerance 0.999)``: the summary's line of a merged file ("" for one merged without them)."""
    if mix_text is None:
        return ""
    line = f"Hardware: {describe_mix(json.loads(mix_text))}."
    if quality.get("canary_spread") is not None:
        line += (
            f" Canary: spread {quality['canary_spread']:.3g} over {quality['canary_texts']} texts in "
            f"{quality['canary_shards_checked']} shards (tolerance cosine {quality['canary_tolerance']:g})"
        )
    unchecked = quality.get("canary_unchecked_shards") or []
    if unchecked:
        line += f"; {len(unchecked)} shard(s) from before canaries were not checked"
    return line
