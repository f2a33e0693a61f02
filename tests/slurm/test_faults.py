"""Faults a real cluster brings, on the test cluster: many time limits, a late signal, a controller
outage, a drained node, and printed commands on paths with spaces."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from tests.helpers import cli_args, REPO, assert_matches_direct_encode, jobs_cli, task_log, wait_for
from tests.slurm.conftest import profile_with, selected_cluster

PROFILE = selected_cluster().profile
STARTED = "Starting with JobEnvironment"  # submitit's first line in a task's log, once per attempt


@pytest.fixture(scope="module", autouse=True)
def cluster(slurm_cluster):
    yield slurm_cluster


def jobs_of(run: Path) -> list[dict]:
    return json.loads((run / "run.json").read_text())["jobs"]


def sacct_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "JobID,State"], capture_output=True, text=True
    ).stdout
    states = dict(line.split("|")[:2] for line in out.splitlines() if "|" in line)
    return states.get(job_id, "").split()[0] if states.get(job_id) else ""


def in_queue(job_id: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True, text=True
    ).stdout.strip()


def submit(run: Path, corpus: Path, model: Path, *extra: str, profile: str | Path = PROFILE) -> None:
    jobs_cli(
        "submit",
        "--run",
        str(run),
        "--profile",
        str(profile),
        "--corpus",
        str(corpus),
        "--model",
        str(model),
        *extra,
    )


def both_logs(err_log: Path) -> str:
    """A task's .out and .err logs, interleaved by time (submitit logs to .out, the kit to .err)."""
    lines = []
    for path in (err_log.with_suffix(".out"), err_log):
        lines += path.read_text().splitlines() if path.exists() else []
    stamp = re.compile(r"(\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+)")
    return "\n".join(
        sorted((ln for ln in lines if stamp.search(ln)), key=lambda ln: stamp.search(ln)[1].replace("T", " "))
    )


def release_requeued(job_id: str, log: Path, attempts: int, timeout_s: float = 240) -> None:
    """Slurm holds a requeued job back for about two minutes (reason BeginTime): start it now, and
    return once attempt ``attempts + 1`` has begun (its log says so)."""
    deadline = time.monotonic() + timeout_s
    while both_logs(log).count(STARTED) <= attempts:
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} did not start again (state {in_queue(job_id)!r})")
        if in_queue(job_id) == "PENDING":
            subprocess.run(["scontrol", "update", f"jobid={job_id}", "StartTime=now"], capture_output=True)
        time.sleep(1)


def test_a_shard_needing_five_time_limits_finishes(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(240)
    run = tmp_path / "long shard"
    cancel_leftovers.append(run)
    # timeout_min <= 10: every USR2 counts as a time limit for submitit (past its "limit - 10 min" rule at
    # once), whose own default gives up after the third. The kit requeues while the shard makes progress.
    submit(
        run,
        corpus,
        model_path,
        "--shards",
        "1",
        "--flush-rows",
        "8",
        profile=profile_with(tmp_path, timeout_min=10),
    )
    job = jobs_of(run)[0]["job_id"]
    log, tmp = task_log(run, job), run / "shards" / "shard-00000.h5.tmp"
    for attempt in range(1, 6):

        def flushed_in_this_attempt(attempt: int = attempt) -> bool:
            text = both_logs(log)
            return text.count(STARTED) >= attempt and text.split(STARTED)[-1].count("flushed rows") >= 1

        wait_for(flushed_in_this_attempt, 300, f"attempt {attempt} to flush")
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        wait_for(
            lambda attempt=attempt: log.read_text().count("requeued after attempt") >= attempt,
            120,
            f"requeue {attempt}",
        )
        release_requeued(job, log, attempt)
    wait_for(
        lambda: (run / "embeddings.h5.sha256").exists() or not in_queue(job) and not tmp.exists(),
        900,
        "the shard and the merge",
    )
    wait_for(lambda: (run / "embeddings.h5.sha256").exists(), 300, "the merge")
    assert "timed-out too many times" not in log.read_text()
    with h5py.File(run / "shards" / "shard-00000.h5") as h5:
        assert h5.attrs["attempts"] >= 6
    assert_matches_direct_encode(run, records, st_model)
    status = jobs_cli("status", "--run", str(run)).stdout
    assert "Merged:" in status


def test_a_late_usr2_after_the_shard_is_committed_still_completes(
    tmp_path, vital_jsonl, model_path, cancel_leftovers
):
    corpus, _ = vital_jsonl(20)
    run = tmp_path / "late signal"
    cancel_leftovers.append(run)
    submit(run, corpus, model_path, "--shards", "1")
    job, merge = (j["job_id"] for j in jobs_of(run)[:2])
    final = run / "shards" / "shard-00000.h5"
    wait_for(final.exists, 600, "the shard file")
    subprocess.run(["scancel", "--signal=USR2", job], capture_output=True)  # right after the commit
    wait_for(lambda: not in_queue(job) and not in_queue(merge), 600, "the task and the merge to end")
    wait_for(lambda: sacct_state(job) == "COMPLETED" and sacct_state(merge) == "COMPLETED", 60, "accounting")
    assert (run / "embeddings.h5.sha256").exists()


class Controller:
    """Stop and start this cluster's slurmctld (the one in this root, found by its pid file)."""

    def pid_file(self) -> Path:
        config = subprocess.run(
            ["scontrol", "show", "config"], capture_output=True, text=True, check=True
        ).stdout
        return Path(re.search(r"^SlurmctldPidFile\s*=\s*(\S+)", config, re.M)[1])

    def stop(self) -> None:
        self._pid_file = self.pid_file()
        pid = int(self._pid_file.read_text().split()[0])
        os.kill(pid, 15)
        wait_for(
            lambda: subprocess.run(["scontrol", "ping"], capture_output=True).returncode != 0,
            60,
            "slurmctld to stop",
        )

    def start(self) -> None:
        subprocess.run(["slurmctld"], check=True)
        wait_for(
            lambda: subprocess.run(["scontrol", "ping"], capture_output=True).returncode == 0,
            60,
            "slurmctld to answer",
        )


def test_wait_and_status_ride_through_a_controller_outage(
    tmp_path, vital_jsonl, model_path, st_model, cancel_leftovers
):
    corpus, records = vital_jsonl(200)
    run = tmp_path / "outage"
    cancel_leftovers.append(run)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "EMBEDKIT_PROGRESS_S": "2"}
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jobs",
            *cli_args(
                "submit",
                run=run,
                profile=PROFILE,
                corpus=corpus,
                model=model_path,
                shards=2,
                flush_rows=16,
                wait=True,
            ),
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for(
        lambda: (run / "shards").exists() and any((run / "shards").glob("*.tmp")), 300, "a shard to start"
    )
    controller = Controller()
    controller.stop()
    try:
        t0 = time.monotonic()
        status = jobs_cli("status", "--run", str(run), env={"EMBEDKIT_SCHEDULER_RETRY_S": "5"})
        assert (
            status.returncode == 0 and "did not answer" in status.stdout and "shard-00000.h5" in status.stdout
        )
        time.sleep(max(0.0, 30 - (time.monotonic() - t0)))
        assert waiting.poll() is None  # still waiting, 30 s into the outage
    finally:
        controller.start()
    out, err = waiting.communicate(timeout=900)
    assert waiting.returncode == 0, out + err
    assert "Slurm controller unreachable" in err and "Merged 200 rows x 384" in out
    assert_matches_direct_encode(run, records, st_model)


