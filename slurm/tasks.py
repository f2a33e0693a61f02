"""What runs inside a job, for every stage and backend: requeue policy, late-signal immunity, afterok.

Slurm tasks are submitit ``Checkpointable``s: on USR2 (preemption, or the time-limit warning)
submitit calls ``checkpoint`` and requeues the task with what it returns; an array task then
resumes from what its stage committed (for the embed stage, the rows flushed in its ``.tmp``
file). Two rules keep a lab's morning free of surprises:

- requeue as often as the work needs: preemption never counts, and a time limit counts only
  when the shard made no progress since the attempt began (``Requeue.max_stalled``);
- a task whose work is committed exits 0 whatever signal arrives next (``ignore_late_signals``,
  and ``checkpoint`` exits 0 instead of requeueing finished work).

The stage's own work is a plain function given by the stage table (jobs/stages.py).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

import submitit
from submitit.core.utils import JobPaths

from kit.canary import GPU_TYPE_ENV
from kit.errors import KitError
from kit.process import pid_alive
from kit.shardfile import ShardSpec
from slurm import slurmcli

log = logging.getLogger(__name__)
LATE_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)
Progress = Callable[[Path, ShardSpec], int]


def ignore_late_signals() -> None:
    """The work is committed: a USR2 or TERM from now on must not turn success into failure.

    SIG_IGN also survives interpreter shutdown, where Python resets its own handlers to the
    default action (which for USR2 is to die).
    """
    for sig in LATE_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _exit_done(what: str) -> None:
    ignore_late_signals()
    log.info("%s is already committed: exiting successfully instead of requeueing", what)
    raise SystemExit(0)  # not an Exception: submitit's process_job lets it end the process with 0


def export_gpu_type(environ: dict[str, str] | None = None) -> str:
    """Tell the stage's task the type of the GPUs of the node it runs on (``EMBEDKIT_GPU_TYPE``, read by
    embedder/hardware.py): the node's gres type, asked of Slurm once. A placeholder GPU (the test
    clusters') has no device to name itself. Returns the type ("" where the node's gres has none)."""
    env = os.environ if environ is None else environ
    node = env.get("SLURMD_NODENAME", "")
    if not node or env.get(GPU_TYPE_ENV):
        return env.get(GPU_TYPE_ENV, "")
    try:
        gpu_type = slurmcli.node_gpu_type(node)
    except KitError as err:  # a label is not worth failing the task for
        log.warning("could not ask Slurm for the GPU type of node %s: %s", node, err)
        return ""
    if gpu_type:
        env[GPU_TYPE_ENV] = gpu_type
    return gpu_type


@dataclass
class Requeue:
    """When a Slurm task is requeued. Preemption always; a time limit unless the shard is stuck."""

    timeout_min: int  # the task's --time, to tell a time-limit warning from a preemption
    max_stalled: int = 2  # time limits in a row without a flushed row before the task gives up
    max_requeues: int | None = None  # a profile's overall cap; None: no cap

    def timed_out(self, elapsed_s: float) -> bool:
        """submitit's own rule: past 80 % of the limit (or within 10 minutes of it) means time limit."""
        limit_s = self.timeout_min * 60
        return elapsed_s >= min(limit_s * 0.8, limit_s - 600)


