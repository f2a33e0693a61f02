"""Several nodes with typed GPUs (slurm/testcluster: a100-1, a100-2, v100-1; two GPUs each, placeholders
that Slurm hands out by index): shards spread over the nodes, each on the GPU index Slurm gave its task;
a GPU type asked for in the profile; one node lost mid-run. On Slurm 22.05 and 26.05 (make test runs both).
"""

from __future__ import annotations

import json
import re
import subprocess
from datetime import datetime
from itertools import combinations
from pathlib import Path

import h5py
import pytest

from tests.helpers import (
    assert_matches_direct_encode,
    cli_args,
    jobs_cli,
    resumed_row,
    task_log,
    wait_for,
)
from tests.slurm.conftest import kill_node, node_types, profile_with, start_node, start_requeued_now

# A line each job prints before its task, from the batch script (not the kit): what Slurm gave it.
GIVEN = 'echo "slurm gave: node=$SLURMD_NODENAME cuda_visible_devices=${CUDA_VISIBLE_DEVICES-unset} tmpdir=$TMPDIR"'
GIVEN_RE = re.compile(r"slurm gave: node=(\S+) cuda_visible_devices=(\S+) tmpdir=(\S+)")


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    yield slurm_cluster


def run_jobs(run: Path) -> list[dict]:
    return json.loads((run / "run.json").read_text())["jobs"]


def shard_tasks(run: Path) -> dict[int, str]:
    """Shard index -> the Slurm id of its (latest) task: ``A_i`` in an array, the job id alone otherwise."""
    tasks = {}
    for job in run_jobs(run):
        for i, shard in enumerate(job["shards"]):
            tasks[shard] = f"{job['job_id']}_{i}" if job["array"] else job["job_id"]
    return tasks


def given(run: Path, task: str) -> tuple[str, str, str]:
    """(node, CUDA_VISIBLE_DEVICES, TMPDIR) as the task's batch script saw them (the last attempt's)."""
    found = GIVEN_RE.findall(task_log(run, task).with_suffix(".out").read_text())
    assert found, f"task {task} printed no 'slurm gave' line"
    return found[-1]


def shard_attrs(run: Path) -> dict[int, dict]:
    out = {}
    for path in sorted((run / "shards").glob("shard-*.h5")):
        with h5py.File(path) as h5:
            out[int(path.name[6:11])] = dict(h5.attrs)
    return out


def allocations(run: Path) -> dict[str, tuple[float, float, str]]:
    """Task -> (start, end, node) of its allocation, from sacct (the embed jobs of ``run``)."""
    ids = ",".join(j["job_id"] for j in run_jobs(run) if j["shards"])
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", ids, "-o", "JobID,Start,End,NodeList"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = (line.split("|") for line in out.split())
    return {task: (at(start), at(end), node) for task, start, end, node in rows}