def node_names() -> list[str]:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout
    return sorted(set(out.split()))


def test_status_gives_pending_reasons_and_tells_cancelled_before_start(
    tmp_path, vital_jsonl, model_path, cancel_leftovers
):
    corpus, _ = vital_jsonl(6)
    run = tmp_path / "drained"
    cancel_leftovers.append(run)
    nodes = ",".join(node_names())  # every node: no task may start anywhere
    subprocess.run(["scontrol", "update", f"nodename={nodes}", "state=drain", "reason=kit test"], check=True)
    try:
        submit(run, corpus, model_path, "--shards", "3")
        time.sleep(5)  # a scheduling pass gives the pending reason
        status = jobs_cli("status", "--run", str(run)).stdout
        shard_lines = [ln for ln in status.splitlines() if ln.startswith("  shard-")]
        assert len(shard_lines) == 3 and all(" pending  (task " in ln for ln in shard_lines), status
        assert all(re.search(r"\(task \S+; [A-Za-z].+\)$", ln) for ln in shard_lines), status  # a reason each
        subprocess.run(["scancel", jobs_of(run)[0]["job_id"]], check=True)
        wait_for(lambda: not in_queue(jobs_of(run)[0]["job_id"]), 60, "the cancel")
        status = jobs_cli("status", "--run", str(run)).stdout
        assert status.count("cancelled before it started") == 3, status
    finally:
        subprocess.run(["scontrol", "update", f"nodename={nodes}", "state=resume"], capture_output=True)


def test_printed_commands_work_as_printed_on_a_run_folder_with_spaces(
    tmp_path, vital_jsonl, model_path, cancel_leftovers
):
    corpus, _ = vital_jsonl(6)
    run = tmp_path / "lab runs" / "wiki ü run"
    cancel_leftovers.append(run)
    out = jobs_cli(
        *cli_args("submit", run=run, profile=PROFILE, corpus=corpus, model=model_path, shards=2)
    ).stdout
    busy = jobs_cli("submit", "--run", str(run), check=False).stderr
    commands = [m.group(0) for text in (out, busy) for m in re.finditer(r"make [a-z-]+ RUN=.*", text)]
    assert len(commands) >= 2 and all(f"RUN='{run}'" in c for c in commands), commands
    for command in commands:
        proc = subprocess.run(["bash", "-c", command], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and "shard-00000.h5" in proc.stdout, command + proc.stderr
    wait_for(lambda: (run / "embeddings.h5.sha256").exists(), 600, "the run")
