"""The seam between a run and where it executes: submit a stage after others, states, cancel.

Stages are data (``StageRequest``); ``LocalBackend`` (submitit's local executor) and
``SlurmBackend`` (submitit + the Slurm commands in jobs/slurmcli.py) implement the same small
protocol, and the tests add an in-memory one. Nothing outside a backend branches on where a run
executes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from embedder.config import ComputeSettings, EmbedIdentity
from jobs.runstate import JobRecord
from kit.shardfile import ShardSpec

ALIVE = frozenset({"PENDING", "RUNNING", "REQUEUED", "RESIZING", "SUSPENDED", "CONFIGURING", "COMPLETING",
                   "REQUEUE_HOLD", "REQUEUE_FED", "STAGE_OUT", "SIGNALING", "PREEMPTED"})
ENDED = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                   "DEADLINE", "REVOKED", "SPECIAL_EXIT"})
KNOWN_STATES = ALIVE | ENDED


@dataclass(frozen=True)
class StageRequest:
    """One stage of a run, as data: what to run, on which shards, with which settings."""

    stage: str  # embed | merge | map
    run_dir: Path
    shards: tuple[ShardSpec, ...] = ()  # embed only
    identity: EmbedIdentity | None = None  # embed only
    compute: ComputeSettings | None = None  # embed only
    options: dict[str, Any] = field(default_factory=dict)  # map: questions, seed, pca_dims


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of one task."""

    task_id: str  # A_i for an array task, the job id (or local pid) otherwise
    state: str  # Slurm's state name: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...
    reason: str = ""  # why it is pending (squeue), or its exit code (sacct), or the local error
    started: bool = True  # False: it never started (cancelled while pending)

    @property
    def alive(self) -> bool:
        return self.state in ALIVE


@dataclass(frozen=True)
class Snapshot:
    """The scheduler's view of a run's jobs at one moment."""

    tasks: dict[str, JobState]  # task id -> state, for the tasks the scheduler still knows
    reachable: bool = True  # False: the scheduler did not answer; judge from the files only
    note: str = ""  # what to tell the user about this view (e.g. sacct unavailable)

    def alive(self, task_id: str) -> bool:
        state = self.tasks.get(task_id)
        return state is not None and state.alive

    def any_alive(self) -> bool:
        return any(s.alive for s in self.tasks.values())


class Backend(Protocol):
    """Where a run's stages execute."""

    name: str  # "local" or "slurm"; recorded in each JobRecord

    def submit(self, request: StageRequest, after: Sequence[JobRecord]) -> list[JobRecord]:
        """Submit ``request`` to start once every job of ``after`` succeeded; return its jobs."""

    def check(self, request: StageRequest) -> str:
        """Validate ``request`` without queueing anything; return a one-line description of it."""

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        """The states of ``jobs`` (array tasks expanded) in as few scheduler calls as possible;
        a scheduler that does not answer within ``retry_s`` gives ``reachable=False``."""

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        """Cancel ``jobs`` (those already ended are ignored)."""

    def log_folder(self, run_dir: Path) -> Path:
        """Where the jobs' logs land."""

    def version(self) -> str | None:
        """The scheduler's release (``slurm 22.05.8``), detected once per submit; None locally."""
