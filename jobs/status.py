"""make status: per shard done / running / pending / failed / partial / missing.

Files first (a shard is done only if its final file exists), then one batched squeue call and
one sacct call for the run's Slurm jobs. Success is never read from scheduler state alone.
"""

from __future__ import annotations

import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from embedder.shard import read_header
from jobs import localjobs, manifest as manifest_lib, slurmjobs
from jobs.manifest import Manifest
from kit import atomic
from kit.errors import ConfigError, ShardError
from kit.format import OUTPUT_FILE, SHARDS_DIR, shard_name, sidecar_path


@dataclass(frozen=True)
class ShardState:
    index: int
    start: int
    stop: int
    state: str  # done | running | pending | failed: <STATE> | partial | missing
    rows_done: int
    task: str = ""  # the Slurm task id of its latest attempt


def latest_tasks(manifest: Manifest) -> tuple[dict[int, str], dict[str, str]]:
    """Shard index -> Slurm task id of its latest submission, and the latest Slurm job of each other stage."""
    tasks, stages = {}, {}
    for job in manifest.jobs:
        if job.get("executor") != "slurm":
            continue
        if job["stage"] != "embed":
            stages[job["stage"]] = job["job_id"]
        shards = job.get("shards") or []
        for i, index in enumerate(shards):  # submitit sends a one-shard window as a plain job
            tasks[index] = job["job_id"] if len(shards) == 1 else f"{job['job_id']}_{i}"
    return tasks, stages


def _rows_done(tmp: Path) -> int:
    try:
        return read_header(tmp).rows_done
    except ShardError:
        return 0


def shard_states(run_dir: Path, manifest: Manifest, queue: dict, acct: dict | None, local_alive: bool) -> list[ShardState]:
    tasks, _ = latest_tasks(manifest)
    states = []
    for spec in manifest.plan:
        final = run_dir / SHARDS_DIR / shard_name(spec.index)
        tmp, task = atomic.tmp_path(final), tasks.get(spec.index, "")
        rows = _rows_done(tmp) if tmp.exists() else 0
        if final.exists():
            state, rows = "done", spec.rows
        elif task in queue:
            state = queue[task].state.lower()
        elif acct and task in acct:
            state = f"failed: {acct[task].state}" + (f" (exit {acct[task].reason})" if acct[task].reason else "")
            if acct[task].state == "COMPLETED":
                state = "failed: COMPLETED without a shard file"
        elif local_alive and tmp.exists():
            state = "running"
        else:
            state = "partial" if tmp.exists() else "missing"
        states.append(ShardState(spec.index, spec.start, spec.stop, state, rows, task))
    return states


def _stage_line(stage: str, job_id: str, queue: dict, acct: dict | None) -> str:
    if job_id in queue:
        st = queue[job_id]
        return f"{stage} job {job_id}: {st.state}" + (f" ({st.reason})" if st.reason and st.reason != "None" else "")
    if acct and job_id in acct:
        return f"{stage} job {job_id}: {acct[job_id].state}"
    return f"{stage} job {job_id}: left the queue"


def status_report(run_dir: Path) -> str:
    """A table of shards, the jobs' states, the merged file, and the one command that repairs the run."""
    manifest = manifest_lib.load(run_dir)
    if manifest is None:
        raise ConfigError(f"{run_dir} has no run.json. Start a run with: make submit RUN={run_dir} CORPUS=... MODEL=...")
    slurm_ids = sorted({j["job_id"] for j in manifest.jobs if j.get("executor") == "slurm"})
    notes = []
    queue, acct = {}, None
    if slurm_ids:
        if shutil.which("squeue"):
            queue = slurmjobs.queue_states(slurm_ids)
        acct = slurmjobs.accounting_states(slurm_ids)
        if acct is None:
            notes.append("sacct is unavailable: ended jobs are judged from the shard files and squeue only.")
    local_alive = bool(localjobs.jobs_alive(manifest.jobs))
    states = shard_states(run_dir, manifest, queue, acct, local_alive)
    total = sum(s.stop - s.start for s in states)
    lines = [f"Run {run_dir}: model {manifest.embed.model}, {len(states)} shards, "
             f"{sum(s.rows_done for s in states)}/{total} rows embedded"]
    lines += [f"  {shard_name(s.index)}  [{s.start}, {s.stop})  {s.rows_done:>8}/{s.stop - s.start:<8} {s.state}"
              + (f"  (task {s.task})" if s.task and s.state != "done" else "") for s in states]
    lines += [_stage_line(stage, job_id, queue, acct) for stage, job_id in latest_tasks(manifest)[1].items()]
    lines += notes
    output = run_dir / OUTPUT_FILE
    busy = local_alive or bool(queue)
    if output.exists() and sidecar_path(output).exists():
        lines.append(f"Merged: {output} (sha256 in {sidecar_path(output).name})")
    elif busy:
        lines.append("Merged: not yet; the merge runs after the shards.")
    else:
        bad = [shard_name(s.index) for s in states if s.state != "done"]
        what = f"{', '.join(bad[:8])}{' ...' if len(bad) > 8 else ''} not done" if bad else "the merge did not finish"
        lines.append(f"Merged: no ({what}). Repair with: make resubmit RUN={shlex.quote(str(run_dir))}")
    return "\n".join(lines)
