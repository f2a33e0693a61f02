"""make status: per shard done / running / pending / failed / cancelled / partial / missing.

Files first (a shard is done only if its final file exists: ``kit.shardfile.done_shards``),
then one snapshot of the backend (one squeue and one sacct call on Slurm). Success is never
read from scheduler state alone, and a scheduler that does not answer leaves the files' view.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from embedder.reuse import summary_line
from slurm.backend import Snapshot
from jobs.runstate import JobRecord, RunState
from kit import atomic
from kit.commands import make_command
from kit.errors import ShardError
from kit.format import RunPaths, shard_name, sidecar_path
from kit.shardfile import ShardSpec, done_shards, read_header, set_aside_files, shard_path

LISTED_SHARDS = 40  # a run with more shards lists the unfinished ones only, up to this many


@dataclass(frozen=True)
class ShardFiles:
    """What a shard's files say: rows flushed and attempts so far."""

    done: bool
    partial: bool  # a .tmp file exists
    rows_done: int
    attempts: int


@dataclass(frozen=True)
class ShardStatus:
    spec: ShardSpec
    state: str  # done | running | pending | failed | cancelled | partial | missing
    rows_done: int
    attempts: int
    task: str = ""  # the scheduler's id of its latest task
    detail: str = ""  # why pending, how it failed

    def line(self, widths: tuple[int, int] = (0, 8)) -> str:
        """One aligned row; ``widths``: of the range column and of the row counts (``column_widths``)."""
        extra = [f"task {self.task}"] if self.task and self.state != "done" else []
        extra += [f"attempt {self.attempts}"] if self.attempts > 1 else []
        extra += [self.detail] if self.detail else []
        span, count = widths
        rows = f"{self.rows_done:>{count}}/{self.spec.rows:<{count}}"
        return (
            f"  {shard_name(self.spec.index)}  {f'[{self.spec.start}, {self.spec.stop})':<{span}}  "
            f"{rows} rows  {self.state}" + (f"  ({'; '.join(extra)})" if extra else "")
        ).rstrip()


def column_widths(statuses: list[ShardStatus]) -> tuple[int, int]:
    """Widths of the range and row-count columns, so any number of rows lines up."""
    span = max((len(f"[{s.spec.start}, {s.spec.stop})") for s in statuses), default=0)
    count = max((len(str(s.spec.rows)) for s in statuses), default=1)
    return span, count


def shard_files(run_dir: Path, plan: tuple[ShardSpec, ...]) -> dict[int, ShardFiles]:
    """Rows flushed and attempts of every planned shard, from its final or ``.tmp`` file."""
    done, out = done_shards(run_dir), {}
    for spec in plan:
        path = (
            shard_path(run_dir, spec.index)
            if spec.index in done
            else atomic.tmp_path(shard_path(run_dir, spec.index))
        )
        try:
            header = read_header(path) if path.exists() else None
        except ShardError:
            header = None
        rows = spec.rows if spec.index in done else (header.rows_done if header else 0)
        attempts = int(header.attrs.get("attempts", 1)) if header else 0
        out[spec.index] = ShardFiles(
            spec.index in done, path.exists() and spec.index not in done, rows, attempts
        )
    return out


def classify(
    files: ShardFiles, job: JobRecord | None, task: str, snapshot: Snapshot, first_unfinished_of_worker: bool
) -> tuple[str, str]:
    """(state, detail) of one shard from its files and its latest task's state. Pure."""
    if files.done:
        return "done", ""
    state = snapshot.tasks.get(task) if task else None
    if state is not None and state.alive:
        if job is not None and job.runs_shards_in_turn:  # a local worker
            return (
                ("running", "")
                if first_unfinished_of_worker
                else ("pending", "queued behind its worker's shards")
            )
        return state.state.lower(), state.reason
    if state is not None:
        if state.state == "COMPLETED":
            return "failed", "the task ended without a shard file"
        if state.state == "CANCELLED" and not state.started:
            return "cancelled", "cancelled before it started"
        return ("cancelled" if state.state == "CANCELLED" else "failed"), " ".join(
            p for p in (state.state, state.reason) if p
        )
    return ("partial" if files.partial else "missing"), ""


def shard_statuses(run_dir: Path, run: RunState, snapshot: Snapshot) -> list[ShardStatus]:
    """The status of each planned shard of ``run``, from its shard file and its latest job in ``snapshot``."""
    files = shard_files(run_dir, run.plan)
    latest = run.latest_task_of_shards()
    started: set[str] = set()
    out = []
    for spec in run.plan:
        job, task = latest.get(spec.index, (None, ""))
        f = files[spec.index]
        first = not f.done and task not in started  # a local worker runs its shards in turn
        if first:
            started.add(task)
        state, detail = classify(f, job, task, snapshot, first)
        out.append(ShardStatus(spec, state, f.rows_done, f.attempts, task, detail))
    return out


def _stage_line(job: JobRecord, snapshot: Snapshot) -> str:
    state = snapshot.tasks.get(job.job_id)
    if state is None:
        return f"{job.stage} job {job.job_id}: " + ("left the queue" if snapshot.reachable else "unknown")
    return f"{job.stage} job {job.job_id}: {state.state}" + (f" ({state.reason})" if state.reason else "")


