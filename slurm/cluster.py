"""The Slurm backend: array windows of shards, then afterok stages, through submitit.

One sbatch per window of at most MaxArraySize shards; a later stage waits with ``afterok`` on
every job given, and ``kill_on_invalid_dep`` cancels it instead of leaving it pending forever
when one fails. Tasks run as job steps (srun): only then does submitit's ``--signal=USR2@N``
reach them. Queries go through slurm/slurmcli.py. ``SlurmWatcher`` needs no profile (make
status); ``SlurmBackend`` adds checking and submitting with one.
"""

from __future__ import annotations

import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Sequence

import submitit

from kit.errors import ConfigError, KitError
from kit.format import RunPaths
from kit.shardfile import ShardSpec
from slurm import slurmcli
from slurm.backend import JobRecord, Snapshot, StageRequest
from slurm.profiles import ClusterProfile, Resources, sbatch_parameters
from slurm.tasks import Requeue, ShardTask, StageTask

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
    return re.sub(r"[^A-Za-z0-9._-]+", "_", RunPaths.of(run_dir).root.name).strip("_") + f"-{stage}"


def stage_resources(profile: ClusterProfile, resources: str) -> Resources:
    """The profile table named by a stage's resources key ([embed] or [merge])."""
    res = getattr(profile, resources, None)
    if not isinstance(res, Resources):
        raise ConfigError(f"Profile {profile.name!r} has no [{resources}] resources table.")
    return res


def executor(
    run_dir: Path,
    profile: ClusterProfile,
    resources: str,
    after: Sequence[str] = (),
    python: str | None = None,
    name: str | None = None,
) -> submitit.SlurmExecutor:
    """A SlurmExecutor with the ``resources`` table of ``profile``; ``name``: the stage (default: the table)."""
    res = stage_resources(profile, resources)
    ex = submitit.SlurmExecutor(
        folder=RunPaths.of(run_dir).logs,
        python=python or profile.python or sys.executable,
        max_num_timeout=NO_TIMEOUT_CAP,
    )
    ex.update_parameters(**sbatch_parameters(res, job_name(run_dir, name or resources), profile.setup))
    if after:
        extra = dict(ex.parameters.get("additional_parameters") or {})  # keeps --gpus and sbatch_extra
        ex.update_parameters(
            dependency=afterok(after), additional_parameters={**extra, "kill-on-invalid-dep": "yes"}
        )
    return ex


def render_sbatch(
    run_dir: Path,
    profile: ClusterProfile,
    resources: str,
    n_tasks: int,
    python: str,
    after: Sequence[str] = (),
    name: str | None = None,
) -> str:
    """The sbatch script submitit writes for a window of ``n_tasks`` shards (an array when more than one)."""
    from submitit.slurm.slurm import _make_sbatch_string  # what SlurmExecutor itself calls

    ex = executor(run_dir, profile, resources, after, python=python, name=name)
    extra: dict[str, Any] = {"map_count": n_tasks} if n_tasks > 1 else {}
    return _make_sbatch_string(command=ex._submitit_command_str, folder=ex.folder, **ex.parameters, **extra)


