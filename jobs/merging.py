"""The merge stage of a run folder: read run.json, call merge.run.merge_run."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from jobs import manifest as manifest_lib
from kit.errors import ConfigError
from kit.format import OUTPUT_FILE
from merge.run import merge_run


def merge_from_manifest(run_dir: Path) -> dict:
    """Merge a run folder; returns the summary as a plain dict (it crosses process boundaries)."""
    manifest = manifest_lib.load(run_dir)
    if manifest is None:
        raise ConfigError(f"{run_dir} has no run.json; it is not a run folder. Start one with make submit.")
    summary = merge_run(run_dir, manifest.plan, {"model": manifest.embed.model})
    return {**asdict(summary), "path": str(summary.path)}


def merged_summary(run_dir: Path) -> dict:
    """The summary of an existing embeddings.h5 (same keys as merge_from_manifest returns)."""
    import json

    import h5py

    from kit.format import OUTPUT_FILE, sidecar_path

    path = Path(run_dir) / OUTPUT_FILE
    with h5py.File(path, "r") as h5:
        rows, dim = h5["embeddings"].shape
        return {"path": str(path), "rows": rows, "dim": dim, "quality": json.loads(h5.attrs["quality_metrics"]),
                "rejected_rows": int(h5.attrs["rejected_rows"]), "seconds": 0.0,
                "sha256": sidecar_path(path).read_text().split()[0]}


def map_from_manifest(run_dir: Path, questions: str | None, seed: int | None, pca_dims: int | None) -> dict:
    """The map stage of a run folder (after the merge): map.h5, map.html, map.png."""
    from knowledgemap.params import MapParams
    from knowledgemap.run import build_map

    manifest = manifest_lib.load(run_dir)
    if manifest is None or not (Path(run_dir) / OUTPUT_FILE).exists():
        raise ConfigError(f"{run_dir} has no merged embeddings.h5 yet. Run make submit (WAIT=1), make resubmit or "
                          "make fetch first.")
    # PCA_DIMS unset keeps the default; 0 means no PCA.
    params = MapParams(seed=seed, **({} if pca_dims is None else {"pca_dims": pca_dims or None}))
    return build_map(Path(run_dir), params, manifest.embed,
                     Path(questions) if questions else None)
