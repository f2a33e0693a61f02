"""SlurmBackend against fake sbatch/squeue/sacct/scontrol on PATH (subprocess level, no cluster):
array windows, afterok dependencies, parsing of states, refusals naming the profile table.

The real clusters test the same paths end to end in tests/slurm.
"""

from __future__ import annotations

import re

import pytest

from jobs.stages import STAGES
from kit.errors import ConfigError
from kit.shardfile import ShardSpec
from slurm.backend import JobRecord, StageRequest
from slurm.cluster import SlurmBackend, SlurmWatcher
from slurm.profiles import load_profile
from tests.fixtures.fakeslurm import FakeSlurm


def stage_request(run, name: str, shards: int = 0) -> StageRequest:
    stage = STAGES[name]
    specs = tuple(ShardSpec(i, i * 10, i * 10 + 10) for i in range(shards))
    return StageRequest(name, run, stage.task, stage.resources, stage.array, specs, {}, stage.progress)


@pytest.fixture
def backend() -> SlurmBackend:
    return SlurmBackend(profile=load_profile("testcluster"))


def test_an_array_stage_goes_in_windows_of_max_array_size_and_the_next_stage_after_all_of_them(
    tmp_path, monkeypatch, backend
):
    fake = FakeSlurm(tmp_path / "slurm", max_array_size=3).install(monkeypatch)
    run = tmp_path / "run"
    embed = backend.submit(stage_request(run, "embed", shards=5), after=[])
    merge = backend.submit(stage_request(run, "merge"), after=embed)

    assert [(j.job_id, j.shards, j.array) for j in embed] == [
        ("1001", (0, 1, 2), True),
        ("1002", (3, 4), True),
    ]
    assert [(j.stage, j.job_id, j.array, j.backend) for j in merge] == [("merge", "1003", False, "slurm")]
    first, second, last = fake.submitted_scripts()
    assert re.search(r"^#SBATCH --array=0-2%2$", first, re.M) and re.search(
        r"^#SBATCH --array=0-1%2$", second, re.M
    )
    assert "#SBATCH --job-name=run-embed" in first and "#SBATCH --partition=gpu" in first
    assert "#SBATCH --dependency=afterok:1001:1002" in last and "#SBATCH --kill-on-invalid-dep=yes" in last
    assert "--array" not in last and "#SBATCH --job-name=run-merge" in last
    assert embed[1].task_of(4) == "1002_1"


def test_check_runs_sbatch_test_only_and_a_refusal_names_the_stages_profile_table(
    tmp_path, monkeypatch, backend
):
    fake = FakeSlurm(tmp_path / "slurm").install(monkeypatch)
    run = tmp_path / "run"
    line = backend.check(stage_request(run, "map"))
    assert line.startswith("map: 1 sbatch (1 tasks), partition gpu, 30 min per task")
    assert "#SBATCH --job-name=run-map" in fake.calls("sbatch")[-1]["script"]
    fake.answer("test_only.err", "sbatch: error: Invalid generic resource (gres) specification\n")
    with pytest.raises(ConfigError) as err:
        backend.check(stage_request(run, "embed", shards=2))
    assert "refuse the embed job of profile 'testcluster'" in str(err.value)
    assert "Change [embed] gpu_request" in str(err.value) and "Nothing was queued" in str(err.value)


def record(job_id: str, shards: tuple[int, ...] = (), array: bool = False) -> JobRecord:
    return JobRecord(
        stage="embed",
        backend="slurm",
        job_id=job_id,
        host="h",
        profile="testcluster",
        shards=shards,
        array=array,
    )


def test_the_watcher_reads_squeue_and_sacct_in_one_call_each_and_cancels_with_scancel(tmp_path, monkeypatch):
    fake = FakeSlurm(tmp_path / "slurm").install(monkeypatch)
    fake.answer("squeue.out", "1001_[3-4]|PENDING|Dependency\n1001_2|RUNNING|None\n999|RUNNING|None\n")
    fake.answer(
        "sacct.out",
        "1001_0|COMPLETED|0:0|2026-12-02T10:00:00|n1\n1001_1|FAILED|1:0|2026-12-02T10:00:00|n1\n"
        "1002|CANCELLED by 0|0:0|Unknown|None assigned\n",
    )
    jobs = [
        record("1001", (0, 1, 2, 3, 4), array=True),
        record("1002"),
        JobRecord(stage="embed", backend="local", job_id="77", host="h", profile="local"),
    ]
    snap = SlurmWatcher().snapshot(jobs)
    states = {t: (s.state, s.reason, s.started) for t, s in snap.tasks.items()}
    assert states == {
        "1001_0": ("COMPLETED", "", True),
        "1001_1": ("FAILED", "exit 1:0", True),
        "1001_2": ("RUNNING", "", True),
        "1001_3": ("PENDING", "Dependency", True),
        "1001_4": ("PENDING", "Dependency", True),
        "1002": ("CANCELLED", "", False),
    }
    assert snap.reachable and snap.any_alive() and not snap.alive("1001_1")
    assert fake.calls("squeue")[0]["argv"] == ["squeue", "-h", "-r", "--me", "-o", "%i|%T|%r"]
    assert fake.calls("sacct")[0]["argv"][:6] == ["sacct", "-n", "-X", "-P", "-j", "1001,1002"]
    assert len(fake.calls("squeue")) == len(fake.calls("sacct")) == 1
    SlurmWatcher().cancel(jobs)
    assert fake.calls("scancel")[0]["argv"] == ["scancel", "1001", "1002"]  # never the local pid


def test_an_unknown_state_is_an_error_naming_the_command_and_the_line(tmp_path, monkeypatch):
    fake = FakeSlurm(tmp_path / "slurm").install(monkeypatch)
    fake.answer("squeue.out", "1001|WOBBLING|None\n")
    with pytest.raises(ConfigError) as err:
        SlurmWatcher().snapshot([record("1001")])
    assert "squeue printed a job state the kit does not know, 'WOBBLING'" in str(err.value)


def test_the_script_checked_at_plan_is_the_script_submitit_submits(tmp_path, monkeypatch, backend):
    """render_sbatch calls submitit's private _make_sbatch_string and _submitit_command_str: pinned here,
    so a submitit release that changes them fails this test instead of the plan checking another script."""
    fake = FakeSlurm(tmp_path / "slurm").install(monkeypatch)
    run = tmp_path / "run é"
    for name, shards in (("embed", 3), ("merge", 0)):
        request = stage_request(run, name, shards=shards)
        backend.check(request)
        checked = fake.calls("sbatch")[-1]["script"]
        backend.submit(request, after=[])
        submitted = fake.submitted_scripts()[-1]
        assert checked == submitted, f"{name}:\n{checked}\n---\n{submitted}"
