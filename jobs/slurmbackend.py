"""The Slurm backend: array windows of shards, then afterok stages, through submitit.

One sbatch per window of at most MaxArraySize shards; a later stage waits with ``afterok`` on
every job given, and ``kill_on_invalid_dep`` cancels it instead of leaving it pending forever
when one fails. Tasks run as job steps (srun): only then does submitit's ``--signal=USR2@N``
reach them. Queries go through jobs/slurmcli.py.
"""

from __future__ import annotations

import logging
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import submitit

from jobs import slurmcli
from jobs.backend import Snapshot, StageRequest
from jobs.runstate import JobRecord
from jobs.tasks import MapTask, MergeTask, Requeue, ShardTask
from kit.errors import ConfigError
from kit.format import LOGS_DIR
from kit.shardfile import ShardSpec
from slurm.profiles import ClusterProfile, Resources, sbatch_parameters

log = logging.getLogger(__name__)
NO_TIMEOUT_CAP = 1_000_000  # submitit's max_num_timeout: the kit's Requeue decides instead


def windows(specs: Sequence[ShardSpec], max_array_size: int) -> list[list[ShardSpec]]:
    """Consecutive groups that each fit one array (indices 0..n-1 must stay below MaxArraySize)."""
    size = max(1, max_array_size)
    return [list(specs[i : i + size]) for i in range(0, len(specs), size)]


def afterok(job_ids: Sequence[str]) -> str | None:
    """``afterok:A:B`` over jobs submitted in this same call (never ones that left the queue)."""
    return "afterok:" + ":".join(job_ids) if job_ids else None


