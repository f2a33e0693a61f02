"""What runs inside a job: the shard task, the merge and the map, for every backend.

Slurm tasks are submitit ``Checkpointable``s: on USR2 (preemption, or the time-limit warning)
submitit calls ``checkpoint`` and requeues the task with what it returns; the shard then resumes
from the rows flushed in its ``.tmp`` file. Two rules keep a lab's morning free of surprises:

- requeue as often as the work needs: preemption never counts, and a time limit counts only
  when the shard made no progress since the attempt began (``Requeue.max_stalled``);
- a task whose work is committed exits 0 whatever signal arrives next (``ignore_late_signals``,
  and ``checkpoint`` exits 0 instead of requeueing finished work).
"""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import submitit

from embedder.config import ComputeSettings, EmbedIdentity
from embedder.run import embed_shards
from kit.atomic import tmp_path
from kit.errors import ShardError
from kit.shardfile import ShardSpec, done_shards, read_header, shard_path

log = logging.getLogger(__name__)
LATE_SIGNALS = (signal.SIGUSR2, signal.SIGTERM)


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


def rows_flushed(run_dir: Path, spec: ShardSpec) -> int:
    """Rows of ``spec`` already in its files: all of them once complete, else the ``.tmp``'s rows_done."""
    if spec.index in done_shards(run_dir):
        return spec.rows
    tmp = tmp_path(shard_path(run_dir, spec.index))
    try:
        return read_header(tmp).rows_done if tmp.exists() else 0
    except ShardError:
        return 0


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
    """A Slurm array task: one shard, resumable, requeued as often as the work needs."""

    def __init__(self, requeue: Requeue):
        self.requeue = requeue
        self.attempt = 0
        self.stalled = 0  # consecutive time limits without progress
        self._started_at = 0.0
        self._rows_at_start = 0

    def __call__(self, spec: ShardSpec, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
        self.attempt += 1
        self._started_at, self._rows_at_start = time.time(), rows_flushed(run_dir, spec)
        result = embed_shards([spec], run_dir, identity, compute)[0]
        ignore_late_signals()
        return result

    def checkpoint(self, spec: ShardSpec, run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
        if spec.index in done_shards(run_dir):
            _exit_done(spec.describe())
        rows = rows_flushed(run_dir, spec)
        timed_out = self.requeue.timed_out(time.time() - self._started_at)
        self.stalled = self.stalled + 1 if timed_out and rows <= self._rows_at_start else 0
        why = self._why_not(rows)
        if why:
            log.error("%s: not requeued: %s", spec.describe(), why)
            return None  # submitit then ends the task as failed, with this reason in the log
        log.info("%s: requeued after attempt %d at row %d of %d (%s)", spec.describe(), self.attempt,
                 spec.start + rows, spec.stop, "time limit" if timed_out else "preempted")
        return submitit.helpers.DelayedSubmission(self, spec, run_dir, identity, compute)

    def _why_not(self, rows: int) -> str:
        if self.stalled > self.requeue.max_stalled:
            return (f"{self.stalled} time limits in a row without a flushed row (stuck at row offset {rows}); "
                    "raise timeout_min in the profile or lower MAX_TOKENS_PER_BATCH")
        cap = self.requeue.max_requeues
        if cap is not None and self.attempt > cap:
            return f"requeued {self.attempt - 1} times, the profile's max_requeues"
        return ""


class MergeTask(submitit.helpers.Checkpointable):
    """The merge job: verify the shards and write embeddings.h5; requeued if preempted."""

    def __init__(self) -> None:
        self.committed = False

    def __call__(self, run_dir: Path):
        from jobs.merging import merge_run_folder

        summary = merge_run_folder(run_dir)
        self.committed = True
        ignore_late_signals()
        return summary

    def checkpoint(self, run_dir: Path):
        if self.committed:
            _exit_done(f"the merge of {run_dir}")
        return submitit.helpers.DelayedSubmission(self, run_dir)


class MapTask(submitit.helpers.Checkpointable):
    """The map job (after the merge): map.h5, map.html, map.png; requeued if preempted."""

    def __init__(self) -> None:
        self.committed = False

    def __call__(self, run_dir: Path, options: dict) -> dict:
        from jobs.merging import map_from_manifest

        quality = map_from_manifest(run_dir, **options)
        self.committed = True
        ignore_late_signals()
        return quality

    def checkpoint(self, run_dir: Path, options: dict):
        if self.committed:
            _exit_done(f"the map of {run_dir}")
        return submitit.helpers.DelayedSubmission(self, run_dir, options)


# ---------------------------------------------------------------- local jobs (no scheduler dependencies)

POLL_S = 2.0


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie counts as ended)."""
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z" if stat.exists() else True
    except (OSError, IndexError):
        return False


def local_embed(specs: list[ShardSpec], run_dir: Path, identity: EmbedIdentity, compute: ComputeSettings):
    """A local worker: its shards in turn (the model is loaded once)."""
    return embed_shards(specs, run_dir, identity, compute)


def after_pids(pids: list[int], task, *args):
    """Run ``task(*args)`` once the processes ``pids`` have ended (the local stand-in for afterok)."""
    while any(pid_alive(p) for p in pids):
        time.sleep(POLL_S)
    return task(*args)
