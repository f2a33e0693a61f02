"""The local backend: submitit's LocalExecutor, one worker per visible GPU, later stages afterok.

submitit's local jobs are processes whose job id is their pid; they outlive ``make submit``.
The local executor has no dependencies, so a later stage waits for the earlier pids itself and
starts only if they all succeeded (``slurm.tasks.after_ok``), as Slurm's afterok does. A job's
end is read from submitit's logs in the log folder: no process handle is needed, so
``make status`` from another shell sees the same states (``LocalWatcher``).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator, Sequence

import submitit
from submitit.core.utils import JobPaths

from kit.format import RunPaths
from kit.gpudriver import no_cuda_driver
from kit.process import pid_alive
from kit.shardfile import ShardSpec
from slurm.backend import JobRecord, JobState, Snapshot, StageRequest
from slurm.tasks import (
    FAILURE_LINE,
    STARTING_LINE,
    SUCCESS_LINE,
    WAITING_LINE,
    StageTask,
    after_ok,
)

LOCAL_TIMEOUT_MIN = 7 * 24 * 60  # no scheduler limit to mirror on one machine


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as CUDA_VISIBLE_DEVICES names them (ordinals or UUIDs)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    if no_cuda_driver():
        return []
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except ImportError:
        return []


@contextlib.contextmanager
def detached_stdio(log_path: Path) -> Iterator[None]:
    """Local jobs inherit fds 1 and 2; point them at a log file while they start.

    Otherwise ``make submit | tee`` (or any pipe) would stay open until the last job ends.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        yield
    finally:
        for fd, copy in zip((1, 2), saved):
            os.dup2(copy, fd)
            os.close(copy)


REASON_CHARS = 600  # a whole kit message fits; a runaway one is cut


def raised_error(log_text: str) -> str:
    """The last exception of a job's log, with every line of its message (a refusal spans several)."""
    lines = log_text.splitlines()
    starts = [i for i, ln in enumerate(lines) if "Error" in ln and not ln.startswith((" ", "submitit"))]
    if not starts:
        return ""
    message: list[str] = []
    for ln in lines[starts[-1] :]:
        if ln.startswith("submitit") or (message and not ln.strip()):
            break
        message.append(ln.strip())
    text = " ".join(message)
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 3] + "..."


def ended_state(folder: Path, job_id: str) -> JobState:
    """A local job that is no longer running: COMPLETED or FAILED, read from its submitit logs.

    The logs, not the result pickle: nothing from the run folder is unpickled to answer status.
    """
    paths = JobPaths(folder, job_id=job_id)
    text = "".join(p.read_text(errors="replace") for p in (paths.stdout, paths.stderr) if p.exists())
    if FAILURE_LINE in text:
        return JobState(job_id, "FAILED", raised_error(text) or "raised an error (see its log)")
    if SUCCESS_LINE in text and paths.result_pickle.exists():
        return JobState(job_id, "COMPLETED")
    return JobState(job_id, "FAILED", "ended without finishing (killed?)")


def local_job_alive(job_id: str) -> bool:
    """The pid runs and is still a submitit job (a pid reused by another program does not count)."""
    pid = int(job_id)
    if not pid_alive(pid):
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"submitit" in cmdline.read_bytes() if cmdline.exists() else True
    except OSError:
        return False


def assign_workers(specs: list[ShardSpec], n_workers: int) -> list[list[ShardSpec]]:
    """Round-robin ``specs`` over at most ``n_workers`` workers (no empty worker)."""
    n = max(1, min(n_workers, len(specs)))
    return [specs[w::n] for w in range(n)] if specs else []


def in_our_process_group(job: JobRecord) -> bool:
    """A local job of this host in our process group: a Ctrl-C in this terminal reached it too."""
    if job.host != socket.gethostname():
        return False
    try:
        return os.getpgid(int(job.job_id)) == os.getpgrp()
    except (ProcessLookupError, PermissionError, ValueError):
        return False


def waiting_for_earlier_jobs(folder: Path, job_id: str) -> bool:
    """A live local job still waits for the jobs before it (it has not printed that it starts)."""
    out = JobPaths(folder, job_id=job_id).stdout
    text = out.read_text(errors="replace") if out.exists() else ""
    return WAITING_LINE in text and STARTING_LINE not in text