@dataclass
class SlurmWatcher:
    """States and cancelling of the Slurm jobs of a run, through squeue, sacct and scancel."""

    name: str = "slurm"

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        ids = sorted({j.job_id for j in jobs if j.backend == self.name})
        if not ids:
            return Snapshot({})
        if not slurmcli.available():
            return Snapshot(
                {}, note="The Slurm commands are not on PATH here: Slurm jobs are judged from the files only."
            )
        try:
            queued = slurmcli.queue(ids, retry_s)
            acct = slurmcli.accounting(ids, retry_s)
        except slurmcli.SchedulerUnreachable as err:
            return Snapshot({}, reachable=False, note=f"{err} States below come from the shard files only.")
        note = (
            ""
            if acct is not None
            else "sacct is unavailable: ended jobs are judged from the shard files only."
        )
        return Snapshot(slurmcli.with_history(queued, acct), note=note)

    def in_this_terminal(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        return []  # batch jobs run on the cluster's nodes: a Ctrl-C here never reaches them

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        ids = [j.job_id for j in jobs if j.backend == self.name]
        if ids and slurmcli.available():
            slurmcli.cancel(ids)


@dataclass
class SlurmBackend(SlurmWatcher):
    """Submits to the Slurm cluster this machine's commands talk to, with a profile's resources."""

    profile: ClusterProfile | None = None

    def __post_init__(self) -> None:
        if self.profile is None:
            raise ConfigError(
                "SlurmBackend needs a profile to submit; SlurmWatcher reads and cancels without one."
            )

    @property
    def site(self) -> ClusterProfile:
        """The profile (never None once built)."""
        assert self.profile is not None
        return self.profile

    def version(self) -> str:
        return slurmcli.version()

    def _record(self, stage: str, job_id: str, shards: Sequence[int] = ()) -> JobRecord:
        # submitit sends a one-task window as a plain job, not an array
        return JobRecord.submitted_now(
            stage, self.name, job_id, self.site.name, shards, array=len(shards) > 1
        )

    def check(self, request: StageRequest) -> str:
        """``sbatch --test-only`` of each script this stage would submit; a rejection names the profile key."""
        n_tasks = len(request.shards) if request.array else 1
        sizes = [len(w) for w in windows(request.shards, slurmcli.max_array_size())] if n_tasks > 1 else [1]
        res = stage_resources(self.site, request.resources)
        for size in dict.fromkeys(sizes):
            script = render_sbatch(
                request.run_dir,
                self.site,
                request.resources,
                size,
                self.site.python or sys.executable,
                name=request.stage,
            )
            error = slurmcli.test_only(script)
            if error and UNAVAILABLE in error and slurmcli.nodes_all_unavailable(res.partition):
                log.warning(
                    "every node of partition %s is drained or down now: the jobs will pend until they return",
                    res.partition or "(default)",
                )
            elif error:
                raise ConfigError(rejection_message(self.site, request, error))
        return (
            f"{request.stage}: {len(sizes)} sbatch ({' + '.join(map(str, sizes))} tasks), partition "
            f"{res.partition or '(default)'}, {res.timeout_min} min per task"
        )

    def submit(self, request: StageRequest, after: Sequence[JobRecord]) -> list[JobRecord]:
        after_ids = [j.job_id for j in after]
        if request.array:
            return self._submit_array(request, after_ids)
        ex = executor(request.run_dir, self.site, request.resources, after_ids, name=request.stage)
        job = ex.submit(StageTask(request.task), request.run_dir, dict(request.options))
        return [self._record(request.stage, job.job_id)]

    def _submit_array(self, request: StageRequest, after_ids: list[str]) -> list[JobRecord]:
        """One sbatch array per window of shards; each task resumable and requeued while it progresses."""
        res = stage_resources(self.site, request.resources)
        requeue = Requeue(res.timeout_min, res.max_stalled_time_limits, res.max_requeues)
        task = ShardTask(requeue, request.task, request.progress or nothing_committed)
        records = []
        for window in windows(request.shards, slurmcli.max_array_size()):
            ex = executor(request.run_dir, self.site, request.resources, after_ids, name=request.stage)
            n = len(window)
            jobs = ex.map_array(task, window, [request.run_dir] * n, [dict(request.options)] * n)
            records.append(
                self._record(request.stage, str(jobs[0].job_id).split("_")[0], [s.index for s in window])
            )
        return records


def nothing_committed(run_dir: Path, spec: ShardSpec) -> int:
    """The progress of an array stage that commits a shard only at its end: none until then."""
    return 0


UNAVAILABLE = "Requested node configuration is not available"


def rejection_message(profile: ClusterProfile, request: StageRequest, error: str) -> str:
    """sbatch --test-only refused a script: Slurm's reason, and which profile keys decide what was asked."""
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    reasons = [ln.split("error:", 1)[1].strip() for ln in lines if "error:" in ln] or lines[-1:]
    table = request.resources
    res = stage_resources(profile, table)
    said = " ".join(reasons).lower()
    gpu = any(w in said for w in ("gpu", "gres", "tres"))
    keys = "gpu_request (or gpus_per_task, gres)" if gpu else "partition, account, qos or sbatch_extra"
    offer = ""
    if "feature" in said or (UNAVAILABLE.lower() in said and (res.gpu_type or res.constraint)):
        keys = "gpu_type or constraint"
        offer = (
            f" (asked: gpu_type {res.gpu_type!r}, constraint {res.constraint!r}; {_offers(res.partition)})"
        )
    return (
        f"Slurm would refuse the {request.stage} job of profile {profile.name!r}: {'; '.join(reasons)}{offer}\n"
        f"Nothing was queued. Change [{table}] {keys} in profile {profile.name}, then run the same "
        "command again."
    )


def _offers(partition: str | None) -> str:
    """What the nodes of ``partition`` offer, for a refused GPU type or feature; '' if Slurm cannot say."""
    try:
        offers = slurmcli.partition_offers(partition)
    except KitError:
        return "the partition's nodes could not be listed"
    shown = "; ".join(f"{gres} with features {features}" for gres, features in offers)
    return f"the nodes of partition {partition or '(default)'} have {shown or 'no GPUs or features'}"
