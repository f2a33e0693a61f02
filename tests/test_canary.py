"""The canary check through the real CLI (local jobs, the real model): every shard also embeds the run's
canary texts; the merge refuses a shard whose canary vectors were computed differently, naming it and
what it ran on, and the repair it prints works; above the tolerance the spread is recorded.
"""

from __future__ import annotations

import json
import re
import subprocess

import h5py
import numpy as np

from tests.conftest import merged_records
from tests.helpers import REPO, assert_matches_direct_encode, cli_args, jobs_cli, make_cli


def quality(run) -> dict:
    with h5py.File(run / "embeddings.h5") as h5:
        return json.loads(h5.attrs["quality_metrics"])


def printed_repair(text: str) -> str:
    return re.search(r"^Run: (make .*)$", text, re.M)[1]


def test_a_shard_computed_in_bfloat16_is_recorded_then_refused_named_and_repaired_as_printed(
    copied_run, st_model
):
    run = copied_run  # 2 shards computed on this CPU in float32: bitwise-equal canaries
    assert quality(run)["canary_spread"] == 0.0
    # shard 1 again, in bfloat16: its canaries are at cosine ~0.99995 of the float32 ones, within 0.999
    out = jobs_cli(*cli_args("submit", run=run, redo=1, compute_dtype="bfloat16", wait=True)).stdout
    assert 0 < quality(run)["canary_spread"] < 1e-3
    assert "1 on cpu (node" in out and "in bfloat16" in out and "Canary: spread" in out, out
    # a stricter tolerance for the run (nothing to recompute): the merge now refuses the bfloat16 shard
    assert "Nothing to do" in jobs_cli(*cli_args("submit", run=run, canary_min_cosine=0.99999)).stdout
    refused = make_cli("merge", check=False, RUN=run)
    assert refused.returncode == 2 and "nothing was written" in refused.stderr
    shard_line = next(ln for ln in refused.stderr.splitlines() if ln.strip().startswith("shard-00001.h5"))
    assert "device cpu, bfloat16" in shard_line, refused.stderr
    assert (
        "Reference: shard-00000.h5 and 0 other shard(s)" in refused.stderr
        and "cpu, float32" in refused.stderr
    )
    repair = printed_repair(refused.stderr)
    assert repair == f"make submit RUN={run} REDO=1 COMPUTE_DTYPE=float32"
    subprocess.run(["bash", "-c", repair + " WAIT=1"], cwd=REPO, check=True, capture_output=True, text=True)
    assert quality(run)["canary_spread"] == 0.0 and quality(run)["canary_tolerance"] == 0.99999
    assert_matches_direct_encode(run, merged_records(), st_model)


def perturb(vectors: np.ndarray, cosine: float, seed: int = 0) -> np.ndarray:
    """Each row turned away from itself to exactly ``cosine``, its norm kept."""
    rng = np.random.default_rng(seed)
    out = np.empty_like(vectors)
    for i, v in enumerate(vectors.astype(np.float64)):
        unit = v / np.linalg.norm(v)
        away = rng.standard_normal(len(v))
        away -= away.dot(unit) * unit
        away /= np.linalg.norm(away)
        out[i] = np.linalg.norm(v) * (cosine * unit + np.sqrt(1 - cosine**2) * away)
    return out


def test_canary_rows_perturbed_at_cosine_0_99_are_refused_and_the_printed_resubmit_repairs(copied_run):
    run = copied_run
    shard = run / "shards" / "shard-00001.h5"
    with h5py.File(shard, "a") as h5:
        computed = h5["canary"][0]
        h5["canary"][0] = perturb(computed, 0.9995)  # within the tolerance: merged, the spread recorded
    make_cli("merge", RUN=run)
    assert abs(quality(run)["canary_spread"] - 0.0005) < 1e-5
    with h5py.File(shard, "a") as h5:
        h5["canary"][0] = perturb(computed, 0.99)
    refused = make_cli("merge", check=False, RUN=run)
    assert refused.returncode == 2
    assert re.search(
        r"shard-00001\.h5: lowest cosine 0\.99000\d, on node \S+, device cpu, float32", refused.stderr
    )
    repair = printed_repair(refused.stderr)
    assert repair == f"make resubmit RUN={run} REDO=1"  # same dtype: redo as the run computes
    subprocess.run(["bash", "-c", repair + " WAIT=1"], cwd=REPO, check=True, capture_output=True, text=True)
    assert quality(run)["canary_spread"] == 0.0 and quality(run)["canary_shards_checked"] == 2
