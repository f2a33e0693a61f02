"""make status: per shard done / running / pending / failed / cancelled / partial / missing.

Files first (a shard is done only if its final file exists: ``kit.shardfile.done_shards``),
then one snapshot of the backend (one squeue and one sacct call on Slurm). Success is never
read from scheduler state alone, and a scheduler that does not answer leaves the files' view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, UTC
from pathlib import Path

from embedder.reuse import summary_line
from slurm.backend import JobState, Snapshot
from jobs.runstate import JobRecord, RunState
from jobs.madefrom import merge_is_current
from kit import atomic
from kit.canary import HARDWARE_KEYS, describe_mix, hardware_mix
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
    hardware: dict = field(default_factory=dict)  # where it was computed (kit.canary.HARDWARE_KEYS, host)


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
        hardware = {k: header.attrs.get(k) for k in (*HARDWARE_KEYS, "host")} if header else {}
        out[spec.index] = ShardFiles(
            spec.index in done, path.exists() and spec.index not in done, rows, attempts, hardware
        )
    return out


def hardware_line(files: dict[int, ShardFiles]) -> str:
    """``Hardware: 4 shards on a100 (nodes a100-1, a100-2), 2 on v100 (node v100-1); computed on cpu,
    float32``: the mix of the shards written so far ("" before any)."""
    written = [f.hardware for f in files.values() if f.hardware]
    return f"Hardware: {describe_mix(hardware_mix(written))}" if written else ""


def lost_note(state: JobState | None) -> str:
    """What happened to a task whose earlier attempt was lost with its node ("" otherwise)."""
    if state is None or not state.lost_nodes:
        return ""
    nodes = ", ".join(state.lost_nodes)
    return f"node {nodes} was lost (NODE_FAIL): requeued onto another node, resumed from its flushed rows"


def classify(
    files: ShardFiles, job: JobRecord | None, task: str, snapshot: Snapshot, first_unfinished_of_worker: bool
) -> tuple[str, str]:
    """(state, detail) of one shard from its files and its latest task's state, and any node it was
    lost with. Pure."""
    state, detail = _classify(files, job, task, snapshot, first_unfinished_of_worker)
    task_state = snapshot.tasks.get(task) if task else None
    if task_state is not None and task_state.state == "NODE_FAIL" and task_state.node and not files.done:
        detail = f"{detail} on node {task_state.node}"
    return state, "; ".join(p for p in (detail, lost_note(task_state)) if p)


def _classify(
    files: ShardFiles, job: JobRecord | None, task: str, snapshot: Snapshot, first_unfinished_of_worker: bool
) -> tuple[str, str]:
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


def shard_statuses(
    run_dir: Path, run: RunState, snapshot: Snapshot, files: dict[int, ShardFiles] | None = None
) -> list[ShardStatus]:
    """The status of each planned shard of ``run``, from its shard file (``files``, read here if None)
    and its latest job in ``snapshot``."""
    files = shard_files(run_dir, run.plan) if files is None else files
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
    elapsed = ((now or datetime.now(UTC)) - since).total_seconds()
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
    files = shard_files(run_dir, run.plan)
    statuses = shard_statuses(run_dir, run, snapshot, files)
    done = sum(s.rows_done for s in statuses)
    total = sum(s.spec.rows for s in statuses)
    lines = [
        f"Run {run_dir}: model {run.model_name or run.identity.model}, {len(statuses)} shards ({summarise(statuses)}), "
        f"{done}/{total} rows embedded{rate_line(run, statuses)}"
    ]
    lines += [reused] if (reused := summary_line(run_dir)) else []
    lines += truncation_lines(run_dir, run)
    lines += shard_lines(statuses)
    lines += [hardware] if (hardware := hardware_line(files)) else []
    lines += [_stage_line(job, snapshot) for job in run.latest_stage_jobs().values()]
    lines += [snapshot.note] if snapshot.note else []
    lines += [f"Set aside (kept, not resumed): {p.relative_to(run_dir)}" for p in set_aside_files(run_dir)]
    lines += space_lines(run_dir, statuses)
    lines.append(next_step(run_dir, statuses, snapshot, submitted=bool(run.jobs)))
    return "\n".join(lines)


def truncation_lines(run_dir: Path, run: RunState) -> list[str]:
    """How much text the model does not see: the merge's line (the shards' exact count), else the plan's."""
    from kit.truncation import Truncation
    from merge.summary import read_summary

    paths = RunPaths.of(run_dir)
    if paths.output.exists() and paths.output_sidecar.exists():
        try:
            merged = read_summary(run_dir).truncation
        except (OSError, ValueError):
            merged = None
        if merged:
            return [merged]
    counted = Truncation.from_json(run.truncation)
    return [counted.line(passages=bool(getattr(run.identity, "passages", False)))] if counted else []


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


def next_step(run_dir: Path, statuses: list[ShardStatus], snapshot: Snapshot, submitted: bool = True) -> str:
    """The status report's last line: where the merged file is, or why not yet and what to run next."""
    output = RunPaths.of(run_dir).output
    merged = output.exists() and sidecar_path(output).exists()
    if merged and merge_is_current(run_dir, output, RunPaths.of(run_dir).shard):
        return f"Merged: {output} (sha256 in {sidecar_path(output).name})"
    if not submitted:
        return f"Merged: not yet; the run is planned, not submitted. Submit it with: {make_command('submit', RUN=run_dir)}"
    if snapshot.any_alive():
        return f"Merged: not yet; the merge runs after the shards. Watch it with: {make_command('status', RUN=run_dir)}"
    if not snapshot.reachable:
        return "Merged: not yet; the scheduler did not answer, so whether jobs still run is unknown. Try again later."
    bad = [s for s in statuses if s.state != "done"]
    if merged and not bad:  # shards were redone (REDO=) and their merge did not finish
        return (
            f"Merged: no; {output.name} holds shards from before some were redone, and no merge of the "
            f"current shards finished. The merge says why, and how to repair it: {make_command('merge', RUN=run_dir)}"
        )
    what = (
        (
            f"{len(bad)} shard(s) not done: {shard_name(bad[0].spec.index)}"
            + (f" ... {shard_name(bad[-1].spec.index)}" if len(bad) > 1 else "")
        )
        if bad
        else "the merge did not finish"
    )
    return f"Merged: no ({what}). Repair with: {make_command('resubmit', RUN=run_dir)}"
