"""Real jobs on the three-node test cluster: Slurm 22.05 (slurm/testcluster/setup.sh) or 26.05 (sid/), both run by make test."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import h5py
import pytest

from tests.helpers import (
    cli_args,
    REPO,
    assert_matches_direct_encode,
    jobs_cli,
    resumed_row,
    task_log,
    wait_for,
)
from tests.slurm.conftest import selected_cluster, start_requeued_now

PROFILE = selected_cluster().profile  # the host's cluster (22.05), or sid's (26.05): tests/slurm/conftest.py


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    """The selected test cluster must be up and of its Slurm version: fail loudly, never skip."""
    yield slurm_cluster


def run_jobs(run: Path) -> list[dict]:
    return json.loads((run / "run.json").read_text())["jobs"]


def queue_empty(run: Path) -> bool:
    ids = ",".join(j["job_id"] for j in run_jobs(run))
    return not subprocess.run(["squeue", "-h", "-j", ids], capture_output=True, text=True).stdout.strip()


def test_make_submit_on_the_cluster_matches_a_direct_encode(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(42)
    run = tmp_path / "cluster run"
    cancel_leftovers.append(run)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "RUN": str(run),
        "CORPUS": str(corpus),
        "MODEL": str(model_path),
        "SHARDS": "7",
        "PROFILE": PROFILE,
        "WAIT": "1",
        "MAP": "1",
    }
    proc = subprocess.run(
        ["make", "-s", "submit"], cwd=REPO, env=env, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Merged 42 rows x 384" in proc.stdout
    embeds = [j for j in run_jobs(run) if j["stage"] == "embed"]
    assert [len(j["shards"]) for j in embeds] == [5, 2]  # MaxArraySize=5: two windows, one sbatch each
    assert run_jobs(run)[-1]["stage"] == "map" and (run / "map.html").exists()  # third stage, afterok merge
    assert "map job" in jobs_cli("status", "--run", str(run)).stdout
    assert_matches_direct_encode(run, records, st_model)  # as a local run does (tests/test_end_to_end.py)
    squeue = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-o", "JobName", "-j", embeds[0]["job_id"]],
        capture_output=True,
        text=True,
    ).stdout
    assert "cluster_run-embed" in squeue


def failing_profile(tmp_path: Path, task: int) -> Path:
    """The testcluster profile with one array task that exits before it starts (a real FAILED task)."""
    text = (REPO / f"slurm/profiles/{PROFILE}.toml").read_text()
    line = f'  "if [ \\"${{SLURM_ARRAY_TASK_ID:-}}\\" = {task} ]; then echo broken node >&2; exit 3; fi",\n'
    path = tmp_path / "flaky.toml"
    path.write_text(text.replace("setup = [\n", "setup = [\n" + line, 1))
    return path


def test_failed_task_cancels_merge_then_resubmit_completes(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(30)
    run = tmp_path / "flaky run"  # a space: the printed repair command must quote it
    cancel_leftovers.append(run)
    jobs_cli(
        *cli_args(
            "submit", run=run, profile=failing_profile(tmp_path, 1), corpus=corpus, model=model_path, shards=3
        )
    )
    wait_for(lambda: queue_empty(run), 300, "the array to end and the merge to be cancelled")
    status = jobs_cli("status", "--run", str(run)).stdout
    failed = [ln for ln in status.splitlines() if ln.startswith("  shard-00001.h5")]
    assert failed and " failed  (task " in failed[0] and "FAILED exit 3:0" in failed[0], status
    assert "merge job" in status and "CANCELLED" in status
    assert f"Repair with: make resubmit RUN='{run}'" in status
    assert not (run / "embeddings.h5").exists()
    done = {i: (run / "shards" / f"shard-0000{i}.h5").stat().st_mtime_ns for i in (0, 2)}

    out = jobs_cli(*cli_args("resubmit", run=run, profile=PROFILE, wait=True)).stdout
    assert "Submitted 1 shard(s) (2 already complete)" in out and "embed: 1 shard(s) (shard-00001.h5)" in out
    assert_matches_direct_encode(run, records, st_model)
    assert {i: (run / "shards" / f"shard-0000{i}.h5").stat().st_mtime_ns for i in (0, 2)} == done


def start_run(run: Path, corpus: Path, model_path: Path, shards: int, cancel_leftovers: list) -> str:
    """Submit without waiting, flushing every 16 rows; returns the first embed job id."""
    cancel_leftovers.append(run)
    jobs_cli(
        *cli_args(
            "submit", run=run, profile=PROFILE, corpus=corpus, model=model_path, shards=shards, flush_rows=16
        )
    )
    return run_jobs(run)[0]["job_id"]


def test_preempted_task_is_requeued_and_resumes_from_flushed_rows(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(400)
    run = tmp_path / "preempted"
    job = start_run(
        run, corpus, model_path, 1, cancel_leftovers
    )  # one shard: submitit sends a plain job, not an array
    log = task_log(run, job)
    wait_for(lambda: log.exists() and log.read_text().count("flushed rows") >= 3, 300, "three flushes")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # what preemption / time limit sends

    def ended() -> bool:
        start_requeued_now([job])  # not two minutes' BeginTime
        return (run / "embeddings.h5").exists() or queue_empty(run)

    wait_for(ended, 600, "the requeued task and the merge")
    text = log.read_text()
    assert "Caught signal SIGUSR2" in text  # submitit's handler ran in the task (a job step)
    assert resumed_row(text) >= 48  # not from zero
    wait_for(lambda: (run / "embeddings.h5").exists(), 300, "the merge")
    assert_matches_direct_encode(run, records, st_model)
    with h5py.File(run / "shards" / "shard-00000.h5") as h5:
        assert h5.attrs["attempts"] == 2


def test_scancel_of_a_task_and_of_the_merge_then_resubmit_recovers(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(200)
    run = tmp_path / "cancelled"
    array = start_run(run, corpus, model_path, 2, cancel_leftovers)
    log = task_log(run, f"{array}_0")
    wait_for(lambda: log.exists() and "flushed rows" in log.read_text(), 300, "task 0 to flush")
    subprocess.run(["scancel", f"{array}_0"], check=True)
    wait_for(lambda: queue_empty(run), 300, "the run's jobs to end")
    assert "CANCELLED" in jobs_cli("status", "--run", str(run)).stdout

    jobs_cli("resubmit", "--run", str(run))  # the run's profile is remembered
    merge = run_jobs(run)[-1]
    assert merge["stage"] == "merge"
    subprocess.run(["scancel", merge["job_id"]], check=True)
    wait_for(lambda: queue_empty(run), 300, "the resubmitted shard")
    assert not (run / "embeddings.h5").exists()
    out = jobs_cli("resubmit", "--run", str(run), "--wait").stdout
    assert "Submitted 0 shard(s) (2 already complete)" in out  # only the merge, without a dependency
    assert_matches_direct_encode(run, records, st_model)


def test_submit_fails_before_any_sbatch_when_the_model_is_not_staged(tmp_path, vital_jsonl):
    corpus, _ = vital_jsonl(5)
    proc = jobs_cli(
        *cli_args(
            "submit",
            run=tmp_path / "r",
            profile=PROFILE,
            corpus=corpus,
            model="org/not-staged",
            cache_dir=tmp_path / "cache",
        ),
        check=False,
    )
    assert proc.returncode == 2 and "never download" in proc.stderr
    assert not (tmp_path / "r" / "logs").exists()
    proc = jobs_cli(*cli_args("stage-model", model="org/not-staged", profile=PROFILE), check=False)
    assert proc.returncode == 2 and "Could not download 'org/not-staged'" in proc.stderr


def test_jobs_slurm_has_forgotten_read_as_gone():
    from slurm.slurmcli import queue

    # squeue -j 999999 alone exits 1 ("Invalid job id"); a run's old ids must not break status or resubmit.
    assert subprocess.run(["squeue", "-h", "-j", "999999"], capture_output=True).returncode != 0
    assert queue(["999999"]) == {}
