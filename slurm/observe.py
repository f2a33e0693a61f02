"""One view of a run's jobs across the watchers of the backends they were submitted with.

A job's ``JobRecord.backend`` names its watcher in ``WATCHERS``: looking it up is data, so
nothing here (or in status, wait and submit) branches on where a job ran.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable, Sequence

from slurm.backend import JobRecord, Snapshot, Watcher
from slurm.cluster import SlurmWatcher
from slurm.local import LocalWatcher

WATCHERS: dict[str, Callable[[Path], Watcher]] = {
    "local": LocalWatcher,
    "slurm": lambda run_dir: SlurmWatcher(),
}


@dataclass
class RunObserver:
    """snapshot and cancel for every job of a run, whatever backend submitted it."""

    run_dir: Path
    name: str = "run"  # a Watcher over every backend the run's jobs name

    def _watchers(self, jobs: Sequence[JobRecord]) -> list[tuple[Watcher, list[JobRecord]]]:
        names = dict.fromkeys(j.backend for j in jobs if j.backend in WATCHERS)
        return [(WATCHERS[n](self.run_dir), [j for j in jobs if j.backend == n]) for n in names]

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        """``retry_s``: how long an unanswering scheduler is retried (None: the kit's default)."""
        views = [w.snapshot(mine, retry_s) for w, mine in self._watchers(jobs)]
        tasks = {t: s for v in views for t, s in v.tasks.items()}
        note = " ".join(v.note for v in views if v.note)
        return Snapshot(tasks, reachable=all(v.reachable for v in views), note=note)

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        for watcher, mine in self._watchers(jobs):
            watcher.cancel(mine)

    def in_this_terminal(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        return [j for watcher, mine in self._watchers(jobs) for j in watcher.in_this_terminal(mine)]
