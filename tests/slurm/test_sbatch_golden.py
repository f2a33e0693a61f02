"""The sbatch scripts the test cluster's profile generates, pinned, one per GPU request form, and
accepted as they are by the selected cluster's own ``sbatch --test-only`` (22.05 and 26.05).

A script is pinned once for every Slurm version, in golden/<name>; where a version needs other
output, golden/<release>/<name> (e.g. golden/26.05/...) pins that version's script instead.
UPDATE_GOLDEN=1 rewrites the file and fails the test, so that a rewrite is never a pass.
"""

import os
import subprocess
from pathlib import Path

import pytest

from slurm.cluster import render_sbatch
from slurm.profiles import load_profile, with_overrides

GOLDEN = Path(__file__).parent / "golden"
RUN = Path('/scratch/lab runs/it\'s "wiki"')  # spaces and quotes on purpose
CASES = [("embed", 5, "gres"), ("merge", 1, "gres"), ("embed", 5, "gpus-per-task"), ("embed", 1, "gpus")]


def golden_file(name: str, release: str) -> Path:
    specific = GOLDEN / release / name
    return specific if specific.exists() else GOLDEN / name


@pytest.mark.parametrize("stage,n_tasks,form", CASES)
def test_sbatch_script_is_pinned_and_this_slurm_accepts_it(stage, n_tasks, form, slurm_cluster):
    profile = with_overrides(load_profile(slurm_cluster.profile), gpu_request=form)
    text = render_sbatch(RUN, profile, stage, n_tasks, python="/opt/embedkit/.venv/bin/python")
    suffix = "" if form == "gres" else f"_{form}"
    golden = golden_file(f"{profile.name}_{stage}{suffix}.sbatch", slurm_cluster.slurm)
    if os.environ.get(
        "UPDATE_GOLDEN"
    ):  # rewrite, then fail: a rewritten file proves nothing until it is read
        golden.write_text(text)
        pytest.fail(f"rewrote {golden}: review `git diff {GOLDEN}`, then run again without UPDATE_GOLDEN")
    assert text == golden.read_text()
    assert "srun --unbuffered" in text  # tasks are job steps: USR2 reaches them
    proc = subprocess.run(["sbatch", "--test-only", str(golden)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"Slurm {slurm_cluster.slurm} refuses {golden.name}: {proc.stderr}"
