"""GPU request as site policy, on the selected test cluster (Slurm 22.05 or 26.05).

Each form a profile's [embed] gpu_request can choose is submitted as the kit submits it and runs
with its GPU; the test clusters' partitions that refuse a form (slurm/testcluster/job_submit.lua)
refuse it already at ``sbatch --test-only``, so nothing is queued, and accept the other forms.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from slurm.cluster import executor, render_sbatch
from slurm.profiles import GPU_REQUEST_FORMS, load_profile, with_overrides
from tests.slurm.conftest import REFUSING_PARTITION


def gpus_on_node() -> str:
    """Runs in the job step: how many GPUs Slurm gave it."""
    return os.environ.get("SLURM_GPUS_ON_NODE", "none")


def sbatch_test_only(script_dir: Path, profile) -> subprocess.CompletedProcess:
    script = script_dir / f"{profile.embed.partition}-{profile.embed.gpu_request}.sbatch"
    script.write_text(render_sbatch(script_dir / "run", profile, "embed", 1, python=sys.executable))
    return subprocess.run(["sbatch", "--test-only", str(script)], capture_output=True, text=True, check=False)


@pytest.mark.parametrize("form", GPU_REQUEST_FORMS)
def test_each_gpu_request_form_is_accepted_and_its_job_gets_the_gpu(tmp_path, form, slurm_profile):
    profile = with_overrides(load_profile(slurm_profile), gpu_request=form)
    job = executor(tmp_path / "run", profile, "embed", python=sys.executable).submit(gpus_on_node)
    assert job.result() == str(profile.embed.gpus_per_task)


@pytest.mark.parametrize("form,partition", REFUSING_PARTITION.items())
def test_a_partition_refusing_a_form_refuses_it_at_test_only_and_takes_the_others(
    tmp_path, form, partition, slurm_profile, slurm_cluster
):
    profile = with_overrides(load_profile(slurm_profile), partition=partition)
    refused = sbatch_test_only(tmp_path, with_overrides(profile, gpu_request=form))
    assert refused.returncode == 1
    assert f"sbatch: error: site policy: partition {partition} refuses" in refused.stderr
    for other in set(GPU_REQUEST_FORMS) - {form}:
        accepted = sbatch_test_only(tmp_path, with_overrides(profile, gpu_request=other))
        assert accepted.returncode == 0, (
            f"Slurm {slurm_cluster.slurm}, {other} on {partition}: {accepted.stderr}"
        )
