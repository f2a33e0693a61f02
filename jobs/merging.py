"""The merge and map stages of a run folder: read run.json, call merge/ and knowledgemap/."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from embedder.config import ComputeSettings
from jobs import runstate
from kit.commands import make_command
from kit.errors import ConfigError
from kit.format import OUTPUT_FILE
from merge.run import merge_run


def merge_run_folder(run_dir: Path) -> dict:
    """Merge a run folder; returns the summary as a plain dict (it crosses process boundaries)."""
    state = runstate.require(Path(run_dir))
    expected = {"model": state.identity.model}
    if state.model_fingerprint:  # pinned at submit: a shard from other weights is refused
        expected["model_fingerprint"] = state.model_fingerprint
    summary = merge_run(Path(run_dir), list(state.plan), expected)
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
    """The map stage of a run folder (after the merge): map.h5, map.html, map.png, map.svg."""
    from knowledgemap.params import MapParams
    from knowledgemap.run import build_map

    state = runstate.require(Path(run_dir))
    if not (Path(run_dir) / OUTPUT_FILE).exists():
        raise ConfigError(f"{run_dir} has no merged embeddings.h5 yet. Finish the run first "
                          f"({make_command('status', RUN=run_dir)} says how), or fetch it with make fetch.")
    # PCA_DIMS unset keeps the default; 0 means no PCA.
    params = MapParams(seed=seed) if pca_dims is None else MapParams(seed=seed, pca_dims=pca_dims or None)

    def encode_questions(texts: list[str]):
        """Float32 [n, dim] through the tasks' own loader: the run's model, prompt and normalisation."""
        from embedder.run import load_model_for

        # A few questions: exact, on whatever this machine has (the map may run on a laptop after
        # make fetch, where the cluster's device, cache folder and attention kernel are not).
        cache = state.compute.cache_dir if state.compute.cache_dir and Path(state.compute.cache_dir).is_dir() else None
        compute = replace(ComputeSettings(), compute_dtype="float32", cache_dir=cache)
        return load_model_for(Path(run_dir), state.identity, compute).encoder.encode(texts)

    return build_map(Path(run_dir), params, encode_questions, Path(questions) if questions else None)