def job_name(run_dir: Path, stage: str) -> str:
    """``<run>-embed`` / ``<run>-merge``: readable in a plain squeue (quotes and spaces become _)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", Path(run_dir).name).strip("_") + f"-{stage}"


def stage_resources(profile: ClusterProfile, stage: str) -> Resources:
    return profile.embed if stage == "embed" else profile.merge


def executor(run_dir: Path, profile: ClusterProfile, stage: str, after: Sequence[str] = (),
             python: str | None = None) -> submitit.SlurmExecutor:
    res = stage_resources(profile, stage)
    ex = submitit.SlurmExecutor(folder=Path(run_dir) / LOGS_DIR, python=python or profile.python or sys.executable,
                                max_num_timeout=NO_TIMEOUT_CAP)
    ex.update_parameters(**sbatch_parameters(res, job_name(run_dir, stage), profile.setup))
    if after:
        extra = dict(ex.parameters.get("additional_parameters") or {})  # keeps --gpus and sbatch_extra
        ex.update_parameters(dependency=afterok(after),
                             additional_parameters={**extra, "kill-on-invalid-dep": "yes"})
    return ex


def render_sbatch(run_dir: Path, profile: ClusterProfile, stage: str, n_tasks: int, python: str,
                  after: Sequence[str] = ()) -> str:
    """The sbatch script submitit writes for a window of ``n_tasks`` shards (or another stage)."""
    from submitit.slurm.slurm import _make_sbatch_string  # what SlurmExecutor itself calls

    ex = executor(run_dir, profile, stage, after, python=python)
    extra: dict[str, Any] = {"map_count": n_tasks} if stage == "embed" and n_tasks > 1 else {}
    return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **ex.parameters, **extra)


@dataclass
class SlurmBackend:
    """Submits to the Slurm cluster this machine's commands talk to."""

    profile: ClusterProfile | None  # None: only to query and cancel (make status)
    name: str = "slurm"

    def log_folder(self, run_dir: Path) -> Path:
        return Path(run_dir) / LOGS_DIR

    def version(self) -> str:
        return slurmcli.version()

    def _record(self, stage: str, job_id: str, shards: Sequence[int] = ()) -> JobRecord:
        from embedder.run import now_iso

        # submitit sends a one-task window as a plain job, not an array
        return JobRecord(stage=stage, backend=self.name, job_id=str(job_id), host=socket.gethostname(),
                         profile=self.profile.name, shards=tuple(shards), submitted_at=now_iso(),
                         array=len(shards) > 1)

    def check(self, request: StageRequest) -> str:
        """``sbatch --test-only`` of each script this stage would submit; a rejection names the profile key."""
        n_tasks = len(request.shards) if request.stage == "embed" else 1
        sizes = [len(w) for w in windows(request.shards, slurmcli.max_array_size())] if n_tasks > 1 else [1]
        for size in dict.fromkeys(sizes):
            script = render_sbatch(request.run_dir, self.profile, request.stage, size, self.profile.python
                                   or sys.executable)
            error = slurmcli.test_only(script)
            res = stage_resources(self.profile, request.stage)
            if error and UNAVAILABLE in error and slurmcli.nodes_all_unavailable(res.partition):
                log.warning("every node of partition %s is drained or down now: the jobs will pend until they "
                            "return", res.partition or "(default)")
            elif error:
                raise ConfigError(rejection_message(self.profile, request.stage, error))
        res = stage_resources(self.profile, request.stage)
        return (f"{request.stage}: {len(sizes)} sbatch ({' + '.join(map(str, sizes))} tasks), partition "
                f"{res.partition or '(default)'}, {res.timeout_min} min per task")

    def submit(self, request: StageRequest, after: Sequence[JobRecord]) -> list[JobRecord]:
        after_ids = [j.job_id for j in after]
        if request.stage == "embed":
            return self._submit_embed(request, after_ids)
        ex = executor(request.run_dir, self.profile, request.stage, after_ids)
        if request.stage == "merge":
            job = ex.submit(MergeTask(), request.run_dir)
        else:
            job = ex.submit(MapTask(), request.run_dir, dict(request.options))
        return [self._record(request.stage, job.job_id)]

    def _submit_embed(self, request: StageRequest, after_ids: list[str]) -> list[JobRecord]:
        res = self.profile.embed
        requeue = Requeue(res.timeout_min, res.max_stalled_time_limits, res.max_requeues)
        records = []
        for window in windows(request.shards, slurmcli.max_array_size()):
            ex = executor(request.run_dir, self.profile, "embed", after_ids)
            n = len(window)
            jobs = ex.map_array(ShardTask(requeue), window, [request.run_dir] * n, [request.identity] * n,
                                [request.compute] * n)
            records.append(self._record("embed", str(jobs[0].job_id).split("_")[0], [s.index for s in window]))
        return records

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        ids = sorted({j.job_id for j in jobs if j.backend == self.name})
        if not ids:
            return Snapshot({})
        try:
            queued = slurmcli.queue(ids, retry_s)
            acct = slurmcli.accounting(ids, retry_s)
        except slurmcli.SchedulerUnreachable as err:
            return Snapshot({}, reachable=False, note=f"{err} States below come from the shard files only.")
        note = "" if acct is not None else "sacct is unavailable: ended jobs are judged from the shard files only."
        return Snapshot({**(acct or {}), **queued}, note=note)

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        slurmcli.cancel([j.job_id for j in jobs if j.backend == self.name])


UNAVAILABLE = "Requested node configuration is not available"


def rejection_message(profile: ClusterProfile, stage: str, error: str) -> str:
    """sbatch --test-only refused a script: Slurm's reason, and which profile keys decide what was asked."""
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    reasons = [ln.split("error:", 1)[1].strip() for ln in lines if "error:" in ln] or lines[-1:]
    table = "embed" if stage == "embed" else "merge"
    gpu = any(w in " ".join(reasons).lower() for w in ("gpu", "gres", "tres"))
    keys = "gpu_request (or gpus_per_task, gres)" if gpu else "partition, account, qos or sbatch_extra"
    return (f"Slurm would refuse the {stage} job of profile {profile.name!r}: {'; '.join(reasons)}\n"
            f"Nothing was queued. Change [{table}] {keys} in profile {profile.name}, then run the same "
            "command again.")
