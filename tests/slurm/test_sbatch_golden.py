"""The sbatch scripts the testcluster profile generates, pinned (UPDATE_GOLDEN=1 rewrites them)."""

import os
from pathlib import Path

import pytest

from jobs.slurmjobs import render_sbatch
from slurm.profiles import load_profile

GOLDEN = Path(__file__).parent / "golden"
RUN = Path("/scratch/lab runs/it's \"wiki\"")  # spaces and quotes on purpose


@pytest.mark.parametrize("stage,n_tasks", [("embed", 5), ("merge", 1)])
def test_testcluster_sbatch_script_is_pinned(stage, n_tasks):
    text = render_sbatch(RUN, load_profile("testcluster"), stage, n_tasks, python="/opt/embedkit/.venv/bin/python")
    golden = GOLDEN / f"testcluster_{stage}.sbatch"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert "srun --unbuffered" in text  # tasks are job steps: USR2 reaches them
