"""One view of a run's jobs across the backends they were submitted with (local, Slurm, or both)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from jobs.backend import Snapshot
from jobs.localbackend import LocalBackend
from jobs.runstate import JobRecord


@dataclass
class RunObserver:
    """snapshot and cancel for every job of a run, whatever backend submitted it."""

    run_dir: Path

    def _slurm(self):
        from jobs.slurmbackend import SlurmBackend

        return SlurmBackend(profile=None)

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        """``retry_s``: how long an unanswering Slurm controller is retried (None: the kit's default)."""
        local = LocalBackend(self.run_dir).snapshot(jobs)
        if not any(j.backend == "slurm" for j in jobs):
            return local
        if shutil.which("squeue") is None:
            return Snapshot(local.tasks, reachable=True,
                            note="The Slurm commands are not on PATH here: Slurm jobs are judged from the files only.")
        slurm = self._slurm().snapshot(jobs, retry_s)
        notes = " ".join(n for n in (local.note, slurm.note) if n)
        return Snapshot({**local.tasks, **slurm.tasks}, reachable=slurm.reachable, note=notes)

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        LocalBackend(self.run_dir).cancel(jobs)
        if any(j.backend == "slurm" for j in jobs) and shutil.which("scancel"):
            self._slurm().cancel(jobs)
