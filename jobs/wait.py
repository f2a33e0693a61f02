"""WAIT=1: follow a run until its last stage ends, with one progress line at a steady interval.

The loop asks the backend for one snapshot per poll and reads progress from the shard files.
A scheduler that does not answer (a controller restart) is reported and waited out: the jobs
go on without us, and so does the wait.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

from slurm.backend import Watcher
from jobs.runstate import JobRecord, RunState
from jobs.status import format_duration, shard_statuses, summarise
from kit.commands import make_command
from kit.errors import KitError

PROGRESS_ENV = "EMBEDKIT_PROGRESS_S"
DEFAULT_PROGRESS_S = 30.0
POLL_S = 1.0  # one snapshot and the shard headers: cheap, and the summary follows within a second
UNREACHABLE_GIVE_UP_S = 1800.0  # each poll already retried for EMBEDKIT_SCHEDULER_RETRY_S


def progress_interval() -> float:
    """Seconds between progress lines: ``EMBEDKIT_PROGRESS_S``, else 30 (also when it is not a number)."""
    try:
        return float(os.environ.get(PROGRESS_ENV) or DEFAULT_PROGRESS_S)
    except ValueError:
        return DEFAULT_PROGRESS_S


@dataclass
class Rate:
    """docs/s between the first and the latest flush seen while waiting.

    Rows appear in the shard files one flushed chunk at a time, so a rate over the last few polls
    swings between 0 and a burst; between two flushes the rate is what the tasks really did.
    """

    rows: int | None = None  # rows flushed at the latest sample
    changes: list[tuple[float, int]] = field(default_factory=list)  # (time, rows): first and latest change

    def add(self, rows: int) -> None:
        """Record that ``rows`` rows are flushed now."""
        if self.rows is not None and rows != self.rows:
            self.changes = [*self.changes[:1], (time.monotonic(), rows)]
        self.rows = rows

    def per_second(self) -> float:
        """Rows per second from the first change seen to the latest; 0 until two changes were seen."""
        if len(self.changes) < 2:
            return 0.0
        (t0, r0), (t1, r1) = self.changes
        return (r1 - r0) / (t1 - t0) if t1 > t0 else 0.0


def progress_line(statuses, rate: float, unreachable: bool) -> str:
    """One line of progress while waiting: rows flushed of all, rate, ETA and shards per state."""
    done = sum(s.rows_done for s in statuses)
    total = sum(s.spec.rows for s in statuses)
    if rate > 0:
        pace = f"{rate:.1f} docs/s" + (
            f", ETA {format_duration((total - done) / rate)}" if done < total else ""
        )
    else:
        pace = "no rows flushed yet" if done == 0 else "the rate shows after the next flush"
    line = f"  {done}/{total} rows ({done / max(total, 1):.0%}), {pace}; shards: {summarise(statuses)}"
    return line + ("; the scheduler is not answering, still waiting" if unreachable else "")


def wait_for_run(
    run_dir: Path,
    state: RunState,
    backend: Watcher,
    last: list[JobRecord],
    say: Callable[[str], None],
    interval_s: float | None = None,
) -> None:
    """Block until every job of ``last`` (the final stage) has ended."""
    interval = progress_interval() if interval_s is None else interval_s
    rate, next_line = Rate(), time.monotonic() + interval
    last_ids = {j.job_id for j in last}
    answered = time.monotonic()
    while True:
        snapshot = backend.snapshot(state.jobs)
        statuses = shard_statuses(run_dir, state, snapshot)
        rate.add(sum(s.rows_done for s in statuses))
        if snapshot.reachable and not any(snapshot.alive(i) for i in last_ids):
            return
        answered = time.monotonic() if snapshot.reachable else answered
        if time.monotonic() - answered > UNREACHABLE_GIVE_UP_S:
            raise KitError(
                f"Stopped waiting: the scheduler has not answered for {UNREACHABLE_GIVE_UP_S / 60:.0f} "
                f"minutes. The jobs may still run; check later with: "
                f"{make_command('status', RUN=run_dir)}"
            )
        if time.monotonic() >= next_line:
            say(progress_line(statuses, rate.per_second(), not snapshot.reachable))
            next_line += interval
        time.sleep(POLL_S)


INTERRUPT_END_S = 60.0  # how long jobs that got the same Ctrl-C are given to end before we say they still run
INTERRUPT_SCHEDULER_RETRY_S = 20.0
INTERRUPT_POLL_S = 0.2  # how long Ctrl-C waits for an unanswering Slurm controller


def wait_until_ended(
    backend: Watcher, jobs: list[JobRecord], limit_s: float = INTERRUPT_END_S
) -> list[JobRecord]:
    """Ask ``backend`` until ``jobs`` have ended (or ``limit_s`` passed); the jobs still running."""
    deadline = time.monotonic() + limit_s
    while jobs and time.monotonic() < deadline:
        snapshot = backend.snapshot(jobs)
        jobs = [j for j in jobs if snapshot.alive(j.job_id)]
        if jobs:
            time.sleep(INTERRUPT_POLL_S)
    return jobs


def interrupted_message(run_dir: Path, state: RunState, backend: Watcher) -> str:
    """Ctrl-C during WAIT=1: what happened to the jobs, found by checking them, and how to go on.

    Local jobs started from this terminal share its process group, so the Ctrl-C reached them
    too: we check their pids until they have ended, then ask the backend what still runs.
    """
    status = make_command("status", RUN=run_dir)
    unknown = f"Stopped waiting; the scheduler did not answer, so whether the jobs go on is unknown. Check: {status}"
    try:  # one snapshot, briefly retried; array tasks (123_4) count for their job (123)
        snapshot = backend.snapshot(state.jobs, retry_s=INTERRUPT_SCHEDULER_RETRY_S)
    except KitError:
        return unknown
    if not snapshot.reachable:
        return unknown
    alive_ids = {task.split("_")[0] for task, s in snapshot.tasks.items() if s.alive}
    alive = [j for j in state.jobs if j.job_id in alive_ids]
    stopping = backend.in_this_terminal(alive)
    still = wait_until_ended(backend, stopping)
    going_on = [j for j in alive if j not in stopping or j in still]
    if not going_on:
        return (
            f"Stopped: Ctrl-C also ended the run's local jobs (they share this terminal); flushed rows are "
            f"kept. Resume with: {make_command('submit', RUN=run_dir)}"
        )
    ids = ", ".join(j.job_id for j in going_on[:6]) + (" ..." if len(going_on) > 6 else "")
    return (
        f"Stopped waiting; {len(going_on)} job(s) go on ({ids}). Watch them with: {status} "
        f"(the merged file appears when they finish)."
    )