def format_duration(seconds: float) -> str:
    """``seconds`` as ``1h05m`` from an hour on, else as ``4m07s`` (negative counts as 0)."""
    seconds = int(max(seconds, 0))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def rate_line(run: RunState, statuses: list[ShardStatus], now: datetime | None = None) -> str:
    """Rows/s since the latest embed submission and the ETA of the rest, when it can be said."""
    embeds = [j for j in run.jobs if j.shards and j.submitted_at]
    done = sum(s.rows_done for s in statuses)
    total = sum(s.spec.rows for s in statuses)
    if not embeds or done >= total:
        return ""
    since = datetime.fromisoformat(embeds[-1].submitted_at)
    elapsed = ((now or datetime.now(timezone.utc)) - since).total_seconds()
    gained = done - embeds[-1].rows_at_submit
    if elapsed <= 0 or gained <= 0:
        return "; no rows flushed since the latest submit yet"
    rate = gained / elapsed
    return f"; {rate:.1f} docs/s since the latest submit, ETA {format_duration((total - done) / rate)}"


def summarise(statuses: list[ShardStatus]) -> str:
    """Counts of shards per state in a fixed order, e.g. ``3 done, 1 running``; states with none left out."""
    counts: dict[str, int] = {}
    for s in statuses:
        counts[s.state] = counts.get(s.state, 0) + 1
    order = ("done", "running", "pending", "failed", "cancelled", "partial", "missing")
    return ", ".join(f"{counts[k]} {k}" for k in order if counts.get(k))


def shard_lines(statuses: list[ShardStatus]) -> list[str]:
    """One line per shard, or when there are many only the first unfinished ones and how many more."""
    widths = column_widths(statuses)
    if len(statuses) <= LISTED_SHARDS:
        return [s.line(widths) for s in statuses]
    unfinished = [s for s in statuses if s.state != "done"]
    lines = [s.line(widths) for s in unfinished[:LISTED_SHARDS]]
    if len(unfinished) > LISTED_SHARDS:
        lines.append(f"  ... and {len(unfinished) - LISTED_SHARDS} more unfinished shards")
    return lines


def status_report(run_dir: Path, run: RunState, snapshot: Snapshot) -> str:
    """Shards, the stages' jobs, the merged file, and the one command that moves the run on."""
    statuses = shard_statuses(run_dir, run, snapshot)
    done = sum(s.rows_done for s in statuses)
    total = sum(s.spec.rows for s in statuses)
    lines = [
        f"Run {run_dir}: model {run.identity.model}, {len(statuses)} shards ({summarise(statuses)}), "
        f"{done}/{total} rows embedded{rate_line(run, statuses)}"
    ]
    lines += [reused] if (reused := summary_line(run_dir)) else []
    lines += shard_lines(statuses)
    lines += [_stage_line(job, snapshot) for job in run.latest_stage_jobs().values()]
    lines += [snapshot.note] if snapshot.note else []
    lines += [f"Set aside (kept, not resumed): {p.relative_to(run_dir)}" for p in set_aside_files(run_dir)]
    lines += space_lines(run_dir, statuses)
    lines.append(next_step(run_dir, statuses, snapshot))
    return "\n".join(lines)


def space_lines(run_dir: Path, statuses: list[ShardStatus]) -> list[str]:
    """Says when the run folder's disk is too full for the unfinished shards (float32 rows of the run's dim)."""
    unfinished = sum(s.spec.rows - s.rows_done for s in statuses if s.state != "done")
    done = sorted(done_shards(run_dir))
    try:
        dim = int(read_header(shard_path(run_dir, done[0])).identity.dim or 1024) if done else 1024
    except (ShardError, TypeError, ValueError):
        dim = 1024
    short = atomic.space_shortfall(RunPaths.of(run_dir).root, unfinished * dim * 4) if unfinished else None
    return [f"{short}. Free space, then: {make_command('resubmit', RUN=run_dir)}"] if short else []


def next_step(run_dir: Path, statuses: list[ShardStatus], snapshot: Snapshot) -> str:
    """The status report's last line: where the merged file is, or why not yet and what to run next."""
    output = RunPaths.of(run_dir).output
    if output.exists() and sidecar_path(output).exists():
        return f"Merged: {output} (sha256 in {sidecar_path(output).name})"
    if snapshot.any_alive():
        return f"Merged: not yet; the merge runs after the shards. Watch it with: {make_command('status', RUN=run_dir)}"
    if not snapshot.reachable:
        return "Merged: not yet; the scheduler did not answer, so whether jobs still run is unknown. Try again later."
    bad = [s for s in statuses if s.state != "done"]
    what = (
        (
            f"{len(bad)} shard(s) not done: {shard_name(bad[0].spec.index)}"
            + (f" ... {shard_name(bad[-1].spec.index)}" if len(bad) > 1 else "")
        )
        if bad
        else "the merge did not finish"
    )
    return f"Merged: no ({what}). Repair with: {make_command('resubmit', RUN=run_dir)}"
