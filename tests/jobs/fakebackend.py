"""An in-memory backend: submit, states, cancel as plain data, so status, resubmit, REDO, the busy
check and every refusal are tested as functions, without the model or a scheduler."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Sequence

from slurm.backend import JobState, Snapshot, StageRequest
from jobs.runstate import JobRecord
from tests.fixtures.synthetic import identity, write_shard
from kit.corpusfile import corpus_info
from kit.format import CORPUS_FILE
from kit.shardfile import ShardSpec


@dataclass
class FakeBackend:
    """Jobs are ids f1, f2, ...; array tasks f1_0, f1_1, ... like Slurm's; states are set by the test."""

    name: str = "fake"
    states: dict[str, JobState] = field(default_factory=dict)
    requests: list[StageRequest] = field(default_factory=list)
    afters: list[list[str]] = field(default_factory=list)  # the job ids each request was submitted after
    reachable: bool = True
    _next: int = 0

    def in_this_terminal(self, jobs: Sequence[JobRecord]) -> list[JobRecord]:
        return []

    def version(self) -> str | None:
        return "fake 1.0"

    def check(self, request: StageRequest) -> str:
        return f"{request.stage}: fake ({len(request.shards)} shards)"

    def submit(self, request: StageRequest, after: Sequence[JobRecord]) -> list[JobRecord]:
        self._next += 1
        job_id = f"f{self._next}"
        self.requests.append(request)
        self.afters.append([j.job_id for j in after])
        shards = tuple(s.index for s in request.shards)
        tasks = [f"{job_id}_{i}" for i in range(len(shards))] if len(shards) > 1 else [job_id]
        for task in tasks:
            self.states[task] = JobState(
                task, "PENDING", "Dependency" if after else "Priority", started=False
            )
        return [
            JobRecord(
                stage=request.stage,
                backend=self.name,
                job_id=job_id,
                host="fakehost",
                profile="fake",
                shards=shards,
                submitted_at="2026-11-23T00:00:00+00:00",
                array=len(tasks) > 1,
            )
        ]

    def snapshot(self, jobs: Sequence[JobRecord], retry_s: float | None = None) -> Snapshot:
        if not self.reachable:
            return Snapshot({}, reachable=False, note="fake scheduler unreachable; from the files only.")
        ids = {j.job_id for j in jobs}
        return Snapshot({t: s for t, s in self.states.items() if t.split("_")[0] in ids})

    def cancel(self, jobs: Sequence[JobRecord]) -> None:
        for job in jobs:
            for task in [t for t in self.states if t.split("_")[0] == job.job_id]:
                if self.states[task].alive:
                    self.states[task] = JobState(
                        task, "CANCELLED", "", started=self.states[task].state != "PENDING"
                    )

    def set(self, task: str, state: str, reason: str = "", started: bool = True) -> None:
        self.states[task] = JobState(task, state, reason, started)

    def end_all(self, state: str = "COMPLETED") -> None:
        for task, s in list(self.states.items()):
            if s.alive:
                self.states[task] = JobState(task, state, "")


def write_done_shard(run_dir: Path, spec: ShardSpec, dim: int = 8) -> Path:
    """A complete shard file for ``spec`` (synthetic vectors), as a task would leave it."""
    return write_shard(run_dir, spec, identity(dim, corpus_info(Path(run_dir) / CORPUS_FILE).fingerprint))
