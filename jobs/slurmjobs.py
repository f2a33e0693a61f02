"""Slurm execution through submitit: array windows of shards, a dependent merge, scheduler queries.

One sbatch per window of at most MaxArraySize shards; the merge waits with ``afterok`` on every
window submitted now, and ``kill_on_invalid_dep`` cancels it instead of leaving it pending
forever when a task fails. Tasks run as job steps (srun): only then does submitit's
``--signal=USR2@N`` reach them (without ``B:`` the batch shell alone would get it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import submitit

from embedder.config import EmbedConfig, ShardSpec
from embedder.run import embed_shard
from kit.errors import ConfigError
from kit.format import LOGS_DIR
from slurm.profiles import ClusterProfile, sbatch_parameters

ENDED_OK = {"COMPLETED"}
ALIVE = {"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING",
         "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT", "SIGNALING"}


class ShardTask(submitit.helpers.Checkpointable):
    """The array task. On USR2 (preemption, time limit) submitit requeues it with the same
    arguments; the shard then resumes from the rows already flushed in its ``.tmp`` file."""

    def __call__(self, spec: ShardSpec, run_dir: str, config: EmbedConfig):
        return embed_shard(spec, run_dir, config)


def merge_task(run_dir: str) -> dict:
    from jobs.merging import merge_from_manifest

    return merge_from_manifest(Path(run_dir))


# ---------------------------------------------------------------- pure helpers


def parse_max_array_size(config_text: str) -> int:
    """MaxArraySize from ``scontrol show config`` output (Slurm's default is 1001)."""
    match = re.search(r"^MaxArraySize\s*=\s*(\d+)", config_text, flags=re.M)
    return int(match[1]) if match else 1001


def windows(specs: list[ShardSpec], max_array_size: int) -> list[list[ShardSpec]]:
    """Consecutive groups that each fit one array (indices 0..n-1 must stay below MaxArraySize)."""
    size = max(1, max_array_size)
    return [specs[i : i + size] for i in range(0, len(specs), size)]


def afterok(job_ids: list[str]) -> str | None:
    """``afterok:A:B`` over jobs submitted in this same call (never ones that left the queue)."""
    return "afterok:" + ":".join(job_ids) if job_ids else None


def job_name(run_dir: Path, stage: str) -> str:
    """``<run>-embed`` / ``<run>-merge``: readable in a plain squeue (quotes and spaces become _)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", run_dir.name).strip("_") + f"-{stage}"


# ---------------------------------------------------------------- scheduler edges


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise ConfigError(f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[-300:]}")
    return proc.stdout


def require_slurm() -> None:
    missing = [c for c in ("sbatch", "squeue", "scontrol") if shutil.which(c) is None]
    if missing:
        raise ConfigError(f"Slurm commands {', '.join(missing)} are not on PATH. On a machine without Slurm use "
                          "PROFILE=local.")


def max_array_size() -> int:
    return parse_max_array_size(_run(["scontrol", "show", "config"]))


def check_partitions(profile: ClusterProfile) -> None:
    """Every partition the profile names exists (one sinfo call), before the first sbatch."""
    known = set(_run(["sinfo", "-h", "-o", "%R"]).split())
    for stage, res in (("embed", profile.embed), ("merge", profile.merge)):
        if res.partition and res.partition not in known:
            raise ConfigError(f"Partition {res.partition!r} ([{stage}] in profile {profile.name}) does not exist. "
                              f"Choose from: {', '.join(sorted(known))}.")


def executor(run_dir: Path, profile: ClusterProfile, stage: str, python: str | None = None) -> submitit.SlurmExecutor:
    res = profile.embed if stage == "embed" else profile.merge
    ex = submitit.SlurmExecutor(folder=run_dir / LOGS_DIR, python=python or profile.python or sys.executable)
    ex.update_parameters(**sbatch_parameters(res, job_name(run_dir, stage), profile.setup))
    return ex


@dataclass(frozen=True)
class Submitted:
    stage: str
    job_id: str  # the array job id (A of A_i) or the merge job id
    shards: list[int]  # shard index of array task i, for i in order


def submit_embed(run_dir: Path, specs: list[ShardSpec], embed: EmbedConfig, profile: ClusterProfile) -> list[Submitted]:
    """One sbatch per window; returns each window's array job id and its shards."""
    out = []
    for window in windows(specs, max_array_size()):
        ex = executor(run_dir, profile, "embed")
        jobs = ex.map_array(ShardTask(), window, [str(run_dir)] * len(window), [embed] * len(window))
        array_id = str(jobs[0].job_id).split("_")[0]
        out.append(Submitted("embed", array_id, [s.index for s in window]))
    return out


def _after(ex: submitit.SlurmExecutor, job_ids: list[str], profile: ClusterProfile) -> None:
    """afterok on ``job_ids`` with kill_on_invalid_dep (cancelled, not stuck, if one fails); none if empty."""
    if job_ids:
        ex.update_parameters(dependency=afterok(job_ids),
                             additional_parameters={**profile.merge.sbatch_extra, "kill-on-invalid-dep": "yes"})


def submit_merge(run_dir: Path, after: list[Submitted], profile: ClusterProfile) -> Submitted:
    ex = executor(run_dir, profile, "merge")
    _after(ex, [s.job_id for s in after], profile)
    job = ex.submit(merge_task, str(run_dir))
    return Submitted("merge", str(job.job_id), [])


def map_task(run_dir: str, map_options: dict) -> dict:
    from jobs.merging import map_from_manifest

    return map_from_manifest(Path(run_dir), **map_options)


def submit_map(run_dir: Path, merge: Submitted, profile: ClusterProfile, map_options: dict) -> Submitted:
    """The map job, on the merge's resources, after the merge succeeded (afterok)."""
    ex = executor(run_dir, profile, "merge")
    ex.update_parameters(job_name=job_name(run_dir, "map"))
    _after(ex, [merge.job_id], profile)
    return Submitted("map", str(ex.submit(map_task, str(run_dir), map_options).job_id), [])


@dataclass(frozen=True)
class JobState:
    job_id: str  # A_i for array tasks
    state: str  # Slurm's state name, e.g. RUNNING, FAILED, CANCELLED
    reason: str  # squeue's reason (e.g. DependencyNeverSatisfied) or sacct's exit code


def queue_states(job_ids: list[str]) -> dict[str, JobState]:
    """The run's jobs still in the queue (array tasks expanded), from one squeue call.

    Asks for the user's jobs and filters here: ``squeue -j`` fails outright when a single id has
    already been forgotten by slurmctld (MinJobAge), which old runs always have.
    """
    if not job_ids:
        return {}
    wanted = set(job_ids)
    states = _parse_rows(_run(["squeue", "-h", "-r", "--me", "-o", "%i|%T|%r"]))
    return {k: v for k, v in states.items() if k.split("_")[0] in wanted or k in wanted}


def accounting_states(job_ids: list[str]) -> dict[str, JobState] | None:
    """One sacct call for all jobs of the run; None where accounting is unavailable."""
    if not job_ids or shutil.which("sacct") is None:
        return None
    proc = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(job_ids), "-o", "JobID,State,ExitCode"],
                          capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return None
    return _parse_rows(proc.stdout)


def _parse_rows(text: str) -> dict[str, JobState]:
    states = {}
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            states[parts[0]] = JobState(parts[0], parts[1].split()[0], parts[2] if len(parts) > 2 else "")
    return states


def cancel(job_ids: list[str]) -> None:
    if job_ids:
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)


def render_sbatch(run_dir: Path, profile: ClusterProfile, stage: str, n_tasks: int, python: str) -> str:
    """The sbatch script submitit would write for a window of ``n_tasks`` shards (or the merge)."""
    from submitit.slurm.slurm import _make_sbatch_string  # what SlurmExecutor itself calls

    ex = executor(run_dir, profile, stage, python=python)
    extra = {"map_count": n_tasks} if stage == "embed" and n_tasks > 1 else {}
    return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **ex.parameters, **extra)
