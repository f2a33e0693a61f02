"""make plan and make submit check every script with sbatch --test-only before queueing anything."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import cli_args, jobs_cli
from tests.slurm.conftest import REFUSING_PARTITION, profile_with, selected_cluster

PROFILE = selected_cluster().profile


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    yield slurm_cluster


def my_jobs() -> set[str]:
    return set(
        subprocess.run(["squeue", "-h", "--me", "-o", "%i"], capture_output=True, text=True).stdout.split()
    )


def test_plan_prints_the_windows_and_queues_nothing(tmp_path, vital_jsonl, model_path):
    corpus, _ = vital_jsonl(14)
    before = my_jobs()
    out = jobs_cli(
        *cli_args(
            "plan", run=tmp_path / "planned", profile=PROFILE, corpus=corpus, model=model_path, shards=7
        )
    ).stdout
    assert "nothing was queued" in out and "shards: 7 planned, 7 to embed" in out
    assert "embed: 2 sbatch (5 + 2 tasks)" in out and "merge: 1 sbatch" in out
    assert not my_jobs() - before and not (tmp_path / "planned" / "logs").exists()


@pytest.mark.parametrize("form,partition", REFUSING_PARTITION.items())
def test_a_gpu_form_the_site_refuses_is_refused_before_queueing_naming_the_key(
    tmp_path, vital_jsonl, model_path, form, partition
):
    corpus, _ = vital_jsonl(4)
    before = my_jobs()
    proc = jobs_cli(
        *cli_args(
            "submit",
            run=tmp_path / "refused",
            profile=profile_with(tmp_path, partition=f'"{partition}"', gpu_request=f'"{form}"'),
            corpus=corpus,
            model=model_path,
        ),
        check=False,
    )
    assert proc.returncode == 2 and "Nothing was queued" in proc.stderr
    assert (
        f"site policy: partition {partition} refuses" in proc.stderr and "[embed] gpu_request" in proc.stderr
    )
    assert not my_jobs() - before and not (tmp_path / "refused" / "logs").exists()
