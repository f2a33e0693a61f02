"""make status: per shard done / running / partial / missing from the files, then the jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from embedder.shard import read_header
from jobs import localjobs, manifest as manifest_lib
from kit import atomic
from kit.errors import ConfigError, ShardError
from kit.format import OUTPUT_FILE, SHARDS_DIR, shard_name, sidecar_path
from merge.run import repair_command


@dataclass(frozen=True)
class ShardState:
    index: int
    start: int
    stop: int
    state: str  # done | running | partial | missing
    rows_done: int


def shard_states(run_dir: Path, plan, running: bool) -> list[ShardState]:
    """What the files say about each planned shard; ``running`` while the run's jobs live."""
    states = []
    for spec in plan:
        final = run_dir / SHARDS_DIR / shard_name(spec.index)
        tmp = atomic.tmp_path(final)
        if final.exists():
            states.append(ShardState(spec.index, spec.start, spec.stop, "done", spec.rows))
            continue
        rows_done = 0
        if tmp.exists():
            try:
                rows_done = read_header(tmp).rows_done
            except ShardError:
                pass
        state = "running" if running and tmp.exists() else ("partial" if tmp.exists() else "missing")
        states.append(ShardState(spec.index, spec.start, spec.stop, state, rows_done))
    return states


def status_report(run_dir: Path) -> str:
    """A table of shards, the run's jobs and merged file, and the one command that repairs it."""
    manifest = manifest_lib.load(run_dir)
    if manifest is None:
        raise ConfigError(f"{run_dir} has no run.json. Start a run with: make submit RUN={run_dir} CORPUS=... MODEL=...")
    alive = localjobs.jobs_alive(manifest.jobs)
    states = shard_states(run_dir, manifest.plan, bool(alive))
    rows = sum(s.stop - s.start for s in states)
    done_rows = sum(s.rows_done for s in states)
    lines = [f"Run {run_dir}: model {manifest.embed.model}, {len(states)} shards, {done_rows}/{rows} rows embedded"]
    lines += [f"  {shard_name(s.index)}  [{s.start}, {s.stop})  {s.state:<8} {s.rows_done}/{s.stop - s.start}"
              for s in states]
    lines.append("Jobs alive: " + (", ".join(f"{j['stage']} {j['job_id']}" for j in alive) or "none"))
    output = run_dir / OUTPUT_FILE
    if output.exists() and sidecar_path(output).exists():
        lines.append(f"Merged: {output} (sha256 in {sidecar_path(output).name})")
    elif alive:
        lines.append("Merged: not yet (the merge runs after the shards)")
    else:
        lines.append(f"Merged: no. Repair with: {repair_command(run_dir, set())}")
    return "\n".join(lines)