def at(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def test_six_shards_spread_over_three_nodes_each_on_the_gpu_index_slurm_gave_it(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(36)
    run = tmp_path / "spread"
    cancel_leftovers.append(run)
    profile = profile_with(tmp_path, setup=(GIVEN,), array_parallelism=6)
    out = jobs_cli(
        *cli_args("submit", run=run, profile=profile, corpus=corpus, model=model_path, shards=6, wait=True)
    ).stdout
    types, attrs, tasks = node_types(), shard_attrs(run), shard_tasks(run)
    assert sorted(attrs) == list(range(6))
    for index, a in attrs.items():
        node, visible, tmpdir = given(run, tasks[index])
        assert (a["node"], a["gpu_index"], a["cuda_visible_devices"]) == (node, visible, visible), index
        assert a["gpu_type"] == types[node] and visible in ("0", "1")  # the node's own type; two GPUs each
        assert tmpdir.endswith(f"/nodes/{node}/tmp")  # scratch per node (the clusters' TaskProlog)
    assert len({a["node"] for a in attrs.values()}) >= 3
    held = allocations(run)  # when each task held its node and GPU, as Slurm's accounting says
    overlapping = [
        (i, j)
        for i, j in combinations(sorted(attrs), 2)
        if held[tasks[i]][2] == held[tasks[j]][2]
        and held[tasks[i]][0] < held[tasks[j]][1]
        and held[tasks[j]][0] < held[tasks[i]][1]
    ]
    assert overlapping, f"no two tasks ran at the same time on one node: {held}"
    assert all(attrs[i]["gpu_index"] != attrs[j]["gpu_index"] for i, j in overlapping)
    with h5py.File(run / "embeddings.h5") as h5:
        chunks = json.loads(h5.attrs["chunk_info"])
        quality = json.loads(h5.attrs["quality_metrics"])
    assert [(c["node"], c["gpu_index"], c["gpu_type"]) for c in chunks] == [
        (attrs[i]["node"], attrs[i]["gpu_index"], attrs[i]["gpu_type"]) for i in range(6)
    ]
    # All six computed on the CPU in float32 (the GPUs are placeholders): the canaries agree bit for bit.
    assert quality["canary_spread"] == 0.0 and quality["canary_shards_checked"] == 6
    hardware = next(line for line in out.splitlines() if line.startswith("Hardware: "))
    assert "on a100 (nodes a100-1, a100-2)" in hardware and "on v100 (node v100-1)" in hardware, hardware
    assert "Canary: spread 0 over 8 texts in 6 shards" in hardware
    assert "Hardware: " in jobs_cli("status", "--run", str(run)).stdout
    assert_matches_direct_encode(run, records, st_model)


def test_gpu_type_v100_lands_on_the_v100_node_and_a_type_no_node_has_is_refused_at_plan(
    tmp_path, vital_jsonl, model_path, cancel_leftovers
):
    corpus, _ = vital_jsonl(8)
    for key, value in (("gpu_type", '"h100"'), ("constraint", '"h100"')):
        refused = jobs_cli(
            *cli_args(
                "plan",
                run=tmp_path / f"no-{key}",
                profile=profile_with(tmp_path, **{key: value}),
                corpus=corpus,
                model=model_path,
            ),
            check=False,
        )
        assert refused.returncode == 2 and "Nothing was queued" in refused.stderr, refused.stderr
        assert "Change [embed] gpu_type or constraint" in refused.stderr
        assert "gpu:v100:2 with features v100" in refused.stderr  # what the partition offers instead
    run = tmp_path / "v100 only"
    cancel_leftovers.append(run)
    profile = profile_with(tmp_path, setup=(GIVEN,), gpu_type='"v100"', array_parallelism=2)
    jobs_cli(
        *cli_args("submit", run=run, profile=profile, corpus=corpus, model=model_path, shards=2, wait=True)
    )
    v100 = {node for node, kind in node_types().items() if kind == "v100"}
    attrs, tasks = shard_attrs(run), shard_tasks(run)
    assert len(attrs) == 2 and all(a["node"] in v100 and a["gpu_type"] == "v100" for a in attrs.values())
    assert all(given(run, tasks[i])[0] in v100 for i in attrs)
    script = (run / "logs" / f"{run_jobs(run)[0]['job_id']}_submission.sh").read_text()  # the embed array
    assert "#SBATCH --gres=gpu:v100:1\n" in script


def test_a_node_lost_mid_run_its_tasks_requeue_onto_the_others_and_resume(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(360)  # 120 rows a shard: seconds of work left after the first flush
    run = tmp_path / "node lost"
    cancel_leftovers.append(run)
    profile = profile_with(tmp_path, array_parallelism=3)  # a100-1 takes two tasks, a100-2 one
    jobs_cli(
        *cli_args("submit", run=run, profile=profile, corpus=corpus, model=model_path, shards=3, flush_rows=8)
    )
    shard_of = {t: i for i, t in shard_tasks(run).items()}

    def running_on() -> dict[str, str]:
        out = subprocess.run(
            ["squeue", "-h", "-r", "-j", run_jobs(run)[0]["job_id"], "-t", "RUNNING", "-o", "%i|%N"],
            capture_output=True,
            text=True,
        ).stdout
        return dict(line.split("|") for line in out.split())

    seen: dict[str, str] = {}

    def flushed_and_running() -> bool:  # a task with flushed rows, still running: its node is lost
        seen.clear()
        seen.update(running_on())
        logs = {t: task_log(run, t) for t in seen}
        return any(log.exists() and "flushed rows" in log.read_text() for log in logs.values())

    wait_for(flushed_and_running, 300, "a task to flush rows")
    where = dict(seen)
    first = next(t for t in where if "flushed rows" in task_log(run, t).read_text())
    victim = where[first]
    kill_node(victim)
    try:
        committed = {t for t in where if (run / "shards" / f"shard-{shard_of[t]:05d}.h5").exists()}
        assert first not in committed, f"task {first} committed its shard before {victim} was lost: more rows"
        lost = {t for t, node in where.items() if node == victim and t not in committed}
        # the other nodes' tasks went on; a task of the lost node that had ended before counts with them
        others = {t for t, node in where.items() if node and t not in lost}

        def released() -> bool:
            start_requeued_now(lost)
            return (run / "embeddings.h5.sha256").exists()

        wait_for(released, 600, "the lost tasks to run again elsewhere and the merge")
        status = jobs_cli("status", "--run", str(run)).stdout
    finally:
        start_node(victim)
    attrs = shard_attrs(run)
    for task in lost:  # finished elsewhere; a task lost before it wrote a row records only the new node
        nodes = attrs[shard_of[task]]["node"].split(",")
        assert victim not in nodes[1:] and nodes[-1] != victim, nodes
        line = next(ln for ln in status.splitlines() if ln.startswith(f"  shard-{shard_of[task]:05d}.h5"))
        assert f"node {victim} was lost (NODE_FAIL)" in line, status
    flushed_first = attrs[shard_of[first]]  # it had flushed rows when its node was lost
    assert flushed_first["node"].split(",")[0] == victim and flushed_first["attempts"] >= 2
    assert resumed_row(task_log(run, first).read_text()) > flushed_first["start"], "it did not resume"
    for task in others:  # the other nodes' tasks went on
        assert attrs[shard_of[task]]["node"] == where[task] and attrs[shard_of[task]]["attempts"] == 1
    assert_matches_direct_encode(run, records, st_model)
