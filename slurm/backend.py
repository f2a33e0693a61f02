"""The seam between a run and where it executes: watching (snapshot, cancel) apart from submitting.

A ``Watcher`` reads the states of jobs already submitted and cancels them; any shell can build
one from run.json alone (``make status``). A ``Backend`` is a watcher that also checks and submits
``StageRequest``s, the stages of the kit's stage table (jobs/stages.py) as data: a backend runs
what a request says (its task, its resources key, array or not) and never asks which stage it is.
``LocalBackend`` (slurm/local.py) and ``SlurmBackend`` (slurm/cluster.py) implement it; the tests
add an in-memory one.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from collections.abc import Callable, Sequence

from kit.clock import now_iso
from kit.shardfile import ShardSpec

ALIVE = frozenset(
    {
        "PENDING",
        "RUNNING",
        "REQUEUED",
        "RESIZING",
        "SUSPENDED",
        "CONFIGURING",
        "COMPLETING",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "STAGE_OUT",
        "SIGNALING",
        "PREEMPTED",
    }
)
ENDED = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "TIMEOUT",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)
KNOWN_STATES = ALIVE | ENDED


@dataclass(frozen=True)
class StageRequest:
    """One stage of a run, as data: what to run, on which shards, with which resources.

    ``task`` is a module-level function (it is pickled by reference into the job): for an array
    stage ``task(specs, run_dir, **options)`` runs its shards in turn, otherwise
    ``task(run_dir, **options)``.
    """

    stage: str  # the stage's name: recorded in each JobRecord, names the jobs; never branched on
    run_dir: Path
    task: Callable[..., Any]
    resources: str  # the profile table holding this stage's resources (a key of ClusterProfile)
    array: bool = False  # True: one task per shard of ``shards`` (Slurm array; local workers)
    shards: tuple[ShardSpec, ...] = ()  # array stages: the shards still to do
    options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of ``task``
    progress: Callable[[Path, ShardSpec], int] | None = None  # array: rows of a shard already committed


@dataclass(frozen=True)
class JobRecord:
    """One submitted job: an embed worker or array window, a merge, a map."""

    stage: str  # the stage's name (jobs/stages.py)
    backend: str  # local | slurm: the watcher that reads its state
    job_id: str  # Slurm job id (array id for a window) or local pid
    host: str  # where it was submitted (local pids mean something only there)
    profile: str  # the profile it was submitted with ("local")
    shards: tuple[int, ...] = ()  # array stages: shard index of task i (Slurm) or the worker's shards (local)
    submitted_at: str = ""
    rows_at_submit: int = 0  # embed: rows already flushed in the run's shard files when it was submitted
    array: bool = False  # True: shard i of ``shards`` runs as array task ``<job_id>_<i>``

    def task_of(self, shard: int) -> str:
        """The scheduler's id of the task running ``shard``: ``A_i`` for an array, else the job id."""
        return f"{self.job_id}_{self.shards.index(shard)}" if self.array else self.job_id

    @classmethod
    def submitted_now(
        cls,
        stage: str,
        backend: str,
        job_id: str,
        profile: str,
        shards: Sequence[int] = (),
        array: bool = False,
    ) -> JobRecord:
        """The record of a job this host has just submitted."""
        return cls(
            stage=stage,
            backend=backend,
            job_id=str(job_id),
            host=socket.gethostname(),
            profile=profile,
            shards=tuple(shards),
            submitted_at=now_iso(),
            array=array,
        )

    @property
    def runs_shards_in_turn(self) -> bool:
        """One process works through several shards (a local worker): only its first unfinished one runs."""
        return not self.array and len(self.shards) > 1


@dataclass(frozen=True)
class JobState:
    """What the scheduler says of one task."""

    task_id: str  # A_i for an array task, the job id (or local pid) otherwise
    state: str  # Slurm's state name: PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...
    reason: str = ""  # why it is pending (squeue), or its exit code (sacct), or the local error
    started: bool = True  # False: it never started (cancelled while pending)
    node: str = ""  # the node it runs or last ran on, where the scheduler says (sacct's NodeList)
    lost_nodes: tuple[str, ...] = ()  # nodes earlier attempts were lost with (NODE_FAIL), oldest first

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
        """Whether task ``task_id`` is queued or running (false when the snapshot does not know it)."""
        state = self.tasks.get(task_id)
        return state is not None and state.alive

    def any_alive(self) -> bool:
        """Whether any task in the snapshot is queued or running."""
        return any(s.alive for s in self.tasks.values())


class Watcher(Protocol):
    """Reads and cancels jobs already submitted; needs no profile (make status from any shell)."""

    name: str  # "local" or "slurm": the JobRecord.backend of the jobs it answers for

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        """The states of its ``jobs`` (array tasks expanded) in as few scheduler calls as possible;
        a scheduler that does not answer within ``retry_s`` gives ``reachable=False``."""

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        """Cancel its ``jobs`` (those already ended are ignored)."""

    def in_this_terminal(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        """Those of its ``jobs`` that the terminal's Ctrl-C reaches as it reaches us (local jobs started
        from this terminal share its process group; a scheduler's jobs never do)."""


class Backend(Watcher, Protocol):
    """A watcher that also checks and submits stages."""

    def submit(self, request: StageRequest, after: Sequence[JobRecord]) -> list[JobRecord]:
        """Submit ``request`` to start once every job of ``after`` succeeded; return its jobs."""

    def check(self, request: StageRequest) -> str:
        """Validate ``request`` without queueing anything; return a one-line description of it."""

    def version(self) -> str | None:
        """The scheduler's release (``slurm 22.05.8``), detected once per submit; None locally."""
