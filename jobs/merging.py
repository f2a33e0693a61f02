"""The merge stage of a run folder: read run.json, call merge.run.merge_run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from jobs import manifest as manifest_lib
from kit.errors import ConfigError
from merge.run import merge_run


def merge_from_manifest(run_dir: Path) -> dict:
    """Merge a run folder; returns the summary as a plain dict (it crosses process boundaries)."""
    manifest = manifest_lib.load(run_dir)
    if manifest is None:
        raise ConfigError(f"{run_dir} has no run.json; it is not a run folder. Start one with make submit.")
    summary = merge_run(run_dir, manifest.plan, {"model": manifest.embed.model})
    return {**asdict(summary), "path": str(summary.path)}
