"""The merge and map stages of a run folder: read run.json, call merge/ and knowledgemap/."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from embedder.config import ComputeSettings
from embedder.identity import pin_identity
from jobs import runstate
from jobs.runstate import RunState
from kit.commands import make_command
from kit.errors import ConfigError, ModelNotFoundError
from kit.format import RunPaths
from kit.shardfile import ShardIdentity, read_output_identity
from kit.truncation import Truncation
from merge.canary import CanaryPolicy
from merge.run import merge_run
from merge.summary import MergeSummary, read_summary


def expected_identity(state: RunState) -> ShardIdentity:
    """What every shard must record: run.json's pinned identity; for an older run.json, what it says."""
    if state.pinned is not None:
        return state.pinned
    return pin_identity(state.identity, state.model_fingerprint, state.identity.max_seq_length)


def merge_run_folder(run_dir: Path) -> MergeSummary:
    """Merge a run folder against the identity its run.json pins."""
    state = runstate.require(Path(run_dir))
    return merge_run(
        Path(run_dir),
        list(state.plan),
        expected_identity(state),
        state.model_name,
        CanaryPolicy.of(state.canary),
        Truncation.from_json(state.truncation),
    )


def merged_summary(run_dir: Path) -> MergeSummary:
    """The summary of an existing embeddings.h5, as the merge saved it (merge.json) or as the file says."""
    return read_summary(run_dir)


def question_encoder(run_dir: Path, state: RunState | None, model: str | None = None):
    """texts -> float32 [n, dim] with the run's encoder, rebuilt from embeddings.h5 alone (no corpus.h5).

    The model is found before the map is fitted, so a missing one is named in seconds, not after UMAP.
    ``model`` points to the same weights elsewhere (a fetched run whose model folder is not here).
    """
    from embedder.identity import encoder_identity
    from embedder.loader import load_encoder
    from embedder.model import resolve_model
    from jobs.demo import demo_model_path

    if model == "demo":  # as make submit takes it: the model shipped with the kit
        model = str(demo_model_path())
    identity = encoder_identity(read_output_identity(RunPaths.of(run_dir).output), model)
    # A few questions: exact, on whatever this machine has (the map may run on a laptop after
    # make fetch, where the cluster's device, cache folder and attention kernel are not).
    cache = (
        state.compute.cache_dir
        if state and state.compute.cache_dir and Path(state.compute.cache_dir).is_dir()
        else None
    )
    compute = replace(ComputeSettings(), compute_dtype="float32", cache_dir=cache)
    try:
        resolve_model(identity, cache)
    except ModelNotFoundError as err:
        raise ModelNotFoundError(
            f"The questions are embedded with the run's model, {identity.model!r} (named in "
            f"{RunPaths.of(run_dir).output}), which is not available here:\n{err}\nPoint to the same model with "
            f"{make_command('map', RUN=run_dir, QUESTIONS='<file>', MODEL='<folder or hub name>')}"
        ) from err

    def encode(texts: list[str]):
        return load_encoder(identity, compute).encoder.encode(texts)

    return encode


def map_from_manifest(
    run_dir: Path, questions: str | None, seed: int | None, pca_dims: int | None, model: str | None = None
) -> dict:
    """The map stage of a run folder (after the merge, or fetched): map.h5, map.html, map.png, map.svg."""
    from knowledgemap.params import MapParams
    from knowledgemap.run import build_map

    paths = RunPaths.of(run_dir)
    state = runstate.load(paths.root)
    if not paths.output.exists():
        runstate.require(paths.root)  # not a run folder (a typo, or no run yet): said first
        raise ConfigError(
            f"{run_dir} has no merged embeddings.h5 yet. Finish the run first "
            f"({make_command('status', RUN=run_dir)} says how), or fetch it with make fetch."
        )
    # PCA_DIMS unset keeps the default; 0 means no PCA.
    params = MapParams(seed=seed) if pca_dims is None else MapParams(seed=seed, pca_dims=pca_dims or None)
    encode = question_encoder(paths.root, state, model) if questions else None
    return build_map(
        paths.root, params, encode, Path(questions) if questions else None, nearest_rows(paths.output)
    )


def nearest_rows(output: Path):
    """Question vectors -> their nearest rows of ``output``, by make search's exact search (the map's
    page lists them under each question)."""
    from knowledgemap.run import NEAREST
    from search.exact import exact_search
    from search.vectors import VectorFile

    def nearest(vectors):
        with VectorFile(output) as rows:
            hits = exact_search(rows, vectors, NEAREST)
        return hits.rows, hits.scores

    return nearest