@dataclass
class LocalWatcher:
    """The states of local jobs, from their pids and their submitit logs in the run's log folder."""

    run_dir: Path
    name: str = "local"

    def _state(self, job_id: str) -> JobState:
        folder = RunPaths.of(self.run_dir).logs
        if not local_job_alive(job_id):
            return ended_state(folder, job_id)
        if waiting_for_earlier_jobs(folder, job_id):
            return JobState(job_id, "PENDING", "starts when the jobs before it have succeeded", started=False)
        return JobState(job_id, "RUNNING")

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        host, tasks, foreign = socket.gethostname(), {}, []
        for job in jobs:
            if job.backend != self.name:
                continue
            if job.host != host:
                foreign.append(job.job_id)
                continue
            tasks[job.job_id] = self._state(job.job_id)
        note = (
            f"local jobs {', '.join(foreign)} ran on another host; judged from the files." if foreign else ""
        )
        return Snapshot(tasks, note=note)

    def in_this_terminal(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        return [j for j in jobs if j.backend == self.name and in_our_process_group(j)]

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        import signal

        for job in jobs:
            if job.backend == self.name and job.host == socket.gethostname() and local_job_alive(job.job_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(job.job_id), signal.SIGTERM)


@dataclass
class LocalBackend(LocalWatcher):
    """Runs the stages of ``run_dir`` as processes on this machine."""

    timeout_min: int = LOCAL_TIMEOUT_MIN

    def version(self) -> str | None:
        return None

    def _executor(self, run_dir: Path, gpu: str | None) -> submitit.LocalExecutor:
        ex = submitit.LocalExecutor(folder=RunPaths.of(run_dir).logs)
        params: dict = {"timeout_min": self.timeout_min}
        if gpu is not None:
            # submitit's own visible_gpus takes ordinals only; an export keeps "4" or a GPU UUID as given.
            params["setup"] = [f"export CUDA_VISIBLE_DEVICES={shlex.quote(gpu)}"]
        ex.update_parameters(**params)
        return ex

    def _record(self, stage: str, job_id: str, shards: Sequence[int] = ()) -> JobRecord:
        return JobRecord.submitted_now(stage, self.name, job_id, "local", shards)

    def check(self, request: StageRequest) -> str:
        if request.array:
            gpus = visible_gpus()
            workers = len(assign_workers(list(request.shards), len(gpus) or 1))
            return f"{request.stage}: {workers} local worker(s) on {', '.join('GPU ' + g for g in gpus) or 'the CPU'}"
        return f"{request.stage}: one local process after the previous stage"

    def submit(self, request: StageRequest, after: Sequence[JobRecord]) -> list[JobRecord]:
        after_ids = [j.job_id for j in after if j.backend == self.name]
        folder = RunPaths.of(request.run_dir).logs
        with detached_stdio(RunPaths.of(request.run_dir).controller_log):
            if request.array:
                return self._submit_array(request, folder, after_ids)
            job = self._executor(request.run_dir, None).submit(
                after_ok, folder, after_ids, StageTask(request.task), request.run_dir, dict(request.options)
            )
        return [self._record(request.stage, job.job_id)]

    def _submit_array(self, request: StageRequest, folder: Path, after_ids: list[str]) -> list[JobRecord]:
        """One worker per visible GPU (else one on the CPU), each running its shards in turn."""
        gpus = visible_gpus()
        records = []
        for w, group in enumerate(assign_workers(list(request.shards), len(gpus) or 1)):
            ex = self._executor(request.run_dir, gpus[w] if gpus else None)
            job = ex.submit(
                after_ok,
                folder,
                after_ids,
                run_shards,
                request.task,
                group,
                request.run_dir,
                dict(request.options),
            )
            records.append(self._record(request.stage, job.job_id, [s.index for s in group]))
        return records


def run_shards(task, specs: list[ShardSpec], run_dir: Path, options: dict):
    """A local worker: ``task`` over its shards in turn (the stage loads what it needs once)."""
    return task(specs, run_dir, **options)