class ShardTask(submitit.helpers.Checkpointable):
    """A Slurm array task: one shard of an array stage, resumable, requeued as often as the work needs."""

    def __init__(self, requeue: Requeue, task: Callable[..., Any], progress: Progress):
        self.requeue = requeue
        self.task = task  # task([spec], run_dir, **options): the stage's work
        self.progress = progress  # rows of a shard already committed (all of them once it is done)
        self.attempt = 0
        self.stalled = 0  # consecutive time limits without progress
        self._started_at = 0.0
        self._rows_at_start = 0

    def __call__(self, spec: ShardSpec, run_dir: Path, options: dict):
        self.attempt += 1
        self._started_at, self._rows_at_start = time.time(), self.progress(run_dir, spec)
        export_gpu_type()
        result = self.task([spec], run_dir, **options)
        ignore_late_signals()
        return result

    def checkpoint(self, spec: ShardSpec, run_dir: Path, options: dict):
        """On preemption or time limit: the requeued call; exits 0 once done; ``None`` (fail) if stuck or capped."""
        rows = self.progress(run_dir, spec)
        if rows >= spec.rows:
            _exit_done(spec.describe())
        timed_out = self.requeue.timed_out(time.time() - self._started_at)
        self.stalled = self.stalled + 1 if timed_out and rows <= self._rows_at_start else 0
        why = self._why_not(rows)
        if why:
            log.error("%s: not requeued: %s", spec.describe(), why)
            return None  # submitit then ends the task as failed, with this reason in the log
        log.info(
            "%s: requeued after attempt %d at row %d of %d (%s)",
            spec.describe(),
            self.attempt,
            spec.start + rows,
            spec.stop,
            "time limit" if timed_out else "preempted",
        )
        return submitit.helpers.DelayedSubmission(self, spec, run_dir, options)

    def _why_not(self, rows: int) -> str:
        if self.stalled > self.requeue.max_stalled:
            return (
                f"{self.stalled} time limits in a row without a flushed row (stuck at row offset {rows}); "
                "raise timeout_min in the profile or lower MAX_TOKENS_PER_BATCH"
            )
        cap = self.requeue.max_requeues
        if cap is not None and self.attempt > cap:
            return f"requeued {self.attempt - 1} times, the profile's max_requeues"
        return ""


class StageTask(submitit.helpers.Checkpointable):
    """A whole-run stage (merge, map, ...) as one job: ``task(run_dir, **options)``; requeued if preempted."""

    def __init__(self, task: Callable[..., Any]) -> None:
        self.task = task
        self.committed = False

    def __call__(self, run_dir: Path, options: dict) -> Any:
        result = self.task(run_dir, **options)
        self.committed = True
        ignore_late_signals()
        return result

    def checkpoint(self, run_dir: Path, options: dict):
        """On preemption or time limit: the stage's requeued call; exits 0 if its work was committed."""
        if self.committed:
            _exit_done(f"{getattr(self.task, '__name__', 'the stage')} of {run_dir}")
        return submitit.helpers.DelayedSubmission(self, run_dir, options)


# ---------------------------------------------------------------- local jobs (no scheduler dependencies)

POLL_S = 0.5  # a pid check: the next stage starts within half a second of the last one
WAITING_LINE = "embedkit: waiting for jobs"  # printed by a local job until the jobs before it succeeded
STARTING_LINE = "embedkit: the jobs before succeeded; starting"
SUCCESS_LINE = "Job completed successfully"  # what submitit's process_job logs once the function returned
FAILURE_LINE = "Submitted job triggered an exception"


class DependencyError(KitError):
    """A job this one runs after did not succeed: like Slurm's afterok, this one never starts."""


def ended_ok(folder: Path, job_id: str) -> bool:
    """A local job that has ended returned normally: submitit logged success and wrote its result."""
    paths = JobPaths(folder, job_id=job_id)
    text = "".join(p.read_text(errors="replace") for p in (paths.stdout, paths.stderr) if p.exists())
    return FAILURE_LINE not in text and SUCCESS_LINE in text and paths.result_pickle.exists()


def after_ok(folder: Path, job_ids: list[str], task: Callable[..., Any], *args: Any) -> Any:
    """Run ``task(*args)`` once the local jobs ``job_ids`` (logs in ``folder``) ended and all succeeded.

    The local stand-in for Slurm's ``afterok`` with ``kill_on_invalid_dep``: a failed earlier job
    ends this one as failed, naming it, and ``task`` never runs.
    """
    if job_ids:
        print(f"{WAITING_LINE} {', '.join(job_ids)}", flush=True)
    while any(pid_alive(int(j)) for j in job_ids):
        time.sleep(POLL_S)
    failed = [j for j in job_ids if not ended_ok(Path(folder), j)]
    if failed:
        raise DependencyError(
            f"DependencyNeverSatisfied: job(s) {', '.join(failed)} before this one did not "
            f"succeed, so this stage did not run (see their logs in {folder})."
        )
    if job_ids:
        print(STARTING_LINE, flush=True)
    return task(*args)
